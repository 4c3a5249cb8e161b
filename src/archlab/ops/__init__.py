"""Numerical ops: each op has a readable reference and fast paths behind one signature."""

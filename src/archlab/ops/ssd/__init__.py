"""Mamba-2 SSD: sequential reference, chunked SSD algorithm, Triton kernels, decode step."""
from archlab.ops.ssd.chunked import ssd_chunked
from archlab.ops.ssd.reference import ssd_reference
from archlab.ops.ssd.step import ssd_step
from archlab.ops.ssd.triton import ssd_triton

__all__ = ["ssd_chunked", "ssd_reference", "ssd_step", "ssd_triton"]

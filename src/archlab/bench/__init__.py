"""``archlab bench``: archlab beside transformers and fla, on whatever device is present."""
from archlab.bench.suite import ROWS, run_suite

__all__ = ["ROWS", "run_suite"]

"""Skip marks shared by the Triton kernel tests.

``interpreter``: the kernels run on the CPU under Triton's interpreter (triton installed and
TRITON_INTERPRET=1, which tests/conftest.py sets without CUDA). Triton 3.6's interpreter turns
loop bounds into int(1-element array), an error from numpy 2.4 on; 3.9's does not (3.7 and 3.8
untried), so older Triton needs numpy < 2.4. ``on_gpu``: compiled kernels on CUDA.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _version(module) -> tuple[int, int]:
    return tuple(int(x) for x in module.__version__.split(".")[:2])


if TRITON:
    import triton

    NUMPY_OK = _version(triton) >= (3, 9) or _version(np) < (2, 4)
else:
    NUMPY_OK = False

needs_triton = pytest.mark.skipif(not TRITON, reason="form='triton' needs triton (absent from CPU-only installs)")
interpreter = pytest.mark.skipif(
    not (TRITON and INTERPRET and NUMPY_OK),
    reason="the Triton kernels run on the CPU only with triton and TRITON_INTERPRET=1 (and numpy < 2.4 before Triton 3.9)")
on_gpu = pytest.mark.skipif(not (TRITON and CUDA) or INTERPRET, reason="needs CUDA and triton (and TRITON_INTERPRET unset)")

"""Skip marks shared by the Triton kernel tests.

``interpreter``: the kernels run on the CPU under Triton's interpreter (triton installed,
TRITON_INTERPRET=1, and numpy < 2.4: Triton 3.6's interpreter turns loop bounds into
int(1-element array), an error from numpy 2.4 on). ``on_gpu``: compiled kernels on CUDA.
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
NUMPY_OK = tuple(int(x) for x in np.__version__.split(".")[:2]) < (2, 4)

needs_triton = pytest.mark.skipif(not TRITON, reason="form='triton' needs triton (absent from CPU-only installs)")
interpreter = pytest.mark.skipif(
    not (TRITON and INTERPRET and NUMPY_OK),
    reason="the Triton kernels run on the CPU only with triton, TRITON_INTERPRET=1 and numpy < 2.4")
on_gpu = pytest.mark.skipif(not (TRITON and CUDA) or INTERPRET, reason="needs CUDA and triton (and TRITON_INTERPRET unset)")

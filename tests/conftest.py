import importlib.util
import os

import pytest
import torch

# Without CUDA, run the Triton kernels under Triton's interpreter so that their tests (against the
# PyTorch references) run on the CPU too. Set before any kernel is defined: triton.jit reads it.
if not torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (GPU-only test)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    # the test models are tiny: one thread avoids torch's worker threads spinning for
    # microseconds of work (10x slower on a loaded 2-core machine)
    torch.set_num_threads(1)

"""The decoding matrix-vector product with its fused norm, SwiGLU and residual (ops/gemv): the
Triton kernel against the PyTorch reference, and the reference against the modules it stands for."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.ops.gemv import gemv, gemv_reference
from triton_marks import interpreter, on_gpu

CASES = [dict(), dict(norm=True), dict(residual=True), dict(swiglu=True), dict(norm=True, swiglu=True),
         dict(norm=True, residual=True)]


def _case(N, K, device, dtype, norm=False, residual=False, swiglu=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(K, generator=g).to(device, dtype)
    w = (torch.randn(N, K, generator=g) / K**0.5).to(device, dtype)
    kw = {"swiglu": swiglu}
    if norm:
        kw["norm_weight"] = (1 + 0.1 * torch.randn(K, generator=g)).to(device, dtype)
    if residual:
        kw["residual"] = torch.randn(N // 2 if swiglu else N, generator=g).to(device, dtype)
    return x, w, kw


def test_reference_is_the_modules_steps():
    x, w, kw = _case(12, 10, "cpu", torch.float64, norm=True, residual=True, swiglu=True)
    xn = x * torch.rsqrt(x.square().mean() + 1e-6) * kw["norm_weight"]
    g, u = F.linear(xn, w).chunk(2)
    torch.testing.assert_close(gemv_reference(x, w, eps=1e-6, **kw), F.silu(g) * u + kw["residual"])


@interpreter
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("N,K", [(24, 40), (7, 600)])  # K not a multiple of the tile, a partial row block
def test_triton_equals_reference_interpreted(case, N, K):
    x, w, kw = _case(2 * N if case.get("swiglu") else N, K, "cpu", torch.float32, **case)
    torch.testing.assert_close(gemv(x, w, form="triton", **kw), gemv_reference(x, w, **kw), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named():
    x, w, _ = _case(4, 8, "cpu", torch.float32)
    with pytest.raises(ValueError, match="form"):
        gemv(x, w, form="cuda")
    with pytest.raises(ValueError, match="x, w"):
        gemv(x[None], w)
    with pytest.raises(ValueError, match="swiglu"):
        gemv(x, w[:3], swiglu=True)
    with pytest.raises(ValueError, match="residual"):
        gemv(x, w, residual=torch.zeros(5))


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("N,K", [(3072, 2048), (2048, 8192), (32000, 2048)])
def test_triton_on_gpu(case, N, K):
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 1e-2)):
        x, w, kw = _case(2 * N if case.get("swiglu") else N, K, "cuda", dtype, **case)
        got, ref = gemv(x, w, form="triton", **kw).float(), gemv_reference(x, w, **kw).float()
        assert ((got - ref).norm() / ref.norm()).item() < tol

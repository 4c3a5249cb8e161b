"""The fused Triton row kernel of the chunked cross-entropy (rows="triton") against the float64
reference: loss and the gradients of h, the head weight and bias, with soft-cap and ignored targets.

On a machine without CUDA the kernel runs under Triton's interpreter (tests/conftest.py turns it
on when triton is installed; see triton_marks.py).
The gpu-marked test runs the compiled kernel at the size of a real vocabulary.
"""
from __future__ import annotations

import pytest
import torch

from archlab.ops.cross_entropy import linear_cross_entropy
from triton_marks import INTERPRET, interpreter, on_gpu


def _case(N, C, V, bias, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(N, C, generator=g, dtype=torch.float64) * 2
    w = torch.randn(V, C, generator=g, dtype=torch.float64) * 0.5
    b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
    t = torch.randint(0, V, (N,), generator=g)
    t[::7] = -100
    return [None if x is None else x.to(device) for x in (h, w, b, t)]


def _run(h, w, b, t, dtype, **kw):
    leaves = [x.to(dtype).detach().requires_grad_() for x in (h, w, b) if x is not None]
    hb, wb, bb = leaves[0], leaves[1], leaves[2] if b is not None else None
    loss = linear_cross_entropy(hb, wb, t, bb, **kw)
    grads = torch.autograd.grad(loss * 1.3, leaves)
    return [loss, *grads]


def _check(N, C, V, bias, softcap, dtype, tol, device, chunk_size):
    h, w, b, t = _case(N, C, V, bias, device)
    ref = _run(h, w, b, t, torch.float64, form="reference", softcap=softcap)
    got = _run(h, w, b, t, dtype, form="chunked", rows="triton", softcap=softcap, chunk_size=chunk_size)
    for name, a, r in zip(["loss", "dh", "dw", "db"], got, ref):
        assert torch.isfinite(a).all(), name
        err = ((a.double() - r).norm() / r.norm()).item()
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol}"


@interpreter
@pytest.mark.parametrize("V,softcap,bias", [(53, None, False), (53, 3.0, True), (2100, None, True)])
def test_rows_kernel_interpreted(V, softcap, bias):
    _check(11, 16, V, bias, softcap, torch.float32, 1e-5, "cpu", chunk_size=4)


def test_rows_triton_refuses_what_it_cannot_run():
    h, w, _, t = _case(4, 8, 10, False, "cpu")
    with pytest.raises(ValueError, match="rows"):
        linear_cross_entropy(h, w, t, rows="fast")
    with pytest.raises(ValueError, match="float64"):
        linear_cross_entropy(h, w, t, rows="triton")
    if not INTERPRET:
        with pytest.raises(ValueError, match="rows='triton'"):
            linear_cross_entropy(h.float(), w.float(), t, rows="triton")


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("softcap,bias", [(None, False), (30.0, True)])
def test_rows_kernel_on_gpu(softcap, bias):
    """float32 against the float64 reference; bf16 against the PyTorch rows on the same bf16
    logits (bf16 rounding of peaked logits moves the softmax itself by more than any kernel error)."""
    _check(3000, 256, 32000, bias, softcap, torch.float32, 1e-4, "cuda", chunk_size=1024)
    h, w, b, t = _case(3000, 256, 32000, bias, "cuda")
    kw = dict(form="chunked", softcap=softcap, chunk_size=1024)
    ref = _run(h, w, b, t, torch.bfloat16, rows="torch", **kw)
    got = _run(h, w, b, t, torch.bfloat16, rows="triton", **kw)
    for name, a, r in zip(["loss", "dh", "dw", "db"], got, ref):
        err = ((a.double() - r.double()).norm() / r.double().norm()).item()
        assert err < 1e-2, f"bf16 {name}: relative error {err:.2e} against rows='torch'"

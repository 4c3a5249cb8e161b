"""The grouped dispatch paths (grouped_mm, padded bmm) equal the expert loop: outputs and the
gradients of every input, gated and plain experts, uneven and empty expert loads."""
from __future__ import annotations

import pytest
import torch

from archlab.ops.moe_dispatch import expert_ffn_grouped, expert_ffn_reference, grouped_mm_support

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _inputs(N=11, C=16, E=5, I=8, K=2, gated=True, dtype=torch.float32, seed=0, device="cpu", drop=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, generator=g, dtype=torch.float64)
    w_in = torch.randn(E, (2 if gated else 1) * I, C, generator=g, dtype=torch.float64) / C**0.5
    w_out = torch.randn(E, C, I, generator=g, dtype=torch.float64) / I**0.5
    token_idx = torch.arange(N).repeat_interleave(K)
    # expert E-1 never chosen: an empty group must be handled; expert 0 is the busiest
    expert_idx = torch.randint(0, E - 1, (N * K,), generator=g)
    expert_idx[: N // 2] = 0
    weight = torch.rand(N * K, generator=g, dtype=torch.float64)
    if drop:
        keep = torch.rand(N * K, generator=g) >= drop
        token_idx, expert_idx, weight = token_idx[keep], expert_idx[keep], weight[keep]
    to = dict(dtype=dtype, device=device)
    return (x.to(**to), w_in.to(**to), w_out.to(**to), token_idx.to(device), expert_idx.to(device), weight.to(**to))


def _float(a) -> bool:
    return a is not None and a.is_floating_point()


def _run(fn, args, activation, **kw):
    leaves = [a.detach().clone().requires_grad_() if _float(a) else a for a in args]
    y = fn(*leaves, activation=activation, **kw)
    probe = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=y.dtype).to(y.device)
    grads = torch.autograd.grad((y * probe).sum(), [a for a in leaves if _float(a)])
    return [y, *grads]


CASES = [("silu", True), ("gelu_tanh", True), ("gelu", False), ("relu", False)]


def _token_major(args):
    """The same assignments with token_idx=None (k per token, token-major): the permutation path."""
    return (*args[:3], None, *args[4:])


@pytest.mark.parametrize("activation,gated", CASES)
@pytest.mark.parametrize("backend", ["grouped_mm", "bmm"])
@pytest.mark.parametrize("layout", ["token_major", "explicit", "dropped"])
def test_grouped_equals_reference_float32(activation, gated, backend, layout):
    args = _inputs(gated=gated, drop=0.3 if layout == "dropped" else 0.0)
    ref = _run(expert_ffn_reference, args, activation)
    if layout == "token_major":
        args = _token_major(args)
        torch.testing.assert_close(_run(expert_ffn_reference, args, activation)[0], ref[0])
    out = _run(expert_ffn_grouped, args, activation, backend=backend)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation,gated", CASES[:1] + CASES[2:3])
def test_bmm_equals_reference_float64(activation, gated):
    args = _inputs(gated=gated, dtype=torch.float64, N=9, C=6, I=5, K=3, E=4)  # odd sizes
    ref = _run(expert_ffn_reference, args, activation)
    for layout in (args, _token_major(args)):
        out = _run(expert_ffn_grouped, layout, activation, backend="bmm")
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_expert_choice_layout_and_stride0_gradient():
    """Uneven tokens per row, a token taken by no expert, and a .sum() loss (stride-0 gradient)."""
    x, w_in, w_out, _, _, _ = _inputs(N=7, E=3)
    token_idx = torch.tensor([0, 2, 2, 5, 1, 0])  # token 3, 4, 6: no expert
    expert_idx = torch.tensor([0, 0, 1, 1, 2, 2])
    weight = torch.rand(6)
    outs = {}
    for name, kw in (("ref", {}), ("gmm", {"backend": "grouped_mm"}), ("bmm", {"backend": "bmm"})):
        xx = x.clone().requires_grad_()
        fn = expert_ffn_reference if name == "ref" else expert_ffn_grouped
        y = fn(xx, w_in, w_out, token_idx, expert_idx, weight, **kw)
        y.sum().backward()
        outs[name] = (y, xx.grad)
    assert torch.equal(outs["ref"][0][[3, 4, 6]], torch.zeros(3, x.shape[1]))
    for name in ("gmm", "bmm"):
        torch.testing.assert_close(outs[name][0], outs["ref"][0])
        torch.testing.assert_close(outs[name][1], outs["ref"][1])


def test_no_assignments_gives_zeros():
    x, w_in, w_out, *_ = _inputs()
    empty = torch.zeros(0, dtype=torch.long)
    for fn in (expert_ffn_reference, expert_ffn_grouped):
        assert torch.equal(fn(x, w_in, w_out, empty, empty, torch.zeros(0)), torch.zeros_like(x))


@pytest.mark.parametrize("token_major", [False, True])
def test_bfloat16_grouped_mm_close_to_float64_reference(token_major):
    args = _inputs(N=64, C=32, I=16, E=4, K=2)
    if token_major:
        args = _token_major(args)
    cast = lambda dt: [a.to(dt) if a is not None and a.is_floating_point() else a for a in args]  # noqa: E731
    y64 = expert_ffn_reference(*cast(torch.float64))
    y16 = expert_ffn_grouped(*cast(torch.bfloat16), backend="grouped_mm")
    assert y16.dtype == torch.bfloat16
    rel = (y16.double() - y64).norm() / y64.norm()
    assert rel < 1e-2


def test_auto_picks_bmm_when_grouped_mm_cannot_run():
    args64 = _inputs(dtype=torch.float64)
    assert grouped_mm_support(args64[0], args64[1], args64[2]) is not None
    with pytest.raises(ValueError, match="backend='grouped_mm' cannot run here"):
        expert_ffn_grouped(*args64, backend="grouped_mm")
    ref = expert_ffn_reference(*args64)
    torch.testing.assert_close(expert_ffn_grouped(*args64, backend="auto"), ref)
    odd = _inputs(C=6, I=5)  # 24- and 20-byte rows: not 16-byte aligned
    assert "16 bytes" in grouped_mm_support(odd[0], odd[1], odd[2])
    torch.testing.assert_close(expert_ffn_grouped(*odd), expert_ffn_reference(*odd))


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: (a[0][None], *a[1:]), "x: expected"),
        (lambda a: (a[0], a[1][:, :3], *a[2:]), "w_in"),
        (lambda a: (*a[:4], a[4].float(), a[5]), "expert_idx: expected an integer"),
        (lambda a: (*a[:5], a[5][:-1]), "weight: expected 1D"),
        (lambda a: (*a[:4], a[4] + 10, a[5]), "expert_idx: values must be in"),
        (lambda a: (a[0].double(), *a[1:]), "share one dtype"),
        (lambda a: (a[0][:-2], *a[1:3], None, *a[4:]), "token_idx=None means k assignments per token"),
    ],
)
def test_bad_inputs_raise_named_errors(change, match):
    args = change(_inputs())
    for fn in (expert_ffn_reference, expert_ffn_grouped):
        with pytest.raises(ValueError, match=match):
            fn(*args)
    with pytest.raises(ValueError, match="activation"):
        expert_ffn_reference(*_inputs(), activation="swish")
    with pytest.raises(ValueError, match="backend"):
        expert_ffn_grouped(*_inputs(), backend="cutlass")


@pytest.mark.gpu
@GPU
def test_cuda_bfloat16_paths_agree():
    args = _inputs(N=512, C=256, I=128, E=8, K=2, dtype=torch.bfloat16, device="cuda")
    ref = _run(expert_ffn_reference, args, "silu")
    for layout in (args, _token_major(args)):
        for backend in ("auto", "bmm"):
            out = _run(expert_ffn_grouped, layout, "silu", backend=backend)
            for a, b in zip(out, ref):
                assert ((a.float() - b.float()).norm() / b.float().norm()) < 2e-2

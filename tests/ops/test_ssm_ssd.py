"""Mamba-2 SSD: the chunked algorithm and the decode step against the sequential reference.

Outputs, final states and gradients of every input, grouped B/C, lengths that do not divide the
chunk, float64 (tight) and float32.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archlab.ops.ssd import ssd_chunked, ssd_reference, ssd_step
from archlab.ops.ssd.chunked import segment_sum


def _inputs(B, T, H, P, G, N, dtype=torch.float64, seed=0, h0=True, dt_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    x, B_, C = r(B, T, H, P), r(B, T, G, N), r(B, T, G, N)
    dt = torch.nn.functional.softplus(r(B, T, H)) * dt_scale
    A = -torch.rand(H, generator=g, dtype=dtype) * 4 - 0.1
    s = r(B, H, P, N) if h0 else None
    return [t.requires_grad_() if t is not None else None for t in (x, dt, A, B_, C, s)]


def _check(ins, fast, atol, rtol):
    leaves = [t for t in ins if t is not None]
    y0, h0 = ssd_reference(*ins)
    y1, h1 = fast(*ins)
    torch.testing.assert_close(y1, y0, atol=atol, rtol=rtol)
    torch.testing.assert_close(h1, h0, atol=atol, rtol=rtol)
    gy, gh = torch.randn_like(y0), torch.randn_like(h0)
    g0 = torch.autograd.grad((y0 * gy).sum() + (h0 * gh).sum(), leaves)
    g1 = torch.autograd.grad((y1 * gy).sum() + (h1 * gh).sum(), leaves)
    for name, a, b in zip("x dt A B C h0".split(), g0, g1):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("T,chunk", [(1, 4), (13, 4), (13, 5), (37, 8), (8, 8), (20, 1), (9, 64)])
@pytest.mark.parametrize("h0", [True, False])
def test_chunked_matches_reference_float64(T, chunk, h0):
    ins = _inputs(2, T, 4, 3, 2, 5, h0=h0, seed=T + chunk)
    _check(ins, lambda *a: ssd_chunked(*a, chunk_size=chunk), 1e-10, 1e-10)


def test_chunked_matches_reference_float32():
    ins = _inputs(2, 45, 6, 4, 3, 8, dtype=torch.float32, seed=3)
    _check(ins, lambda *a: ssd_chunked(*a, chunk_size=16), 2e-5, 2e-5)


def test_strong_decay_stays_finite():
    ins = _inputs(1, 50, 2, 3, 1, 4, dtype=torch.float32, seed=5, dt_scale=100.0)
    _check(ins, lambda *a: ssd_chunked(*a, chunk_size=16), 1e-4, 1e-4)


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(1, 40), G=st.integers(1, 2), R=st.integers(1, 3),
       P=st.integers(1, 4), N=st.integers(1, 4), chunk=st.integers(1, 12))
def test_chunked_any_shape(B, T, G, R, P, N, chunk):
    ins = _inputs(B, T, G * R, P, G, N, seed=T * 7 + P)
    _check(ins, lambda *a: ssd_chunked(*a, chunk_size=chunk), 1e-9, 1e-9)


def test_step_matches_reference():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(2, 9, 4, 3, 2, 5, dtype=torch.float32, seed=1))
    y0, hT = ssd_reference(x, dt, A, B, C, h0)
    state = h0.clone()
    ys = [ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t]) for t in range(9)]
    torch.testing.assert_close(torch.stack(ys, 1), y0)
    torch.testing.assert_close(state, hT)


def test_segment_sum():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    s = segment_sum(a)
    for l in range(4):
        for j in range(4):
            expected = a[j + 1 : l + 1].sum().item() if j <= l else float("-inf")
            assert s[l, j].item() == expected


def test_bad_chunk_size_is_a_clear_error():
    ins = [t.detach() if t is not None else None for t in _inputs(1, 4, 2, 2, 1, 2)]
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_chunked(*ins, chunk_size=0)


def test_wrong_shapes_name_the_argument():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(1, 4, 4, 2, 2, 3))
    with pytest.raises(ValueError, match="^dt: expected shape"):
        ssd_chunked(x, dt[:, :, :1], A, B, C, h0)
    with pytest.raises(ValueError, match="groups must divide"):
        ssd_reference(x, dt, A, B[:, :, :1].expand(1, 4, 3, 3), C, h0)


def test_empty_sequence_returns_the_initial_state():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(1, 0, 4, 2, 2, 3))
    y, h = ssd_chunked(x, dt, A, B, C, h0)
    assert y.shape == (1, 0, 4, 2)
    torch.testing.assert_close(h, h0)

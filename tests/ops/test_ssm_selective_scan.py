"""Mamba-1 selective scan: the chunked form and the decode step against the sequential reference.

Outputs, final states and gradients of every input (initial state included), for lengths that do
not divide the chunk, several chunk and segment lengths, float64 (tight) and float32.
"""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archlab.ops.selective_scan import selective_scan_chunked, selective_scan_reference, selective_scan_step


def _inputs(B, T, E, N, dtype=torch.float64, seed=0, h0=True, dt_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    x, B_, C = r(B, T, E), r(B, T, N), r(B, T, N)
    dt = torch.nn.functional.softplus(r(B, T, E)) * dt_scale
    A = -torch.rand(E, N, generator=g, dtype=dtype) * 4 - 0.1
    s = r(B, E, N) if h0 else None
    return [t.requires_grad_() if t is not None else None for t in (x, dt, A, B_, C, s)]


def _check(ins, fast, atol, rtol):
    leaves = [t for t in ins if t is not None]
    y0, h0 = selective_scan_reference(*ins)
    y1, h1 = fast(*ins)
    torch.testing.assert_close(y1, y0, atol=atol, rtol=rtol)
    torch.testing.assert_close(h1, h0, atol=atol, rtol=rtol)
    gy, gh = torch.randn_like(y0), torch.randn_like(h0)
    g0 = torch.autograd.grad((y0 * gy).sum() + (h0 * gh).sum(), leaves)
    g1 = torch.autograd.grad((y1 * gy).sum() + (h1 * gh).sum(), leaves)
    for name, a, b in zip("x dt A B C h0".split(), g0, g1):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("T,chunk,segment", [(1, 4, None), (13, 4, None), (13, 5, 7), (37, 8, 16), (37, 16, None), (8, 8, 8), (20, 1, None)])
@pytest.mark.parametrize("h0", [True, False])
def test_chunked_matches_reference_float64(T, chunk, segment, h0):
    ins = _inputs(2, T, 6, 4, h0=h0, seed=T + chunk)
    _check(ins, lambda *a: selective_scan_chunked(*a, chunk_size=chunk, segment_len=segment), 1e-10, 1e-10)


def test_chunked_matches_reference_float32():
    ins = _inputs(2, 45, 8, 5, dtype=torch.float32, seed=3)
    _check(ins, lambda *a: selective_scan_chunked(*a, chunk_size=8, segment_len=24), 2e-5, 2e-5)


def test_strong_decay_does_not_overflow():
    # dt * A down to about -400 per step: a cumulative-sum-of-logs form would overflow exp()
    ins = _inputs(1, 50, 4, 3, dtype=torch.float32, seed=5, dt_scale=100.0)
    _check(ins, lambda *a: selective_scan_chunked(*a, chunk_size=16), 1e-4, 1e-4)


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(1, 40), E=st.integers(1, 5), N=st.integers(1, 4),
       chunk=st.integers(1, 12), segment=st.one_of(st.none(), st.integers(1, 30)))
def test_chunked_any_shape(B, T, E, N, chunk, segment):
    ins = _inputs(B, T, E, N, seed=T * 7 + E)
    _check(ins, lambda *a: selective_scan_chunked(*a, chunk_size=chunk, segment_len=segment), 1e-9, 1e-9)


def test_step_matches_reference():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(2, 9, 5, 3, dtype=torch.float32, seed=1))
    y0, hT = selective_scan_reference(x, dt, A, B, C, h0)
    state = h0.clone()
    ys = [selective_scan_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t]) for t in range(9)]
    torch.testing.assert_close(torch.stack(ys, 1), y0)
    torch.testing.assert_close(state, hT)


def test_low_precision_inputs_keep_float32_state():
    x, dt, A, B, C, _ = (t.detach() if t is not None else None for t in _inputs(1, 10, 4, 3, dtype=torch.float32, h0=False))
    y, h = selective_scan_chunked(x.bfloat16(), dt.bfloat16(), A, B.bfloat16(), C.bfloat16(), chunk_size=4)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32
    y_ref, _ = selective_scan_reference(x.bfloat16(), dt.bfloat16(), A, B.bfloat16(), C.bfloat16())
    torch.testing.assert_close(y.float(), y_ref.float(), atol=1e-2, rtol=1e-2)


def test_bad_chunk_size_is_a_clear_error():
    ins = [t.detach() if t is not None else None for t in _inputs(1, 4, 2, 2)]
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan_chunked(*ins, chunk_size=0)


def test_wrong_shapes_name_the_argument():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(1, 4, 3, 2))
    with pytest.raises(ValueError, match="^C: expected shape"):
        selective_scan_chunked(x, dt, A, B, C[:, :, :1], h0)
    with pytest.raises(ValueError, match="^initial_state: expected shape"):
        selective_scan_reference(x, dt, A, B, C, h0[:, :2])


def test_empty_sequence_returns_the_initial_state():
    x, dt, A, B, C, h0 = (t.detach() for t in _inputs(1, 0, 3, 2))
    y, h = selective_scan_chunked(x, dt, A, B, C, h0)
    assert y.shape == (1, 0, 3)
    torch.testing.assert_close(h, h0)

"""causal_conv1d (F.conv1d path) against the reference loop: outputs, final state, gradients, continuation."""
import pytest
import torch

from archlab.ops.causal_conv1d import causal_conv1d, causal_conv1d_reference


def _inputs(B, T, C, K, dtype=torch.float64, state=True):
    g = torch.Generator().manual_seed(T * 31 + K)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    return mk(B, T, C), mk(C, K), mk(C), (mk(B, K - 1, C) if state else None)


@pytest.mark.parametrize("T,K", [(1, 4), (2, 4), (7, 4), (13, 1), (9, 2), (5, 6)])
@pytest.mark.parametrize("with_state", [True, False])
def test_matches_reference(T, K, with_state):
    x, w, b, s = _inputs(2, T, 3, K, state=with_state)
    y0, f0 = causal_conv1d_reference(x, w, b, s)
    y1, f1 = causal_conv1d(x, w, b, s)
    torch.testing.assert_close(y1, y0)
    torch.testing.assert_close(f1, f0)
    leaves = [t for t in (x, w, b, s) if t is not None]
    gy, gf = torch.randn_like(y0), torch.randn_like(f0)
    g0 = torch.autograd.grad((y0 * gy).sum() + (f0 * gf).sum(), leaves)
    g1 = torch.autograd.grad((y1 * gy).sum() + (f1 * gf).sum(), leaves)
    for a, c in zip(g0, g1):
        torch.testing.assert_close(c, a)


def test_split_sequence_continues_from_state():
    x, w, b, _ = _inputs(2, 11, 5, 4, dtype=torch.float32)
    full, _ = causal_conv1d(x, w, b)
    y1, s = causal_conv1d(x[:, :6], w, b)
    y2, s = causal_conv1d(x[:, 6:7], w, b, s)
    y3, _ = causal_conv1d(x[:, 7:], w, b, s)
    torch.testing.assert_close(torch.cat([y1, y2, y3], 1), full)


def test_no_bias():
    x, w, _, s = _inputs(1, 5, 2, 3)
    torch.testing.assert_close(causal_conv1d(x, w, None, s)[0], causal_conv1d_reference(x, w, None, s)[0])

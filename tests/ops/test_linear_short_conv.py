"""Short causal depthwise conv: the tap-sum reference, conv1d and the recurrent step agree,
and a split call with the carried state equals one call."""
from __future__ import annotations

import pytest
import torch

from archlab.ops.short_conv import CONV_FORMS, short_conv


def _inputs(T=11, Ch=5, K=4):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(2, T, Ch), r(Ch, K), r(Ch), r(2, Ch, K - 1)


@pytest.mark.parametrize("activation", [None, "silu"])
def test_forms_agree_with_grads(activation):
    x, w, b, st = _inputs()
    outs = {}
    for form in CONV_FORMS:
        leaves = [t.clone().requires_grad_() for t in (x, w, b, st)]
        y, s = short_conv(*leaves[:3], activation=activation, initial_state=leaves[3], output_final_state=True, form=form)
        grads = torch.autograd.grad((y * y.detach().sin()).sum(), leaves)
        outs[form] = (y.detach(), s.detach(), grads)
    for form in CONV_FORMS[1:]:
        torch.testing.assert_close(outs[form][0], outs["parallel"][0])
        torch.testing.assert_close(outs[form][1], outs["parallel"][1])
        for a, c in zip(outs[form][2], outs["parallel"][2]):
            torch.testing.assert_close(a, c)


@pytest.mark.parametrize("split", [1, 2, 6])
def test_state_carries_across_calls(split):
    x, w, b, st = _inputs()
    y, s = short_conv(x, w, b, initial_state=st, output_final_state=True)
    y1, s1 = short_conv(x[:, :split], w, b, initial_state=st, output_final_state=True)
    y2, s2 = short_conv(x[:, split:], w, b, initial_state=s1, output_final_state=True, form="recurrent")
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(s2, s)


def test_bad_inputs():
    x, w, b, st = _inputs()
    with pytest.raises(ValueError, match="weight"):
        short_conv(x, w[:3], b)
    with pytest.raises(ValueError, match="initial_state"):
        short_conv(x, w, b, initial_state=st[:, :, :1])
    with pytest.raises(ValueError, match="activation"):
        short_conv(x, w, b, activation="gelu")
    with pytest.raises(ValueError, match="form"):
        short_conv(x, w, b, form="chunk")

"""Short causal depthwise convolution with a carried state (the decode cache's conv state).

    short_conv(x, weight, bias=None, *, activation=None, initial_state=None,
               output_final_state=False, form="conv1d") -> (y, final_state | None)

x: [B, T, Ch]; weight: [Ch, K]; bias: [Ch] or None; activation: None or "silu";
state: [B, Ch, K-1], the last K-1 inputs (pre-convolution), oldest first.
Forms: "parallel" (the tap sum, reference.py), "conv1d" (F.conv1d with groups=Ch),
"recurrent" (one token at a time through the state window).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .reference import short_conv_parallel

__all__ = ["short_conv", "CONV_FORMS"]

CONV_FORMS = ("parallel", "conv1d", "recurrent")
_ACTIVATIONS = (None, "silu")


def _conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, state: Tensor) -> tuple[Tensor, Tensor]:
    K = weight.shape[1]
    xs = torch.cat([state, x.transpose(1, 2)], dim=-1)  # [B, Ch, K-1+T]
    y = F.conv1d(xs, weight.unsqueeze(1), bias, groups=weight.shape[0])  # [B, Ch, T]
    return y.transpose(1, 2), xs[:, :, xs.shape[-1] - (K - 1):]


def _recurrent(x: Tensor, weight: Tensor, bias: Tensor | None, state: Tensor) -> tuple[Tensor, Tensor]:
    ys = []
    for t in range(x.shape[1]):
        window = torch.cat([state, x[:, t, :, None]], dim=-1)  # [B, Ch, K]
        y = (window * weight).sum(-1)
        ys.append(y if bias is None else y + bias)
        state = window[:, :, 1:]
    return torch.stack(ys, dim=1), state


_IMPLS = {"parallel": short_conv_parallel, "conv1d": _conv1d, "recurrent": _recurrent}


def short_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
    activation: str | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    form: str = "conv1d",
) -> tuple[Tensor, Tensor | None]:
    if form not in _IMPLS:
        raise ValueError(f"form: got {form!r}; accepted: {', '.join(CONV_FORMS)}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: got {activation!r}; accepted: None, 'silu'")
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected [B, T, Ch]; got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    B, T, Ch = x.shape
    if weight.dim() != 2 or weight.shape[0] != Ch or weight.shape[1] < 1:
        raise ValueError(f"weight: expected [Ch, K] with Ch = {Ch}; got {tuple(weight.shape)}")
    K = weight.shape[1]
    if bias is not None and tuple(bias.shape) != (Ch,):
        raise ValueError(f"bias: expected [Ch] = ({Ch},); got {tuple(bias.shape)}")
    if initial_state is None:
        initial_state = x.new_zeros(B, Ch, K - 1)
    elif tuple(initial_state.shape) != (B, Ch, K - 1):
        raise ValueError(f"initial_state: expected [B, Ch, K-1] = {(B, Ch, K - 1)}; got {tuple(initial_state.shape)}")
    y, state = _IMPLS[form](x, weight, bias, initial_state.to(x.dtype))
    if activation == "silu":
        y = F.silu(y)
    return y, (state if output_final_state else None)

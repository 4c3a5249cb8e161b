"""Short causal depthwise convolution, reference: the sum over taps written out.

    y_t[c] = act( bias[c] + sum_{i=0}^{K-1} w[c, i] * x_{t-K+1+i}[c] )
with x_{t<0} taken from the carried state (the last K-1 inputs of the previous call) or 0.
Used on q/k/v by H3, Based, DeltaNet and Gated DeltaNet (the "short conv").

Shapes: B batch, T time, Ch channels, K kernel size.
"""
from __future__ import annotations

import torch
from torch import Tensor


def short_conv_parallel(x: Tensor, weight: Tensor, bias: Tensor | None, state: Tensor) -> tuple[Tensor, Tensor]:
    """x: [B, T, Ch]; weight: [Ch, K]; state: [B, Ch, K-1] (oldest first) -> y [B, T, Ch] pre-activation."""
    K = weight.shape[1]
    T = x.shape[1]
    xs = torch.cat([state, x.transpose(1, 2)], dim=-1)  # [B, Ch, K-1+T]
    y = sum(weight[:, i, None] * xs[:, :, i:i + T] for i in range(K))  # [B, Ch, T]
    if bias is not None:
        y = y + bias[:, None]
    return y.transpose(1, 2), xs[:, :, xs.shape[-1] - (K - 1):]

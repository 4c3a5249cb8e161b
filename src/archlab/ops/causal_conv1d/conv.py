"""Causal depthwise 1-D convolution through ``F.conv1d`` (one grouped convolution call).

Same signature and semantics as :func:`archlab.ops.causal_conv1d.reference.causal_conv1d_reference`.
Shapes: B batch, T time, C channels, K kernel width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y [B, T, C] and the last K-1 inputs [B, K-1, C]; see the reference for the definition."""
    Bsz, T, C = x.shape
    K = weight.shape[1]
    if initial_state is None:
        initial_state = x.new_zeros(Bsz, K - 1, C)
    xp = torch.cat([initial_state.to(x.dtype), x], dim=1)  # [B, K-1+T, C]
    # conv1d wants channels before time; groups=C makes it depthwise
    w = weight.to(x.dtype).unsqueeze(1)  # [C, 1, K]
    y = F.conv1d(xp.transpose(1, 2), w, None if bias is None else bias.to(x.dtype), groups=C)
    return y.transpose(1, 2), xp[:, T:]  # [B, C, T] -> [B, T, C]

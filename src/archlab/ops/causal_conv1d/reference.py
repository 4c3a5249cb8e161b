"""Causal depthwise 1-D convolution, the short convolution in front of Mamba's SSM.

Reference: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
Section 3.4 / Figure 3 (a depthwise causal Conv1d of width K on the expanded channels).

    y[t, c] = bias[c] + sum_{k=0}^{K-1} weight[c, k] * x[t - (K - 1) + k, c]

where inputs before the start of the sequence come from ``initial_state`` (the last K-1 inputs of
the previous call) or are zero.

Shapes: B batch, T time, C channels, K kernel width.
"""
from __future__ import annotations

import torch


def causal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop over the K taps.

    Args:
        x: [B, T, C] inputs.
        weight: [C, K] per-channel taps; tap K-1 multiplies the current input.
        bias: [C] or None.
        initial_state: [B, K-1, C], the K-1 inputs that precede x (oldest first), or None for zeros.

    Returns:
        y: [B, T, C]; final_state: [B, K-1, C], the last K-1 inputs (initial state included), to
        continue with.
    """
    Bsz, T, C = x.shape
    K = weight.shape[1]
    if initial_state is None:
        initial_state = x.new_zeros(Bsz, K - 1, C)
    xp = torch.cat([initial_state.to(x.dtype), x], dim=1)  # [B, K-1+T, C]
    y = torch.zeros_like(x) if bias is None else bias.to(x.dtype).expand(Bsz, T, C)
    for k in range(K):
        y = y + weight[:, k].to(x.dtype) * xp[:, k : k + T]
    return y, xp[:, T:]

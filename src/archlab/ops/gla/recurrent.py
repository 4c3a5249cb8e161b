"""Gated linear attention, recurrent form:  S_t = exp(g_t) 1^T ⊙ S_{t-1} + k_t v_t^T,  o_t = q_t^T S_t.

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor


def gla_recurrent(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, s0: Tensor | None, *, scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor]:
    B, H, T, Dk = q.shape
    s = q.new_zeros(B, H, Dk, v.shape[-1]) if s0 is None else s0
    q = q * scale
    outs = []
    for t in range(T):
        s = torch.exp(g[:, :, t, :, None]) * s + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, None, :] @ s).squeeze(-2))  # [B, H, Dv]
    return torch.stack(outs, dim=2), s

"""Gated linear attention (vector, data-dependent decay per key channel), parallel reference.

Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient Training",
eq. 1-3: S_t = (alpha_t 1^T) ⊙ S_{t-1} + k_t v_t^T, o_t = q_t^T S_t. With log gates g_t and
G_t = sum_{s<=t} g_s (per key channel d), the masked kernel matrix is
    A_ij = sum_d q_id k_jd exp(G_id - G_jd)   (j <= i),   O = A V + (exp(G) ⊙ Q) S_0.

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import causal_mask, masked_exp_diff


def gla_parallel(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, s0: Tensor | None, *, scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """q, k, g: [B, H, T, Dk]; v: [B, H, T, Dv]; s0: [B, H, Dk, Dv]."""
    q = q * scale
    T = q.shape[2]
    G = torch.cumsum(g, dim=2)  # [B, H, T, Dk]
    mask = causal_mask(T, q.device).unsqueeze(-1)  # [T, T, 1]
    decay = masked_exp_diff(G.unsqueeze(3), G.unsqueeze(2), mask)  # [B, H, T(i), T(j), Dk]
    A = (q.unsqueeze(3) * k.unsqueeze(2) * decay).sum(-1)  # [B, H, T, T]
    o = A @ v
    to_end = torch.exp(G[:, :, -1:] - G)  # [B, H, T, Dk]
    s = (k * to_end).transpose(-1, -2) @ v
    if s0 is not None:
        o = o + (q * torch.exp(G)) @ s0
        s = s + torch.exp(G[:, :, -1]).unsqueeze(-1) * s0
    return o, s

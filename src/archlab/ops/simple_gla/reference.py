"""Scalar-gated linear attention (one decay per head and step), parallel reference.

RetNet (Sun et al. 2023, "Retentive Network", eq. 5: O = (Q K^T ⊙ D) V with
D_nm = gamma^(n-m) for n >= m) generalised to data-dependent scalar decays (the
"simple GLA" / Mamba-2 scalar-decay form): with log gates g_t and G_t = sum_{s<=t} g_s,
    o_i = sum_{j<=i} exp(G_i - G_j) (q_i . k_j) v_j  +  exp(G_i) q_i^T S_0.

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import causal_mask, masked_exp_diff


def simple_gla_parallel(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, s0: Tensor | None, *, scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """q, k: [B, H, T, Dk]; v: [B, H, T, Dv]; g: [B, H, T] log decays; s0: [B, H, Dk, Dv]."""
    q = q * scale
    T = q.shape[2]
    G = torch.cumsum(g, dim=-1)  # [B, H, T]
    D = masked_exp_diff(G.unsqueeze(-1), G.unsqueeze(-2), causal_mask(T, q.device))  # [B, H, T, T]
    o = ((q @ k.transpose(-1, -2)) * D) @ v
    to_end = torch.exp(G[..., -1:] - G)  # [B, H, T] decay from step j to the end
    s = (k * to_end.unsqueeze(-1)).transpose(-1, -2) @ v
    if s0 is not None:
        o = o + torch.exp(G).unsqueeze(-1) * (q @ s0)
        s = s + torch.exp(G[..., -1]).unsqueeze(-1).unsqueeze(-1) * s0
    return o, s

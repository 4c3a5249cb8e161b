"""Linear attention, recurrent form (one token at a time; the decoding form).

    S_t = S_{t-1} + k_t v_t^T,   z_t = z_{t-1} + k_t,   o_t = q_t^T S_t / (q_t . z_t)

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor


def linear_attn_recurrent(
    q: Tensor, k: Tensor, v: Tensor, s0: Tensor | None, z0: Tensor | None, *,
    normalize: bool, scale: float, eps: float, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    q = q * scale
    s = q.new_zeros(B, H, Dk, Dv) if s0 is None else s0
    z = q.new_zeros(B, H, Dk) if z0 is None else z0
    outs = []
    for t in range(T):
        s = s + k[:, :, t, :, None] * v[:, :, t, None, :]  # [B, H, Dk, Dv]
        o_t = (q[:, :, t, None, :] @ s).squeeze(-2)  # [B, H, Dv]
        if normalize:
            z = z + k[:, :, t]
            o_t = o_t / ((q[:, :, t] * z).sum(-1, keepdim=True) + eps)
        outs.append(o_t)
    return torch.stack(outs, dim=2), s, (z if normalize else None)

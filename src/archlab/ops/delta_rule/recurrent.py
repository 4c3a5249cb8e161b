"""(Gated) delta rule, recurrent form (the decoding form), in the order of transformers'
Qwen3-Next ``torch_recurrent_gated_delta_rule``: decay, then the delta correction, then read:
    S <- exp(g_t) S;  S <- S + beta_t k_t (v_t - S^T k_t)^T;  o_t = S^T q_t.

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor


def delta_rule_recurrent(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, beta: Tensor, s0: Tensor | None, *,
    scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor]:
    B, H, T, Dk = q.shape
    s = q.new_zeros(B, H, Dk, v.shape[-1]) if s0 is None else s0
    q = q * scale
    outs = []
    for t in range(T):
        if g is not None:
            s = torch.exp(g[:, :, t, None, None]) * s
        k_t = k[:, :, t]  # [B, H, Dk]
        pred = (k_t.unsqueeze(-2) @ s).squeeze(-2)  # [B, H, Dv]: what the state recalls for k_t
        delta = beta[:, :, t, None] * (v[:, :, t] - pred)
        s = s + k_t.unsqueeze(-1) * delta.unsqueeze(-2)
        outs.append((q[:, :, t, None, :] @ s).squeeze(-2))  # [B, H, Dv]
    return torch.stack(outs, dim=2), s

"""(Gated) delta rule, parallel reference: the whole sequence as one block of the WY/UT form.

Recurrence (Schlag et al. 2021; Yang et al. 2024 "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length"; gated: Yang et al. 2025 "Gated Delta Networks", eq. 10):
    S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T,   o_t = S_t^T q_t.
Unrolled (b = cumsum g, D_ij = exp(b_i - b_j)), the per-step corrections u_j satisfy the
unit-lower-triangular system (I + tril(diag(beta) K K^T ⊙ D, -1)) u = beta ⊙ (V - exp(b) ⊙ K S_0),
so with W, U from one triangular solve:
    u = U - W S_0,   O = (exp(b) ⊙ Q) S_0 + (tril(Q K^T) ⊙ D) u,
    S_T = exp(b_T) S_0 + (exp(b_T - b) ⊙ K)^T u.
The delta rule is the special case g = 0.

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import causal_mask, masked_exp_diff


def delta_block(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, beta: Tensor) -> tuple[Tensor, ...]:
    """The s0-independent quantities of one block (any leading dims, time at dim -2).

    q, k: [..., T, Dk] (q already scaled); v: [..., T, Dv]; g, beta: [..., T].
    Returns (U [..., T, Dv], W [..., T, Dk], Aqk [..., T, T], q_in [..., T, Dk] = exp(b) q,
             k_out [..., T, Dk] = exp(b_T - b) k, decay [...] = exp(b_T)).
    """
    T = q.shape[-2]
    dev = q.device
    b = torch.zeros_like(beta) if g is None else torch.cumsum(g, dim=-1)  # [..., T]
    strict = masked_exp_diff(b.unsqueeze(-1), b.unsqueeze(-2), causal_mask(T, dev, diagonal=-1))
    incl = masked_exp_diff(b.unsqueeze(-1), b.unsqueeze(-2), causal_mask(T, dev))  # [..., T, T]
    L = torch.eye(T, dtype=q.dtype, device=dev) + beta.unsqueeze(-1) * (k @ k.transpose(-1, -2)) * strict
    rhs = beta.unsqueeze(-1) * torch.cat([v, torch.exp(b).unsqueeze(-1) * k], dim=-1)  # [..., T, Dv + Dk]
    UW = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
    Dv = v.shape[-1]
    U, W = UW[..., :Dv], UW[..., Dv:]
    Aqk = (q @ k.transpose(-1, -2)) * incl
    q_in = q * torch.exp(b).unsqueeze(-1)
    k_out = k * torch.exp(b[..., -1:] - b).unsqueeze(-1)
    return U, W, Aqk, q_in, k_out, torch.exp(b[..., -1])


def delta_rule_parallel(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, beta: Tensor, s0: Tensor | None, *,
    scale: float, chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """q, k: [B, H, T, Dk]; v: [B, H, T, Dv]; g, beta: [B, H, T]; s0: [B, H, Dk, Dv]."""
    U, W, Aqk, q_in, k_out, decay = delta_block(q * scale, k, v, g, beta)
    if s0 is None:
        s0 = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])
    u = U - W @ s0  # [B, H, T, Dv]
    o = q_in @ s0 + Aqk @ u
    s = decay[..., None, None] * s0 + k_out.transpose(-1, -2) @ u
    return o, s

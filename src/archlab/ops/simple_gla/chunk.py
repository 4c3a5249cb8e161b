"""Scalar-gated linear attention, chunkwise form.

With b the inclusive cumsum of the log gates inside each chunk (b_last its total):
    O_n = (tril(Q K^T) ⊙ exp(b_i - b_j)) V + (exp(b) ⊙ Q) S_n
    S_{n+1} = exp(b_last) S_n + (exp(b_last - b) ⊙ K)^T V
Every exponent is <= 0 (masked before exp), so no overflow for any decay.
The inter-chunk recurrence runs through common.state_scan: no Python loop over chunks.

Shapes: B batch, H heads, T time, N chunks, C chunk size, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import accumulate_dtype, causal_mask, masked_exp_diff, pad_time, state_scan


def simple_gla_chunk(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, s0: Tensor | None, *, scale: float, chunk_size: int,
    mm_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """``mm_dtype``: dtype of the matmul operands (None: float32/64); decays, states and
    chunk-to-chunk sums stay in the accumulate dtype."""
    T = q.shape[2]
    C = chunk_size
    acc = accumulate_dtype(q)
    md = mm_dtype or acc
    qc = pad_time(q.to(acc) * scale, C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    kc = pad_time(k.to(acc), C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    vc = pad_time(v.to(md), C).unflatten(2, (-1, C))  # [B, H, N, C, Dv]
    b = torch.cumsum(pad_time(g, C).unflatten(2, (-1, C)), dim=-1)  # [B, H, N, C]
    D = masked_exp_diff(b.unsqueeze(-1), b.unsqueeze(-2), causal_mask(C, q.device))  # [B, H, N, C, C]
    A = (qc.to(md) @ kc.to(md).transpose(-1, -2)) * D
    b_last = b[..., -1:]  # [B, H, N, 1]
    k_out = (kc * torch.exp(b_last - b).unsqueeze(-1)).to(md)
    x = (k_out.transpose(-1, -2) @ vc).to(acc)  # [B, H, N, Dk, Dv]
    s_before, s = state_scan(b_last, x, s0)
    q_in = (qc * torch.exp(b).unsqueeze(-1)).to(md)
    o = (A.to(md) @ vc).to(acc) + (q_in @ s_before.to(md)).to(acc)  # [B, H, N, C, Dv]
    return o.flatten(2, 3)[:, :, :T], s

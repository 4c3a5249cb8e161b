"""Gated linear attention, chunkwise form with sub-chunks (Yang et al. 2024, section 4.2-4.3).

Inside a chunk, b is the inclusive cumsum of the log gates (per key channel). The intra-chunk
kernel A_ij = sum_d q_id k_jd exp(b_id - b_jd) is split by sub-chunks of size c:
- a query in sub-chunk p and a key in an earlier sub-chunk factor through the boundary
  r_p = b at the end of sub-chunk p-1:  exp(b_i - r_p) * exp(r_p - b_j), both <= 1, so the
  pair is one matmul (q ⊙ exp(b - r_p)) (k ⊙ exp(r_p - b))^T;
- pairs inside one sub-chunk use the masked [c, c, Dk] decay tensor directly (exact).
Between chunks: S_{n+1} = exp(b_last) ⊙ S_n + (K ⊙ exp(b_last - b))^T V, output
(Q ⊙ exp(b)) S_n; every exponent is <= 0, so no overflow for any gate values.

Shapes: B batch, H heads, T time, N chunks, C chunk size, P sub-chunks per chunk,
c sub-chunk size, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..linear_attn.common import accumulate_dtype, causal_mask, pad_time, state_scan

SUB_CHUNK = 16


def _intra(q: Tensor, k: Tensor, b: Tensor, c: int, md: torch.dtype) -> Tensor:
    """q, k, b: [B, H, N, C, Dk] -> A [B, H, N, C, C] (causal, inclusive)."""
    C = q.shape[-2]
    P = C // c
    dev = q.device
    neg_inf = torch.tensor(-math.inf, dtype=b.dtype, device=dev)
    # boundary before sub-chunk p: b at its previous row (p >= 1); row 0 never used (masked)
    r = torch.cat([torch.zeros_like(b[..., :1, :]), b[..., c - 1:C - 1:c, :]], dim=-2)  # [B, H, N, P, Dk]
    qs = q.unflatten(-2, (P, c))  # [B, H, N, P, c, Dk]
    bs = b.unflatten(-2, (P, c))  # [B, H, N, P, c, Dk]
    q_hat = qs * torch.exp(bs - r.unsqueeze(-2))  # [B, H, N, P, c, Dk]
    earlier = torch.arange(C, device=dev).view(1, C) < (torch.arange(P, device=dev) * c).view(P, 1)  # [P, C]
    expo = torch.where(earlier.unsqueeze(-1), r.unsqueeze(-2) - b.unsqueeze(-3), neg_inf)  # [B, H, N, P, C, Dk]
    k_hat = k.unsqueeze(-3) * torch.exp(expo)  # [B, H, N, P, C, Dk]
    A_off = (q_hat.to(md) @ k_hat.to(md).transpose(-1, -2)).to(q.dtype)  # [B, H, N, P, c, C]
    # diagonal sub-chunks: [.., P, c(i), c(j), Dk] masked decay
    diag_mask = causal_mask(c, dev).unsqueeze(-1)  # [c, c, 1]
    d_expo = torch.where(diag_mask, bs.unsqueeze(-2) - bs.unsqueeze(-3), neg_inf)
    ks = k.unflatten(-2, (P, c))
    A_diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * torch.exp(d_expo)).sum(-1)  # [B, H, N, P, c, c]
    eye = torch.eye(P, dtype=q.dtype, device=dev).view(P, 1, P, 1)  # places block p at column block p
    A = A_off.unflatten(-1, (P, c)) + A_diag.unsqueeze(-2) * eye  # [B, H, N, P, c, P, c]
    return A.flatten(-2, -1).flatten(-3, -2)  # [B, H, N, C, C]


def gla_chunk(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, s0: Tensor | None, *, scale: float, chunk_size: int,
    mm_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """``mm_dtype``: dtype of the matmul operands (None: float32/64); decays, states and
    chunk-to-chunk sums stay in the accumulate dtype."""
    T = q.shape[2]
    C = chunk_size
    c = SUB_CHUNK if C % SUB_CHUNK == 0 else C
    acc = accumulate_dtype(q)
    md = mm_dtype or acc
    qc = pad_time(q.to(acc) * scale, C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    kc = pad_time(k.to(acc), C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    vc = pad_time(v.to(md), C).unflatten(2, (-1, C))  # [B, H, N, C, Dv]
    b = torch.cumsum(pad_time(g, C).unflatten(2, (-1, C)), dim=-2)  # [B, H, N, C, Dk]
    A = _intra(qc, kc, b, c, md)
    b_last = b[..., -1, :]  # [B, H, N, Dk]
    k_out = (kc * torch.exp(b_last.unsqueeze(-2) - b)).to(md)
    x = (k_out.transpose(-1, -2) @ vc).to(acc)  # [B, H, N, Dk, Dv]
    s_before, s = state_scan(b_last, x, s0)
    q_in = (qc * torch.exp(b)).to(md)
    o = (A.to(md) @ vc).to(acc) + (q_in @ s_before.to(md)).to(acc)  # [B, H, N, C, Dv]
    return o.flatten(2, 3)[:, :, :T], s

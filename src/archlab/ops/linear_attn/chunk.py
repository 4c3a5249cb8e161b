"""Linear attention, chunkwise form: quadratic inside a chunk, state passing between chunks.

Chunk n (positions nC .. nC+C-1) sees S_n = sum of k_j v_j^T over earlier chunks:
    O_n = tril(Q_n K_n^T) V_n + Q_n S_n,       S_{n+1} = S_n + K_n^T V_n
(the inter-chunk recurrence is an exclusive cumsum). Same result as reference.py in
O(T C (Dk + Dv) + T Dk Dv). No Python control flow on tensor values: torch.compile-able.

Shapes: B batch, H heads, T time, N chunks, C chunk size, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .common import accumulate_dtype, causal_mask, pad_time, state_scan


def linear_attn_chunk(
    q: Tensor, k: Tensor, v: Tensor, s0: Tensor | None, z0: Tensor | None, *,
    normalize: bool, scale: float, eps: float, chunk_size: int, mm_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``mm_dtype``: dtype of the matmul operands (None: the accumulate dtype, float32/64).
    States, normalisers and the chunk-to-chunk sums are always kept in the accumulate dtype."""
    T = q.shape[2]
    C = chunk_size
    acc = accumulate_dtype(q)
    md = mm_dtype or acc
    qc = pad_time((q * scale).to(md), C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    kc = pad_time(k.to(md), C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    vc = pad_time(v.to(md), C).unflatten(2, (-1, C))  # [B, H, N, C, Dv]
    A = (qc @ kc.transpose(-1, -2)) * causal_mask(C, q.device).to(md)  # [B, H, N, C, C]
    s_before, s = state_scan(None, (kc.transpose(-1, -2) @ vc).to(acc), s0)  # [B, H, N, Dk, Dv]
    o = (A @ vc).to(acc) + (qc @ s_before.to(md)).to(acc)  # [B, H, N, C, Dv]
    z = None
    if normalize:
        z_before, z = state_scan(None, kc.to(acc).sum(-2).unsqueeze(-1), None if z0 is None else z0.unsqueeze(-1))
        den = A.to(acc).sum(-1) + (qc.to(acc) @ z_before).squeeze(-1)  # [B, H, N, C]
        o = o / (den + eps).unsqueeze(-1)
        z = z.squeeze(-1)
    return o.flatten(2, 3)[:, :, :T], s, z

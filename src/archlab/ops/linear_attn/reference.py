"""Linear attention, parallel (quadratic) reference.

Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive Transformers with
Linear Attention", eq. 4-6: with feature-mapped queries/keys already applied,
    o_i = sum_{j<=i} (q_i . k_j) v_j  /  sum_{j<=i} (q_i . k_j)      (denominator optional).
Written as the masked kernel matrix A = tril(Q K^T): O = A V (/ A 1).

Shapes: B batch, H heads, T time, Dk key dim, Dv value dim.
"""
from __future__ import annotations

from torch import Tensor

from .common import causal_mask


def linear_attn_parallel(
    q: Tensor, k: Tensor, v: Tensor, s0: Tensor | None, z0: Tensor | None, *,
    normalize: bool, scale: float, eps: float, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """q, k: [B, H, T, Dk]; v: [B, H, T, Dv]; s0: [B, H, Dk, Dv]; z0: [B, H, Dk] (compute dtype).
    Returns o [B, H, T, Dv], final state [B, H, Dk, Dv], final normaliser [B, H, Dk] or None."""
    q = q * scale
    T = q.shape[2]
    A = (q @ k.transpose(-1, -2)) * causal_mask(T, q.device)  # [B, H, T, T]
    o = A @ v
    if s0 is not None:
        o = o + q @ s0  # what the tokens before this call contribute
    s = k.transpose(-1, -2) @ v  # [B, H, Dk, Dv]
    if s0 is not None:
        s = s + s0
    z = None
    if normalize:
        den = A.sum(-1)  # [B, H, T]
        z = k.sum(2)  # [B, H, Dk]
        if z0 is not None:
            den = den + (q @ z0.unsqueeze(-1)).squeeze(-1)
            z = z + z0
        o = o / (den + eps).unsqueeze(-1)
    return o, s, z

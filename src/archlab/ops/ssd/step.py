"""One recurrent step of SSD (Mamba-2), for token-by-token decoding.

Shapes: B batch, H heads, P head dim, G groups, N state size.
"""
from __future__ import annotations

import torch

from archlab.ops.ssd.reference import compute_dtype, heads_from_groups


def ssd_step(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
) -> torch.Tensor:
    """Advance ``state`` [B, H, P, N] (in place) by one token and return y [B, H, P].

    x: [B, H, P]; dt: [B, H]; A: [H]; B, C: [B, G, N]. Arithmetic in float32 (float64 stays float64).
    """
    ct = compute_dtype(x.dtype)
    H = x.shape[1]
    dt = dt.to(ct)
    Bh, Ch = heads_from_groups(B.to(ct), H), heads_from_groups(C.to(ct), H)  # [B, H, N]
    decay = torch.exp(dt * A.to(ct))[:, :, None, None]  # [B, H, 1, 1]
    h = decay * state.to(ct, copy=True) + (dt[:, :, None] * x.to(ct))[..., None] * Bh[:, :, None, :]  # [B, H, P, N]
    state.copy_(h.detach())  # the cache carries values, not the autograd graph
    return torch.matmul(h, Ch[..., None]).squeeze(-1).to(x.dtype)  # [B, H, P]

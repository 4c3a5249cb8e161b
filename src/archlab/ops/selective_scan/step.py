"""One recurrent step of the selective scan, for token-by-token decoding.

The recurrence of :mod:`archlab.ops.selective_scan.reference` for a single token, updating the state
in place. Shapes: B batch, E channels (d_inner), N state size.
"""
from __future__ import annotations

import torch

from archlab.ops.selective_scan.reference import compute_dtype


def selective_scan_step(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
) -> torch.Tensor:
    """Advance ``state`` [B, E, N] (in place) by one token and return y [B, E].

    x, dt: [B, E]; A: [E, N]; B, C: [B, N]. Arithmetic is in float32 (float64 stays float64); the
    state keeps its own dtype. Gradients reach the inputs of this step, not earlier steps.
    """
    ct = compute_dtype(x.dtype)
    dA = torch.exp(dt.to(ct)[:, :, None] * A.to(ct))  # [B, E, N]
    dBx = (dt.to(ct) * x.to(ct))[:, :, None] * B.to(ct)[:, None, :]  # [B, E, N]
    h = dA * state.to(ct, copy=True) + dBx
    state.copy_(h.detach())  # the cache carries values, not the autograd graph
    return torch.matmul(h, C.to(ct)[:, :, None]).squeeze(-1).to(x.dtype)  # [B, E]

"""Mamba-2's SSD through the Triton kernels of scalar-gated linear attention.

SSD is linear attention with one log decay per step and head: with a_t = dt_t A_h,
    h_t = e^(a_t) h_{t-1} + (dt_t x_t) B_t^T,   y_t = h_t C_t
is simple GLA with q = C_t, k = B_t, v = dt_t x_t, g = a_t, scale 1, and the state transposed
([N, P] there, [P, N] here). The kernels read each group's B and C for its heads (head h reads
group h // (H / G)) without copying them per head. v = dt x is rounded to x's dtype so that bf16
activations stay bf16 matmul operands; accumulation and states are float32 (the kernels' rule).

Same arguments and results as :func:`archlab.ops.ssd.reference.ssd_reference`; ``chunk_size``
must be one the kernels take (16, 32, 64, 128). CUDA, or the CPU under TRITON_INTERPRET=1.
"""
from __future__ import annotations

import torch

from archlab.ops.linear_attn.common import load_triton_chunk
from archlab.ops.ssd.reference import check_shapes, compute_dtype


def ssd_triton(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
               initial_state: torch.Tensor | None = None, *, chunk_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    check_shapes(x, dt, A, B, C, initial_state)
    md = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else compute_dtype(x.dtype)
    q = C.to(md).transpose(1, 2)  # [B, T, G, N] -> [B, G, T, N]
    k = B.to(md).transpose(1, 2)
    v = (x.float() * dt.float()[..., None]).to(md).transpose(1, 2)  # [B, H, T, P]
    g = (dt.float() * A.float()).transpose(1, 2)  # [B, H, T]
    s0 = None if initial_state is None else initial_state.float().transpose(-1, -2)  # [B, H, N, P]
    o, s = load_triton_chunk().chunk_triton(q, k, v, g, s0, scale=1.0, chunk_size=chunk_size, out_dtype=x.dtype)
    return o.transpose(1, 2), s.transpose(-1, -2)  # [B, T, H, P], [B, H, P, N]

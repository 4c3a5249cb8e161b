"""(Gated) delta rule, chunkwise form (Yang et al. 2024, section 3.3, "WY representation";
gated: Yang et al. 2025, section 3.3).

reference.delta_block is applied to all chunks at once (batched triangular solves: the
quadratic, s0-independent part); the chunks are then joined by the state recurrence
    u_n = U_n - W_n S_n,  O_n = (exp(b) Q_n) S_n + A_n u_n,  S_{n+1} = exp(b_last) S_n + K_n'^T u_n,
which is a product of matrices, not elementwise, so it is a loop over chunks (N steps of
three small matmuls). With ``compiled=True`` the batched part goes through torch.compile.

Shapes: B batch, H heads, T time, N chunks, C chunk size, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import compiled, pad_time
from .reference import delta_block


def _prepare(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, beta: Tensor, scale: float, chunk_size: int):
    C = chunk_size
    qc = pad_time(q * scale, C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    kc = pad_time(k, C).unflatten(2, (-1, C))  # [B, H, N, C, Dk]
    vc = pad_time(v, C).unflatten(2, (-1, C))  # [B, H, N, C, Dv]
    bc = pad_time(beta, C).unflatten(2, (-1, C))  # [B, H, N, C]; beta 0: padded steps write nothing
    gc = None if g is None else pad_time(g, C).unflatten(2, (-1, C))  # [B, H, N, C]
    return delta_block(qc, kc, vc, gc, bc)


def _delta_rule_chunk(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, beta: Tensor, s0: Tensor | None, *,
    scale: float, chunk_size: int, compile_prepare: bool,
) -> tuple[Tensor, Tensor]:
    B, H, T, Dk = q.shape
    prep = compiled(_prepare) if compile_prepare else _prepare
    U, W, Aqk, q_in, k_out, decay = prep(q, k, v, g, beta, scale, chunk_size)
    s = q.new_zeros(B, H, Dk, v.shape[-1]) if s0 is None else s0
    outs = []
    for n in range(U.shape[2]):
        u = U[:, :, n] - W[:, :, n] @ s  # [B, H, C, Dv]
        outs.append(q_in[:, :, n] @ s + Aqk[:, :, n] @ u)
        s = decay[:, :, n, None, None] * s + k_out[:, :, n].transpose(-1, -2) @ u
    return torch.cat(outs, dim=2)[:, :, :T], s


def delta_rule_chunk(q, k, v, g, beta, s0, *, scale: float, chunk_size: int):
    return _delta_rule_chunk(q, k, v, g, beta, s0, scale=scale, chunk_size=chunk_size, compile_prepare=False)


def delta_rule_chunk_compiled(q, k, v, g, beta, s0, *, scale: float, chunk_size: int):
    return _delta_rule_chunk(q, k, v, g, beta, s0, scale=scale, chunk_size=chunk_size, compile_prepare=True)

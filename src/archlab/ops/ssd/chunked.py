"""The chunked SSD algorithm of Mamba-2 (Dao & Gu 2024, Section 6, "the SSD algorithm").

Time is cut into K chunks of L tokens. With a_t = dt_t * A (log decay of one step, per head) and
its running sum within the chunk cum_l:
1. intra-chunk (quadratic, like masked attention): y_l += sum_{s<=l} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s
2. each chunk's end state from its own tokens: S_k = sum_s exp(cum_{L-1} - cum_s) dt_s x_s B_s^T
3. inter-chunk recurrence: the state entering chunk k, H_k = sum_{j<k} (decay from j to k) S_j + (decay) h_0,
   done as one [K+1, K+1] decay-matrix product (compile-friendly; quadratic in K, small)
4. state-to-output: y_l += exp(cum_l) C_l . H_k
Every exponent is a sum of non-positive log decays over a causal range (a "segment sum" computed
with a masked cumulative sum, not a difference of large cumulative sums), so nothing overflows.
Gradients come from autograd: every step is an einsum/matmul or elementwise op.

C . B is computed once per group and shared by the group's heads.

Shapes: B batch, T time, H heads, P head dim, G groups, R heads per group (H / G), N state size,
K chunks, L chunk length (positions l, s).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archlab.ops.ssd.reference import check_shapes, compute_dtype


def segment_sum(a: torch.Tensor) -> torch.Tensor:
    """[..., L] -> [..., L, L] with out[..., l, s] = a[s+1] + ... + a[l] for s <= l, -inf above the diagonal.

    A masked cumulative sum rather than cum[l] - cum[s], which would lose precision when the
    running sums are large.
    """
    L = a.shape[-1]
    strict = torch.ones(L, L, dtype=torch.bool, device=a.device).tril(-1)
    z = a[..., :, None].expand(*a.shape, L).masked_fill(~strict, 0)  # z[..., k, s] = a[k] for k > s
    out = z.cumsum(dim=-2)  # [..., l, s] = sum_{s < k <= l} a[k]
    return out.masked_fill(~strict.logical_or(torch.eye(L, dtype=torch.bool, device=a.device)), float("-inf"))


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    *,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same arguments and results as :func:`archlab.ops.ssd.reference.ssd_reference`.

    Args:
        chunk_size: tokens per chunk (L). Any sequence length is accepted: the tail is padded with
            dt = 0 (decay 1, no input), which leaves the state unchanged.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be a positive integer, got {chunk_size}")
    check_shapes(x, dt, A, B, C, initial_state)
    in_dtype, ct = x.dtype, compute_dtype(x.dtype)
    Bsz, T, H, P = x.shape
    G, N = B.shape[-2:]
    if T == 0:
        h = x.new_zeros(Bsz, H, P, N, dtype=ct) if initial_state is None else initial_state.to(ct)
        return x.new_zeros(Bsz, 0, H, P), h
    R, L = H // G, chunk_size
    pad = (-T) % L
    K = (T + pad) // L
    x, dt, A, B, C = (t.to(ct) for t in (x, dt, A, B, C))
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    X = x.reshape(Bsz, K, L, H, P).permute(0, 3, 1, 2, 4)  # [B, H, K, L, P]
    dtc = dt.reshape(Bsz, K, L, H).permute(0, 3, 1, 2)  # [B, H, K, L]
    Bc = B.reshape(Bsz, K, L, G, N).permute(0, 3, 1, 2, 4)  # [B, G, K, L, N]
    Cc = C.reshape(Bsz, K, L, G, N).permute(0, 3, 1, 2, 4)  # [B, G, K, L, N]
    log_decay = dtc * A[:, None, None]  # [B, H, K, L]
    cum = log_decay.cumsum(dim=-1)  # [B, H, K, L]

    # 1. intra-chunk: masked "attention" with scores (C_l . B_s) exp(segsum) dt_s
    CB = torch.matmul(Cc, Bc.transpose(-1, -2))  # [B, G, K, L, L], once per group
    decay = torch.exp(segment_sum(log_decay))  # [B, H, K, L, L]
    scores = decay.view(Bsz, G, R, K, L, L) * CB[:, :, None] * dtc.view(Bsz, G, R, K, 1, L)  # [B, G, R, K, L, L]
    y = torch.matmul(scores.view(Bsz, H, K, L, L), X)  # [B, H, K, L, P]

    # 2. each chunk's end state from its own tokens
    to_end = decay[..., -1, :] * dtc  # [B, H, K, L]: exp(a_{s+1} + ... + a_{L-1}) dt_s
    Xw = (X * to_end[..., None]).transpose(-1, -2).reshape(Bsz, G, R, K, P, L)  # [B, H, K, P, L] -> per group
    states = torch.matmul(Xw, Bc[:, :, None]).view(Bsz, H, K, P * N)  # [B, G, R, K, P, N] -> [B, H, K, P*N]

    # 3. chain the chunks: state entering each chunk, plus the final state
    h0 = x.new_zeros(Bsz, H, P, N) if initial_state is None else initial_state.to(ct)
    states = torch.cat([h0.reshape(Bsz, H, 1, P * N), states], dim=2)  # [B, H, K+1, P*N]
    chunk_decay = torch.exp(segment_sum(F.pad(cum[..., -1], (1, 0))))  # [B, H, K+1, K+1]
    entering = torch.matmul(chunk_decay, states)  # [B, H, K+1, P*N]
    final = entering[:, :, -1].reshape(Bsz, H, P, N)
    entering = entering[:, :, :-1].reshape(Bsz, G, R, K, P, N)  # [B, H, K, P*N] -> per group

    # 4. state-to-output for each chunk
    y_off = torch.matmul(Cc[:, :, None], entering.transpose(-1, -2))  # [B, G, R, K, L, P]
    y = y + y_off.view(Bsz, H, K, L, P) * torch.exp(cum)[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(Bsz, K * L, H, P)  # [B, K, L, H, P] -> [B, T, H, P]
    return y[:, :T].to(in_dtype), final

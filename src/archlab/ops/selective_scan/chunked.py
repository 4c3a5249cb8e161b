"""Chunked selective scan of Mamba-1: the same recurrence as the reference, fast forward AND backward.

Why not the obvious forms: a Python loop over tokens is T tiny steps (slow on a GPU, and its autograd
backward through per-step slicing is what makes transformers' pure-PyTorch Mamba backward take
minutes on the CPU); Mamba-2's segment-sum trick does not apply because Mamba-1's decay
exp(dt_t[e] * A[e, n]) differs per channel AND per state, so the intra-chunk "attention" matrix
would be [L, L, E, N] per chunk (L times the work of the states themselves).

What it does instead, with the time axis cut into K chunks of L tokens:
1. every chunk scans its own L tokens from a zero state, all chunks at once (L vectorised steps);
2. the chunk end states are chained across chunks with each chunk's total decay (K small steps);
3. every chunk is scanned again from its true incoming state, storing all states (L steps), and
   the output y_t = C_t . h_t is one batched matmul.
So K * L tokens cost 2L + K vectorised steps instead of K * L, all arithmetic is multiplication by
decays in [0, 1] for A <= 0 (no exp of positive cumulative sums, no overflow), and the result
equals the reference scan up to float rounding.

The backward is written by hand (a custom autograd.Function): it saves only the inputs and one
state per segment, recomputes the states segment by segment, and runs the same chunked scan
backwards in time for the state gradients
    dL/dh_t = C_t (x) dL/dy_t + Abar_{t+1} * dL/dh_{t+1},
from which every input gradient is a batched reduction. Transient memory is O(B * S * E * N) for
a segment of S tokens, whatever the sequence length. S is picked so that one [S, B, E, N] tensor holds
about 2M elements on the CPU (fresh allocations above a few tens of MB cost a page fault per 4 kB
there, which made every elementwise op 4x slower in measurements) and 256M elsewhere.

Shapes: B batch, T time, E channels (d_inner), N state size, L chunk length, K chunks in a segment,
S segment length (K * L).
"""
from __future__ import annotations

import math

import torch

from archlab.ops.selective_scan.reference import check_shapes, compute_dtype


def _auto_segment_len(batch: int, E: int, N: int, L: int, device: torch.device) -> int:
    """Tokens per segment: a multiple of L, sized so a [S, B, E, N] tensor holds about the budget."""
    budget = 1 << 21 if device.type == "cpu" else 1 << 28
    return max(1, budget // (batch * E * N * L)) * L


def _chunk(t: torch.Tensor, L: int) -> torch.Tensor:
    """[B, S, F] -> [L, B, K, F], contiguous so that each step of the scans reads one block."""
    Bsz, S, F = t.shape
    return t.reshape(Bsz, S // L, L, F).permute(2, 0, 1, 3).contiguous()  # [B, K, L, F] -> [L, B, K, F]


def _unchunk(t: torch.Tensor) -> torch.Tensor:
    """[L, B, K, F] -> [B, S, F]."""
    L, Bsz, K, F = t.shape
    return t.permute(1, 2, 0, 3).reshape(Bsz, K * L, F)  # [B, K, L, F] -> [B, S, F]


def _scan(a: list[torch.Tensor], total_decay: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, reverse: bool = False):
    """All states of h = a * h_prev + b along time, the time axis being (chunk K, position L).

    a: L decays [B, K, E, N], one per position; total_decay: [B, K, E, N], their product per chunk;
    b: [L, B, K, E, N], OVERWRITTEN with the states; h0: [B, E, N], the state before the first
    (last, if reverse) token. reverse=True runs from the last token to the first:
    h[t] = a[t] * h[t+1] + b[t].
    Returns all states (b's storage) [L, B, K, E, N], the state entering each chunk [B, K, E, N]
    and the state after the last step [B, E, N].
    """
    L, K = b.shape[0], b.shape[2]
    pos = list(range(L - 1, -1, -1) if reverse else range(L))
    # 1. each chunk's own contribution from a zero state, all chunks at once
    s = b[pos[0]]
    for l in pos[1:]:
        s = torch.addcmul(b[l], a[l], s)
    # 2. chain the chunks: the state entering chunk k
    starts = torch.empty_like(s)  # [B, K, E, N]
    h = h0
    for k in range(K - 1, -1, -1) if reverse else range(K):
        starts[:, k] = h
        h = torch.addcmul(s[:, k], total_decay[:, k], h)
    # 3. rescan every chunk from its true incoming state, in place of b
    prev = starts
    for l in pos:
        prev = torch.addcmul(b[l], a[l], prev, out=b[l])
    return b, starts, h


def _discretise(x, dt, A, B, L):
    """Chunked views and the discretised decays Abar [L, B, K, E, N] and inputs Bbar*x [L, B, K, E, N]."""
    dtc, Bc = _chunk(dt, L), _chunk(B, L)  # [L, B, K, E], [L, B, K, N]
    uc = _chunk(dt * x, L)  # [L, B, K, E]
    a = torch.mul(dtc[..., None], A).exp_()
    b = uc[..., None] * Bc[..., None, :]
    return dtc, uc, Bc, a, b


def _segment_forward(x, dt, A, B, C, h0, L):
    _, _, _, a, b = _discretise(x, dt, A, B, L)
    h, _, h_end = _scan(a.unbind(0), a.prod(dim=0), b, h0)
    y = torch.matmul(h, _chunk(C, L)[..., None]).squeeze(-1)  # [L, B, K, E]
    return _unchunk(y), h_end


def _segment_backward(x, dt, A, B, C, h0, gy, g_end, L):
    """Input gradients of one segment, given dL/dy [B, S, E] and dL/d(final state) [B, E, N]."""
    dtc, uc, Bc, a, b = _discretise(x, dt, A, B, L)
    h, starts, _ = _scan(a.unbind(0), a.prod(dim=0), b, h0)
    Cc, gyc = _chunk(C, L), _chunk(gy, L)  # [L, B, K, N], [L, B, K, E]
    gC = torch.matmul(gyc[..., None, :], h).squeeze(-2)  # [L, B, K, N]
    # Abar_{t+1} for each position; the last token's successor is the segment's end (factor 1)
    across = torch.cat([a[0, :, 1:], torch.ones_like(a[0, :, :1])], dim=1)  # [B, K, E, N]
    a_next = list(a[1:].unbind(0)) + [across]
    q = gyc[..., None] * Cc[..., None, :]  # direct dL/dh_t through y_t: [L, B, K, E, N]
    gh, _, g_first = _scan(a_next, a[1:].prod(dim=0) * across, q, g_end, reverse=True)
    del a_next, across
    gu = torch.matmul(gh, Bc[..., None]).squeeze(-1)  # dL/d(dt*x) [L, B, K, E]
    gB = torch.matmul(uc[..., None, :], gh).squeeze(-2)  # [L, B, K, N]
    g_h0 = a[0, :, 0] * g_first  # [B, E, N]
    # dL/d(dt*A) = dL/dh_t * Abar_t * h_{t-1}, in place of gh; h_{t-1} is the chunk's incoming
    # state at the first position, then the chunk's own states
    g_log_decay = gh.mul_(a)
    del a
    g_log_decay[0].mul_(starts)
    g_log_decay[1:].mul_(h[:-1])
    del h
    gA = (g_log_decay * dtc[..., None]).sum(dim=(0, 1, 2))  # [E, N]
    gdt = g_log_decay.mul_(A).sum(-1)  # [L, B, K, E]
    gdt = _unchunk(gdt) + _unchunk(gu) * x
    return _unchunk(gu) * dt, gdt, gA, _unchunk(gB), _unchunk(gC), g_h0


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, chunk_size: int, segment_len: int):
        T = x.shape[1]
        ys, seg_starts, h = [], [], h0
        for s0 in range(0, T, segment_len):
            s1 = min(s0 + segment_len, T)
            seg_starts.append(h)
            y, h = _segment_forward(x[:, s0:s1], dt[:, s0:s1], A, B[:, s0:s1], C[:, s0:s1], h, chunk_size)
            ys.append(y)
        ctx.save_for_backward(x, dt, A, B, C, *seg_starts)
        ctx.chunk_size, ctx.segment_len = chunk_size, segment_len
        return torch.cat(ys, dim=1), h

    @staticmethod
    def backward(ctx, gy, g_final):
        x, dt, A, B, C, *seg_starts = ctx.saved_tensors
        L, S, T = ctx.chunk_size, ctx.segment_len, x.shape[1]
        if g_final is None:
            g_final = torch.zeros_like(seg_starts[0])
        if gy is None:
            gy = torch.zeros_like(x)
        gx, gdt, gB, gC = [], [], [], []
        gA = torch.zeros_like(A)
        g = g_final
        for i in range(len(seg_starts) - 1, -1, -1):
            s0, s1 = i * S, min((i + 1) * S, T)
            grads = _segment_backward(
                x[:, s0:s1], dt[:, s0:s1], A, B[:, s0:s1], C[:, s0:s1], seg_starts[i], gy[:, s0:s1], g, L
            )
            gx.append(grads[0])
            gdt.append(grads[1])
            gA += grads[2]
            gB.append(grads[3])
            gC.append(grads[4])
            g = grads[5]
        cat = lambda parts: torch.cat(parts[::-1], dim=1)  # noqa: E731 -- segments were visited last first
        return cat(gx), cat(gdt), gA, cat(gB), cat(gC), g, None, None


def selective_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    *,
    chunk_size: int = 16,
    segment_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same arguments and results as :func:`selective_scan_reference`, computed chunk by chunk.

    Args:
        chunk_size: tokens per chunk (L); a segment costs about 2L + S/L vectorised steps, so
            about sqrt(segment_len / 2) is fastest. Any sequence length is accepted (the tail is padded with
            dt = 0, which leaves the state unchanged).
        segment_len: tokens processed at once, bounding transient memory to a few
            [B, segment_len, E, N] tensors; None = about 2M elements per such tensor on the CPU,
            256M elsewhere. Rounded up to a multiple of chunk_size. Speed and memory only: the
            result does not depend on it.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be a positive integer, got {chunk_size}")
    if segment_len is not None and segment_len < 1:
        raise ValueError(f"segment_len: must be a positive integer or None, got {segment_len}")
    check_shapes(x, dt, A, B, C, initial_state)
    in_dtype, ct = x.dtype, compute_dtype(x.dtype)
    Bsz, T, E = x.shape
    N = A.shape[1]
    if T == 0:
        h = x.new_zeros(Bsz, E, N, dtype=ct) if initial_state is None else initial_state.to(ct)
        return x.new_zeros(Bsz, 0, E), h
    L = chunk_size
    if segment_len is None:
        S = _auto_segment_len(Bsz, E, N, L, x.device)
    else:
        S = L * math.ceil(segment_len / L)
    pad = (-T) % L
    x, dt, A, B, C = (t.to(ct) for t in (x, dt, A, B, C))
    if pad:
        # dt = 0 gives Abar = 1 and Bbar = 0: padded tokens leave the state as it was
        x, dt, B, C = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (x, dt, B, C))
    h0 = x.new_zeros(Bsz, E, N) if initial_state is None else initial_state.to(ct)
    y, h = _ChunkedScan.apply(x, dt, A, B, C, h0, L, S)
    return y[:, :T].to(in_dtype), h

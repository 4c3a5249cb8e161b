"""The "triton" form of linear attention, GLA and scalar-gated linear attention (simple GLA,
retention, Mamba-2's SSD): chunked kernels (triton_kernels.py) behind one
two custom ops (forward and backward, in Triton) with the autograd rule between them.

Supported: initial state, final state, scale, bf16/fp16/fp32 inputs (float32 accumulation,
float32 final state and gate gradients), any T (not only multiples of the chunk size), chunk
sizes 16, 32, 64 and 128. linear_attn's normaliser runs through the same kernels with a column
of ones appended to v (its state column is z). float64 is refused (use form="chunk").
The kernels run on CUDA tensors, or on the CPU under Triton's interpreter (TRITON_INTERPRET=1).

Shapes: B batch, H heads, T time, N chunks, C chunk size, Dk key dim, Dv value dim.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor

from . import triton_kernels as kern
from .common import TRITON_CHUNK_SIZES as CHUNK_SIZES

SUB_CHUNK = 16  # rows of the exact (key-by-key) intra-chunk blocks of GLA


def _tile(d: int, most: int) -> int:
    """Power-of-two tile >= 16 (tl.dot's minimum), at most ``most``."""
    return min(most, max(16, 1 << (d - 1).bit_length()))


class Tiles(NamedTuple):
    """Launch shape. Chosen from sm_90 compiles (ptxas -v) at D=128, C=64 for no register spills:
    the sequential state kernels hold a [64, 32] float32 state with 4 warps (2 programs per SM),
    as do the sub-chunk kernels of GLA ([16, 64] tiles); the other parallel kernels hold [C, 64]
    float32 tiles with 8 warps; 2 pipeline stages."""
    BK: int
    BV: int
    BVS: int  # Dv tile of the sequential state kernels
    NK: int
    NV: int
    NVS: int
    warps: int
    stages: int = 2

    @property
    def seq(self) -> dict[str, int]:
        return {"num_warps": 4, "num_stages": self.stages}

    @property
    def par(self) -> dict[str, int]:
        return {"num_warps": self.warps, "num_stages": self.stages}


def tiles(Dk: int, Dv: int, C: int) -> Tiles:
    BK, BV, BVS = _tile(Dk, 64), _tile(Dv, 64), _tile(Dv, 32)
    return Tiles(BK, BV, BVS, -(-Dk // BK), -(-Dv // BV), -(-Dv // BVS), 4 if C <= 32 else 8)


def check_triton_inputs(chunk_size: int, *xs: Tensor | None) -> None:
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(f"chunk_size: got {chunk_size} with form='triton'; accepted: {', '.join(map(str, CHUNK_SIZES))}")
    for x in xs:
        if x is None:
            continue
        if x.dtype == torch.float64:
            raise ValueError("form='triton': float64 inputs are not supported; accepted: bfloat16, float16, float32 "
                             "(use form='chunk' for float64)")
        if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(f"form='triton': needs CUDA tensors; got {x.device.type} "
                             "(TRITON_INTERPRET=1 runs the kernels on the CPU, slowly)")


# Forward and backward are two opaque custom ops (with the autograd rule between them) rather
# than an autograd.Function behind torch.compiler.disable: a compiled model keeps one graph
# around them instead of breaking it at every mixer (on an H200, a compiled Mamba-2 step of 16
# layers at batch 1 spent 46 ms of 86 outside its kernels with the graph broken at each SSD).
# The tensors the backward needs (hs, A, b) are outputs of the forward op; an unused one is an
# empty tensor.


@torch.library.custom_op("archlab::chunk_triton_fwd", mutates_args=())
def _fwd_op(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, s0: Tensor | None, scale: float, chunk_size: int,
            out_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(q, k, v, g | None, s0 | None) -> (o [B, H, T, Dv] in out_dtype, final state [B, H, Dk, Dv]
    float32, and for the backward: chunk states hs [B, H, N, Dk, Dv], GLA's intra-chunk scores A
    [B, H, N*C, C] float32 (empty unless per-channel gates), gate cumsums b (empty without gates)).
    q, k, v are contiguous and share one dtype; g and s0 are float32. g is [B, H, T, Dk] (one log
    decay per key channel, GLA) or [B, H, T] (one per head, a scalar gate). q and k may have fewer
    heads than v (Hq dividing H; head h reads q/k head h // (H / Hq)), with a scalar gate or none."""
    B, Hq, T, Dk = q.shape
    H, Dv = v.shape[1], v.shape[-1]
    hpg = H // Hq  # heads per q/k head
    C = chunk_size
    N = -(-T // C)
    gate = 0 if g is None else (2 if g.dim() == 3 else 1)
    use_g = gate == 1  # per-channel gates: A is made by the sub-chunk kernel and stored
    b = _chunk_cumsum(g, C) if gate else q  # [B, H, N*C(, Dk)] float32 (unused without gates)
    BH = B * H
    prec = _precision(q)
    t = tiles(Dk, Dv, C)
    hs = q.new_empty(B, H, N, Dk, Dv)
    s_final = q.new_empty(B, H, Dk, Dv, dtype=torch.float32)
    kern._state_scan[(t.NK, t.NVS, BH)](
        k, v, b, s0 if s0 is not None else s_final, hs, s_final, 1.0, T, N, H, hpg, Dk, Dv, C, t.BK, t.BVS,
        False, gate, s0 is not None, True, prec, **t.seq)
    A = q  # without gates Q K^T is recomputed where needed; with gates it is stored
    if use_g:
        A = q.new_empty(B, H, N * C, C, dtype=torch.float32)
        kern._intra_gated_fwd[(N * (C // SUB_CHUNK), BH)](q, k, b, A, scale, T, N, Dk, C, SUB_CHUNK, t.BK, prec, **t.seq)
    o = v.new_empty(B, H, T, Dv, dtype=out_dtype)
    kern._output_fwd[(N * t.NV, BH)](q, k, v, b, hs, A, o, scale, T, N, H, hpg, Dk, Dv, C, t.BK, t.BV, gate, prec,
                                     **t.par)
    return o, s_final, hs, A if use_g else q.new_empty(0), b if gate else q.new_empty(0)


@_fwd_op.register_fake
def _fwd_shapes(q, k, v, g, s0, scale, chunk_size, out_dtype):
    B, _, T, Dk = q.shape
    H, Dv = v.shape[1], v.shape[-1]
    C = chunk_size
    N = -(-T // C)
    f32 = torch.float32
    A = q.new_empty(B, H, N * C, C, dtype=f32) if g is not None and g.dim() == 4 else q.new_empty(0)
    b = q.new_empty(0) if g is None else q.new_empty(B, H, N * C, *g.shape[3:], dtype=f32)
    return (v.new_empty(B, H, T, Dv, dtype=out_dtype), q.new_empty(B, H, Dk, Dv, dtype=f32),
            q.new_empty(B, H, N, Dk, Dv), A, b)


@torch.library.custom_op("archlab::chunk_triton_bwd", mutates_args=())
def _bwd_op(q: Tensor, k: Tensor, v: Tensor, b: Tensor, s0: Tensor | None, hs: Tensor, A: Tensor, do: Tensor,
            d_final: Tensor | None, scale: float, chunk_size: int, want_ds0: bool) -> tuple[Tensor, Tensor, Tensor,
                                                                                           Tensor, Tensor]:
    """Gradients (dq, dk, dv, dg float32 (empty without gates), ds0 (empty unless want_ds0)) from
    the forward op's inputs and saved outputs; the gate kind is read from b's and A's shapes."""
    gate = 0 if b.numel() == 0 else (2 if b.dim() == 3 else 1)
    use_g = gate == 1
    B, Hq, T, Dk = q.shape
    H, Dv = v.shape[1], v.shape[-1]
    hpg = H // Hq
    C = chunk_size
    N = -(-T // C)
    BH = B * H
    prec = _precision(q)
    t = tiles(Dk, Dv, C)
    b = q if not gate else b
    do = do.contiguous()
    d_final = None if d_final is None else d_final.float().contiguous()
    dhs = torch.empty_like(hs)
    ds0 = torch.empty_like(s0) if want_ds0 else None
    kern._state_scan[(t.NK, t.NVS, BH)](
        q, do, b, d_final if d_final is not None else hs, dhs, ds0 if want_ds0 else hs, scale, T, N, H, hpg,
        Dk, Dv, C, t.BK, t.BVS, True, gate, d_final is not None, want_ds0, prec, **t.seq)
    A = q if not use_g else A
    dv = torch.empty_like(v)
    kern._dv_bwd[(N * t.NV, BH)](q, k, v, b, A, do, dhs, dv, scale, T, N, H, hpg, Dk, Dv, C, t.BK, t.BV, gate, prec,
                                 **t.par)
    dq = q.new_empty(B, H, T, Dk)  # per head; summed over the heads of a shared q/k head below
    dk = torch.empty_like(dq)
    dq_intra = dk_intra = dg = dq  # placeholders without gates
    if gate:
        dg = q.new_empty(B, H, T, Dk, dtype=torch.float32)  # per channel (summed below for a scalar gate)
    if use_g:
        dA = torch.empty_like(A)
        kern._intra_dA[(N, BH)](do, v, dA, T, N, Dv, C, t.BV, prec, **t.par)
        dq_intra = q.new_empty(B, H, N * C, Dk, dtype=torch.float32)
        dk_intra = torch.empty_like(dq_intra)
        kern._intra_dqk_gated[(N * (C // SUB_CHUNK) * t.NK, BH)](
            q, k, b, dA, dq_intra, dk_intra, scale, T, N, Dk, C, SUB_CHUNK, t.BK, prec, **t.seq)
    kern._dqkg_bwd[(N * t.NK, BH)](
        q, k, v, b, hs, dhs, do, dq_intra, dk_intra, dq, dk, dg, scale, T, N, H, hpg, Dk, Dv, C, t.BK, t.BV,
        gate, prec, **t.par)
    if hpg > 1:
        dq, dk = (x.view(B, H // hpg, hpg, T, Dk).sum(2) for x in (dq, dk))
    if gate == 2:
        dg = dg.sum(-1)  # [B, H, T]: the scalar gate feeds every key channel
    return dq, dk, dv, dg if gate else q.new_empty(0, dtype=torch.float32), ds0 if want_ds0 else q.new_empty(0)


@_bwd_op.register_fake
def _bwd_shapes(q, k, v, b, s0, hs, A, do, d_final, scale, chunk_size, want_ds0):
    gate = 0 if b.numel() == 0 else (2 if b.dim() == 3 else 1)
    B, _, T, Dk = q.shape
    H = v.shape[1]
    dg = q.new_empty(0, dtype=torch.float32) if not gate else \
        q.new_empty(B, H, T, *([Dk] if gate == 1 else []), dtype=torch.float32)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dg,
            torch.empty_like(s0) if want_ds0 else q.new_empty(0))


def _setup(ctx, inputs, output):
    q, k, v, g, s0, scale, chunk_size, _ = inputs
    _, _, hs, A, b = output
    ctx.save_for_backward(q, k, v, b, s0, hs, A)
    ctx.mark_non_differentiable(hs, A, b)
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None (no zero tensors)
    ctx.cfg = (scale, chunk_size, g is not None, s0 is not None)


def _backward(ctx, do, d_final, *_saved_only):
    q, k, v, b, s0, hs, A = ctx.saved_tensors
    scale, chunk_size, gated, has_s0 = ctx.cfg
    want_ds0 = has_s0 and ctx.needs_input_grad[4]
    if do is None and d_final is None:
        return None, None, None, None, None, None, None, None
    if do is None:
        do = torch.zeros_like(v)
    dq, dk, dv, dg, ds0 = _bwd_op(q, k, v, b, s0, hs, A, do, d_final, scale, chunk_size, want_ds0)
    return dq, dk, dv, dg if gated else None, ds0 if want_ds0 else None, None, None, None


_fwd_op.register_autograd(_backward, setup_context=_setup)


def _precision(q: Tensor) -> str:
    return "ieee" if q.dtype == torch.float32 else "tf32"  # no tf32 rounding for float32 inputs


def _chunk_cumsum(g: Tensor, C: int) -> Tensor:
    """Inclusive cumsum of the log gates inside each chunk, float32, time padded to N*C
    (zero gates: the padded rows repeat the last real row). g: [B, H, T, Dk] or [B, H, T]."""
    if g.dim() == 3:
        return _chunk_cumsum(g[..., None], C)[..., 0].contiguous()
    B, H, T, Dk = g.shape
    pad = (-T) % C
    gp = torch.nn.functional.pad(g.float(), (0, 0, 0, pad))  # [B, H, N*C, Dk]
    return gp.reshape(B, H, -1, C, Dk).cumsum(-2).reshape(B, H, T + pad, Dk).contiguous()


def chunk_triton(q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, s0: Tensor | None, *, scale: float,
                 chunk_size: int, out_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """q, k: [B, H, T, Dk] (or [B, Hq, T, Dk], Hq dividing H, shared by H / Hq heads each, with a
    scalar gate or none); v: [B, H, T, Dv]; g: [B, H, T, Dk] or [B, H, T] (scalar) log gates, or
    None; s0: [B, H, Dk, Dv] or None. q, k, v are cast to one dtype (float32 if they differ). Returns (o [B, H, T, Dv] in
    ``out_dtype`` (default v's), final state [B, H, Dk, Dv] float32)."""
    Hq, H = q.shape[1], v.shape[1]
    if k.shape[1] != Hq or H % Hq or (Hq != H and g is not None and g.dim() == 4):
        raise ValueError(f"q, k: {Hq} and {k.shape[1]} heads for v's {H}; q and k must have the same number of "
                         "heads, dividing v's (fewer only with a scalar gate or none)")
    check_triton_inputs(chunk_size, q, k, v, g, s0)
    dt = q.dtype if q.dtype == k.dtype == v.dtype else torch.float32
    o, s_final, *_ = _fwd_op(q.to(dt).contiguous(), k.to(dt).contiguous(), v.to(dt).contiguous(),
                             None if g is None else g.float().contiguous(),
                             None if s0 is None else s0.float().contiguous(), float(scale), chunk_size,
                             out_dtype or v.dtype)
    return o, s_final


def linear_attn_triton(
    q: Tensor, k: Tensor, v: Tensor, s0: Tensor | None, z0: Tensor | None, *,
    normalize: bool, scale: float, eps: float, chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Same contract as linear_attn_chunk. The normaliser is the extra value column of ones:
    its output is q . z and its state column is z."""
    if not normalize:
        o, s = chunk_triton(q, k, v, None, s0, scale=scale, chunk_size=chunk_size)
        return o, s, None
    B, H, T, Dk = q.shape
    Dv = v.shape[-1]
    v1 = torch.cat([v, v.new_ones(B, H, T, 1)], dim=-1)  # [B, H, T, Dv + 1]
    s1 = None
    if s0 is not None or z0 is not None:
        s0 = q.new_zeros(B, H, Dk, Dv, dtype=torch.float32) if s0 is None else s0.float()
        z0 = q.new_zeros(B, H, Dk, dtype=torch.float32) if z0 is None else z0.float()
        s1 = torch.cat([s0, z0.unsqueeze(-1)], dim=-1)  # [B, H, Dk, Dv + 1]
    o1, s = chunk_triton(q, k, v1, None, s1, scale=scale, chunk_size=chunk_size, out_dtype=torch.float32)
    o = o1[..., :Dv] / (o1[..., Dv:] + eps)
    return o, s[..., :Dv], s[..., Dv]

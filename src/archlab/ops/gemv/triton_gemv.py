"""One Triton kernel for a decoding matrix-vector product and what surrounds it (see __init__).

Each program owns BN output rows (BN rows of the gate and the same BN rows of the up half under
SwiGLU) and walks K in tiles of BK, keeping a [BN, BK] float32 partial product so that the row
sums happen once at the end. With a norm, every program first reduces x's squares (K is small
next to the rows it reads: x is 2-16 KB, a program's weights 64 KB or more).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gemv(x, w, y, nw, res, N_OUT, K, eps, HAS_NORM: tl.constexpr, SWIGLU: tl.constexpr, HAS_RES: tl.constexpr,
          BN: tl.constexpr, BK: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BN + tl.arange(0, BN)
    live = rows < N_OUT
    cols = tl.arange(0, BK)
    inv = 1.0
    if HAS_NORM:
        ss = tl.zeros([BK], tl.float32)
        for k0 in range(0, K, BK):
            xx = tl.load(x + k0 + cols, mask=k0 + cols < K, other=0.0).to(tl.float32)
            ss += xx * xx
        inv = tl.rsqrt(tl.sum(ss, 0) / K + eps)
    acc = tl.zeros([BN, BK], tl.float32)
    acc_up = tl.zeros([BN, BK], tl.float32)
    for k0 in range(0, K, BK):
        inside = k0 + cols < K
        xx = tl.load(x + k0 + cols, mask=inside, other=0.0)
        if HAS_NORM:  # normalised, then rounded to x's dtype as the norm module's output is
            xf = xx.to(tl.float32) * inv * tl.load(nw + k0 + cols, mask=inside, other=0.0).to(tl.float32)
            xx = xf.to(x.dtype.element_ty)
        xf = xx.to(tl.float32)[None, :]
        m = live[:, None] & inside[None, :]
        wt = tl.load(w + rows[:, None].to(tl.int64) * K + k0 + cols[None, :], mask=m, other=0.0)
        acc += wt.to(tl.float32) * xf
        if SWIGLU:
            wu = tl.load(w + (rows[:, None] + N_OUT).to(tl.int64) * K + k0 + cols[None, :], mask=m, other=0.0)
            acc_up += wu.to(tl.float32) * xf
    out = tl.sum(acc, 1)
    if SWIGLU:  # the gate and up products are rounded to x's dtype first, as F.linear's output is
        g = out.to(x.dtype.element_ty).to(tl.float32)
        u = tl.sum(acc_up, 1).to(x.dtype.element_ty).to(tl.float32)
        out = g / (1.0 + tl.exp(-g)) * u
    out = out.to(y.dtype.element_ty)
    if HAS_RES:
        out = (out.to(tl.float32) + tl.load(res + rows, mask=live, other=0.0).to(tl.float32)).to(y.dtype.element_ty)
    tl.store(y + rows, out, mask=live)


def gemv_triton(x: torch.Tensor, w: torch.Tensor, *, norm_weight: torch.Tensor | None, eps: float,
                residual: torch.Tensor | None, swiglu: bool) -> torch.Tensor:
    N, K = w.shape
    n_out = N // 2 if swiglu else N
    x, w = x.contiguous(), w.contiguous()
    y = torch.empty(n_out, dtype=x.dtype, device=x.device)
    # Weight rows per program: 16 on products of 16k rows or more, else 4 (many programs in flight);
    # the best of a sweep on an H200 at the 1.1B model's shapes (BN 4-32, BK 256/512, 4/8 warps;
    # benchmarks/gemv_gpu.py --sweep repeats it). The sweep's per-call winners for the plain kernel
    # (8 warps under 16k rows, K tiles of 256 above) made the whole fused decode step slower
    # (822 -> 734 tokens/s, benchmarks/decode_gpu.py --fused), so the shapes stay these.
    rows = 16 if N >= 16384 else 4
    BN = rows // 2 if swiglu else rows  # SwiGLU: BN gate rows and the same BN up rows
    BK = 512 if K >= 512 else max(16, triton.next_power_of_2(K))
    _gemv[(triton.cdiv(n_out, BN),)](
        x, w, y, x if norm_weight is None else norm_weight.contiguous(), x if residual is None else residual.contiguous(),
        n_out, K, float(eps), norm_weight is not None, swiglu, residual is not None, BN, BK,
        num_warps=8 if K > 4096 else 4)
    return y

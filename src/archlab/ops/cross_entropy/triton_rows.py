"""One Triton kernel for the per-row part of the chunked cross-entropy: logits in, loss and
gradient out, in two passes over each row.

    loss_i = lse(z'_i) - z'_i[t_i],   g_i = (softmax(z'_i) - onehot(t_i)) * valid_i * dz'/dz
    with z' = cap * tanh(z / cap) under a soft-cap (dz'/dz = 1 - tanh^2), z' = z without.

z [n, V] holds the logits in the matmul dtype (bf16, fp16 or float32) and is overwritten with g
in the same dtype, ready for the two gradient matmuls; all arithmetic is float32. Against the
eager chain (cast to float32, logsumexp, gather, exp, one-hot subtract, mask, cast back) this
reads the logits twice and writes them once instead of about ten float32 passes.

Pass 1 keeps a running max and sum of exponentials over tiles of BV columns (online softmax);
pass 2 writes g. One program per row. Rows whose target is ignored get g = 0 and loss 0.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _capped(z, cap, SOFTCAP: tl.constexpr):
    """(z', tanh(z / cap)) with z' the soft-capped logit (tanh written with exp: no libdevice)."""
    if SOFTCAP:
        t = 2.0 / (1.0 + tl.exp(-2.0 * z / cap)) - 1.0
        return cap * t, t
    return z, z


@triton.jit
def _xent_rows(z, targets, loss, V, stride, cap, ignore_index, SOFTCAP: tl.constexpr, BV: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    z = z + row * stride
    tgt = tl.load(targets + row)
    valid = tgt != ignore_index
    cols = tl.arange(0, BV)
    m = tl.full([BV], float("-inf"), tl.float32)  # per-lane running max and sum
    s = tl.zeros([BV], tl.float32)
    for c0 in range(0, V, BV):
        inside = c0 + cols < V
        x, _ = _capped(tl.load(z + c0 + cols, mask=inside, other=0.0).to(tl.float32), cap, SOFTCAP)
        x = tl.where(inside, x, float("-inf"))
        m_new = tl.maximum(m, x)
        s = s * tl.exp(tl.where(m_new == float("-inf"), 0.0, m - m_new)) + tl.where(x == float("-inf"), 0.0, tl.exp(x - m_new))
        m = m_new
    mx = tl.max(m, 0)
    lse = mx + tl.log(tl.sum(s * tl.exp(m - mx), 0))
    safe = tl.where(valid, tgt, 0)
    zt, _ = _capped(tl.load(z + safe).to(tl.float32), cap, SOFTCAP)
    tl.store(loss + row, tl.where(valid, lse - zt, 0.0))
    w = tl.where(valid, 1.0, 0.0)
    for c0 in range(0, V, BV):
        inside = c0 + cols < V
        x, t = _capped(tl.load(z + c0 + cols, mask=inside, other=0.0).to(tl.float32), cap, SOFTCAP)
        g = (tl.exp(x - lse) - tl.where(c0 + cols == safe, 1.0, 0.0)) * w
        if SOFTCAP:
            g = g * (1.0 - t * t)
        tl.store(z + c0 + cols, g.to(z.dtype.element_ty), mask=inside)


def xent_rows_(z, targets, loss, *, softcap: float | None, ignore_index: int) -> None:
    """z [n, V] (rows contiguous) -> g in place; loss [n] float32 written (0 on ignored rows)."""
    n, V = z.shape
    _xent_rows[(n,)](z, targets, loss, V, z.stride(0), float(softcap or 1.0), ignore_index,
                     softcap is not None, 2048, num_warps=8)

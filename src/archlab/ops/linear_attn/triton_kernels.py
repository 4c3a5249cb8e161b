"""Triton kernels of the chunked (gated) linear attention, forward and backward.

One set of kernels serves linear attention (``GATE=0``), GLA (``GATE=1``, one log decay per step
and key channel) and scalar-gated linear attention (``GATE=2``, one log decay per step and head:
simple GLA, RetNet, Mamba-2's SSD). Per chunk n of C steps, with b the inclusive cumsum of the
log gates inside the chunk (b = 0 without gates), b_L its last row and h_n the state entering
the chunk:
    o   = scale (Q ⊙ e^b) h_n + A V,        A_ij = scale sum_d q_id k_jd e^(b_id - b_jd)  (j <= i)
    h_{n+1} = e^(b_L) ⊙ h_n + (K ⊙ e^(b_L - b))^T V
Backward, with dh' the gradient of h_{n+1} and dA = dO V^T (j <= i):
    dh_n = e^(b_L) ⊙ dh' + scale (Q ⊙ e^b)^T dO
    dV   = A^T dO + (K ⊙ e^(b_L - b)) dh'
    dQ   = scale [e^b ⊙ (dO h_n^T) + intra],  dK = e^(b_L - b) ⊙ (V dh'^T) + intra
    db   = Q ⊙ dQ - K ⊙ dK, plus on the last row sum_j k_j ⊙ dK_inter_j + e^(b_L) ⊙ rowsum(h_n ⊙ dh')
    dg_t = sum_{i >= t in the chunk} db_i   (b is a cumsum of g: its gradient is the reverse cumsum)
Every exponent is kept <= 0 for gates <= 0: the intra-chunk terms of GLA are split into
sub-chunks of BC rows; a pair of sub-chunks factors through the boundary row between them and
pairs inside one sub-chunk are summed key by key (the masked exponent is set to -inf before exp).
With a scalar gate the decay factors out of the channel sum, A = (Q K^T) ⊙ D with
D_ij = e^(b_i - b_j) (j <= i), so the intra-chunk terms are plain matmuls as without gates; b is
[BH, N*C] and the gate gradient is written per channel (the caller sums over Dk).

The sequential kernel (_state_scan, forward and reverse) walks the chunks of one (batch*head,
Dk tile, Dv tile) keeping the running state in registers; every other kernel is parallel over
chunks.
Matmul operands are in the input dtype, accumulation in float32; states h are stored in the
input dtype, A, dA and b in float32. Time is not padded: rows >= T load as zeros (a zero key,
value or gate leaves the state unchanged); b is allocated padded to N*C rows.

Grids: the state scan is (Dk tiles, Dv tiles, BH); the parallel kernels are (chunks x tiles, BH),
chunks on the first axis (the only one without a 65535 limit).

Shapes: B batch, H heads (BH = B*H programs), T time, N chunks, C chunk size, BC sub-chunk size,
P = C // BC sub-chunks, Dk key dim (tiles of BK), Dv value dim (tiles of BV).
Tensors: q, k [BH / HPG, T, Dk] (HPG heads may share one q/k head; 1 for GLA); v, o [BH, T, Dv];
b [BH, N*C, Dk] ([BH, N*C] with a scalar gate); hs [BH, N, Dk, Dv]; A, dA [BH, N*C, C]
(stored for GLA only: without gates Q K^T and dO V^T are recomputed where they are needed).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tile(ptr, r0, c0, n_rows, n_cols, stride, BR: tl.constexpr, BCOL: tl.constexpr):
    """The [BR, BCOL] block at (r0, c0) of a row-major [n_rows, n_cols] matrix; entries out of
    range are 0. Plain pointers and masks: block pointers are gone from newer Triton releases."""
    rows, cols = r0 + tl.arange(0, BR), c0 + tl.arange(0, BCOL)
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * stride + cols[None, :], mask=inside, other=0.0)


@triton.jit
def _put(ptr, x, r0, c0, n_rows, n_cols, stride):
    BR: tl.constexpr = x.shape[0]
    BCOL: tl.constexpr = x.shape[1]
    rows, cols = r0 + tl.arange(0, BR), c0 + tl.arange(0, BCOL)
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(ptr + rows[:, None] * stride + cols[None, :], x.to(ptr.dtype.element_ty), mask=inside)


@triton.jit
def _row(ptr, row, c0, n_rows, n_cols, BCOL: tl.constexpr):
    """Columns c0 .. c0+BCOL of row ``row`` of a row-major [n_rows, n_cols] matrix (0 out of range)."""
    cols = c0 + tl.arange(0, BCOL)
    inside = (cols < n_cols) & (row + cols * 0 < n_rows)  # the row test as a vector: a scalar mask is not portable
    return tl.load(ptr + row * n_cols + cols, mask=inside, other=0.0)


@triton.jit
def _causal(a, t0, T, C: tl.constexpr):
    """A [C(query), C(key)] chunk of A or dA, zero where the key is after the query and on rows >= T."""
    rc = tl.arange(0, C)
    return tl.where((rc[:, None] >= rc[None, :]) & (t0 + rc[:, None] < T), a, 0.0)


@triton.jit
def _causal_tile(a_ptr, t0, n_rows, T, C: tl.constexpr):
    """Rows t0 .. t0+C of a [n_rows, C] matrix (one chunk of A or dA), made causal."""
    return _causal(_tile(a_ptr, t0, 0, n_rows, C, C, C, C), t0, T, C)


@triton.jit
def _qk_row(i_bh, H, HPG):
    """The q/k row of (batch*head) i_bh when HPG heads share one q/k head (grouped, as Mamba-2's
    B and C); HPG = 1: i_bh itself."""
    return (i_bh // H) * (H // HPG) + (i_bh % H) // HPG


@triton.jit
def _decay(b, t0, C: tl.constexpr):
    """(D [C, C] with D_ij = e^(b_i - b_j) for j <= i and 0 above, b of the chunk [C]) for a scalar gate."""
    bs = tl.load(b + t0 + tl.arange(0, C))
    rc = tl.arange(0, C)
    d = tl.where(rc[:, None] >= rc[None, :], bs[:, None] - bs[None, :], float("-inf"))
    return tl.exp(d), bs


@triton.jit
def _state_scan(x, y, b, h0, hs, h_last, scale, T, N, H, HPG, DK: tl.constexpr, DV: tl.constexpr, C: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, REVERSE: tl.constexpr, GATE: tl.constexpr,
                HAS_H0: tl.constexpr, STORE_LAST: tl.constexpr, PREC: tl.constexpr):
    """The chunk-to-chunk recurrence, one [BK, BV] tile of the state in registers:
    forward (x=K, y=V):          hs[n] = h_n,  h_{n+1} = e^(b_L) ⊙ h_n + (K ⊙ e^(b_L - b))^T V;
    REVERSE (x=Q, y=dO, scale):  hs[n] = dh', dh_n = e^(b_L) ⊙ dh' + scale (Q ⊙ e^b)^T dO.
    h0 starts the walk (initial state / gradient of the final state); h_last is its end."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    k0, v0 = i_k * BK, i_v * BV
    x, y = x + _qk_row(i_bh, H, HPG) * T * DK, y + i_bh * T * DV
    if GATE == 1:  # b [BH, N*C, Dk]; [BH, N*C] with a scalar gate
        b = b + i_bh * N * C * DK
    else:
        b = b + i_bh * N * C
    hs = hs + i_bh * N * DK * DV
    h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        h += _tile(h0 + i_bh * DK * DV, k0, v0, DK, DV, DV, BK, BV)
    for i in range(0, N):
        n = N - 1 - i if REVERSE else i
        _put(hs + n * DK * DV, h, k0, v0, DK, DV, DV)
        xx = _tile(x, n * C, k0, T, DK, DK, C, BK)  # [C, BK]
        yy = _tile(y, n * C, v0, T, DV, DV, C, BV).to(x.dtype.element_ty)  # [C, BV]
        if GATE == 1:
            bb = _tile(b, n * C, k0, N * C, DK, DK, C, BK)
            b_last = _row(b, n * C + C - 1, k0, N * C, DK, BK)  # [BK]
            if REVERSE:
                xx = (xx * tl.exp(bb)).to(x.dtype.element_ty)
            else:
                xx = (xx * tl.exp(b_last[None, :] - bb)).to(x.dtype.element_ty)
            h = h * tl.exp(b_last)[:, None]
        if GATE == 2:
            bs = tl.load(b + n * C + tl.arange(0, C))  # [C]
            bs_last = tl.load(b + n * C + C - 1)
            if REVERSE:
                xx = (xx * tl.exp(bs)[:, None]).to(x.dtype.element_ty)
            else:
                xx = (xx * tl.exp(bs_last - bs)[:, None]).to(x.dtype.element_ty)
            h = h * tl.exp(bs_last)
        h += tl.dot(tl.trans(xx), yy, input_precision=PREC) * scale
    if STORE_LAST:
        _put(h_last + i_bh * DK * DV, h, k0, v0, DK, DV, DV)


@triton.jit
def _intra_gated_fwd(q, k, b, A, scale, T, N, DK: tl.constexpr, C: tl.constexpr, BC: tl.constexpr,
                     BK: tl.constexpr, PREC: tl.constexpr):
    """GLA's A for the BC query rows of sub-chunk p against every earlier-or-same key of the chunk."""
    P: tl.constexpr = C // BC
    i_n, i_p, i_bh = tl.program_id(0) // P, tl.program_id(0) % P, tl.program_id(1).to(tl.int64)
    q, k, b, A = q + i_bh * T * DK, k + i_bh * T * DK, b + i_bh * N * C * DK, A + i_bh * N * C * C
    DT = k.dtype.element_ty
    row0 = i_n * C + i_p * BC
    rc = tl.arange(0, BC)
    for jb in range(0, i_p):  # earlier sub-chunks: one matmul through the boundary row r = row0
        acc = tl.zeros([BC, BC], dtype=tl.float32)
        col0 = i_n * C + jb * BC
        for i_k in range(0, tl.cdiv(DK, BK)):
            r = _row(b, row0, i_k * BK, N * C, DK, BK)
            qq = _tile(q, row0, i_k * BK, T, DK, DK, BC, BK) * tl.exp(_tile(b, row0, i_k * BK, N * C, DK, DK, BC, BK) - r[None, :])
            kk = _tile(k, col0, i_k * BK, T, DK, DK, BC, BK) * tl.exp(r[None, :] - _tile(b, col0, i_k * BK, N * C, DK, DK, BC, BK))
            acc += tl.dot(qq.to(DT), tl.trans(kk.to(DT)), input_precision=PREC)
        _put(A, acc * scale, row0, jb * BC, N * C, C, C)
    acc = tl.zeros([BC, BC], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(DK, BK)):  # inside the sub-chunk: key by key, exact
        qq = _tile(q, row0, i_k * BK, T, DK, DK, BC, BK).to(tl.float32)
        bq = _tile(b, row0, i_k * BK, N * C, DK, DK, BC, BK)
        for j in range(0, BC):
            kj = _row(k, row0 + j, i_k * BK, T, DK, BK).to(tl.float32)
            expo = tl.where(rc[:, None] >= j, bq - _row(b, row0 + j, i_k * BK, N * C, DK, BK)[None, :], float("-inf"))
            col = tl.sum(qq * kj[None, :] * tl.exp(expo), axis=1)  # [BC]
            acc += tl.where(rc[None, :] == j, col[:, None], 0.0)
    _put(A, acc * scale, row0, i_p * BC, N * C, C, C)


@triton.jit
def _output_fwd(q, k, v, b, hs, A, o, scale, T, N, H, HPG, DK: tl.constexpr, DV: tl.constexpr, C: tl.constexpr,
                BK: tl.constexpr, BV: tl.constexpr, GATE: tl.constexpr, PREC: tl.constexpr):
    """o of chunk n for one Dv tile. With per-channel gates A comes from _intra_gated_fwd; without
    gates or with a scalar gate, Q K^T is computed here (A is never stored)."""
    NV: tl.constexpr = (DV + BV - 1) // BV
    i_n, i_v, i_bh = tl.program_id(0) // NV, tl.program_id(0) % NV, tl.program_id(1).to(tl.int64)
    i_qk = _qk_row(i_bh, H, HPG)
    q, k, v = q + i_qk * T * DK, k + i_qk * T * DK, v + i_bh * T * DV
    if GATE == 1:  # b [BH, N*C, Dk]; [BH, N*C] with a scalar gate
        b = b + i_bh * N * C * DK
    else:
        b = b + i_bh * N * C
    hs, A, o = hs + (i_bh * N + i_n) * DK * DV, A + i_bh * N * C * C, o + i_bh * T * DV
    t0, v0 = i_n * C, i_v * BV
    acc = tl.zeros([C, BV], dtype=tl.float32)
    aa = tl.zeros([C, C], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(DK, BK)):
        qq = _tile(q, t0, i_k * BK, T, DK, DK, C, BK)
        if GATE == 1:
            qq = (qq * tl.exp(_tile(b, t0, i_k * BK, N * C, DK, DK, C, BK))).to(hs.dtype.element_ty)
        else:
            aa += tl.dot(qq, tl.trans(_tile(k, t0, i_k * BK, T, DK, DK, C, BK)), input_precision=PREC)
        acc += tl.dot(qq, _tile(hs, i_k * BK, v0, DK, DV, DV, BK, BV), input_precision=PREC)
    vv = _tile(v, t0, v0, T, DV, DV, C, BV)
    if GATE == 1:
        aa = _causal_tile(A, t0, N * C, T, C)
    elif GATE == 2:
        dec, bs = _decay(b, t0, C)
        acc = acc * tl.exp(bs)[:, None]  # (Q ⊙ e^b) h = e^b ⊙ (Q h) for a scalar gate
        aa = _causal(aa * dec, t0, T, C) * scale
    else:
        aa = _causal(aa, t0, T, C) * scale
    acc = acc * scale + tl.dot(aa.to(vv.dtype), vv, input_precision=PREC)
    _put(o, acc, t0, v0, T, DV, DV)


@triton.jit
def _intra_dA(do, v, dA, T, N, DV: tl.constexpr, C: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """dA = dO V^T inside each chunk (the upper triangle is never read)."""
    i_n, i_bh = tl.program_id(0), tl.program_id(1).to(tl.int64)
    do, v, dA = do + i_bh * T * DV, v + i_bh * T * DV, dA + i_bh * N * C * C
    t0 = i_n * C
    acc = tl.zeros([C, C], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(DV, BV)):
        vv = _tile(v, t0, i_v * BV, T, DV, DV, C, BV)
        acc += tl.dot(_tile(do, t0, i_v * BV, T, DV, DV, C, BV).to(vv.dtype), tl.trans(vv), input_precision=PREC)
    _put(dA, acc, t0, 0, N * C, C, C)


@triton.jit
def _dv_bwd(q, k, v, b, A, do, dhs, dv, scale, T, N, H, HPG, DK: tl.constexpr, DV: tl.constexpr, C: tl.constexpr,
            BK: tl.constexpr, BV: tl.constexpr, GATE: tl.constexpr, PREC: tl.constexpr):
    """dV = A^T dO + (K ⊙ e^(b_L - b)) dh' of chunk n for one Dv tile (A^T = K Q^T recomputed
    here without gates or with a scalar gate)."""
    NV: tl.constexpr = (DV + BV - 1) // BV
    i_n, i_v, i_bh = tl.program_id(0) // NV, tl.program_id(0) % NV, tl.program_id(1).to(tl.int64)
    i_qk = _qk_row(i_bh, H, HPG)
    q, k, A = q + i_qk * T * DK, k + i_qk * T * DK, A + i_bh * N * C * C
    if GATE == 1:  # b [BH, N*C, Dk]; [BH, N*C] with a scalar gate
        b = b + i_bh * N * C * DK
    else:
        b = b + i_bh * N * C
    do, dv = do + i_bh * T * DV, dv + i_bh * T * DV
    dhs = dhs + (i_bh * N + i_n) * DK * DV
    t0, v0 = i_n * C, i_v * BV
    acc = tl.zeros([C, BV], dtype=tl.float32)
    at = tl.zeros([C, C], dtype=tl.float32)  # [C(key), C(query)]
    for i_k in range(0, tl.cdiv(DK, BK)):
        kk = _tile(k, t0, i_k * BK, T, DK, DK, C, BK)
        if GATE == 1:
            b_last = _row(b, t0 + C - 1, i_k * BK, N * C, DK, BK)
            kk = (kk * tl.exp(b_last[None, :] - _tile(b, t0, i_k * BK, N * C, DK, DK, C, BK))).to(v.dtype.element_ty)
        else:
            at += tl.dot(kk, tl.trans(_tile(q, t0, i_k * BK, T, DK, DK, C, BK)), input_precision=PREC)
        acc += tl.dot(kk, _tile(dhs, i_k * BK, v0, DK, DV, DV, BK, BV), input_precision=PREC)
    if GATE == 1:
        at = tl.trans(_causal_tile(A, t0, N * C, T, C))
    elif GATE == 2:
        dec, bs = _decay(b, t0, C)
        bs_last = tl.load(b + t0 + C - 1)
        acc = acc * tl.exp(bs_last - bs)[:, None]  # (K ⊙ e^(b_L - b)) dh' for a scalar gate
        at = at * tl.trans(dec) * scale  # D^T is 0 where the key is after the query
    else:
        rc = tl.arange(0, C)
        at = tl.where(rc[:, None] <= rc[None, :], at * scale, 0.0)
    dd = _tile(do, t0, v0, T, DV, DV, C, BV).to(v.dtype.element_ty)
    acc += tl.dot(at.to(v.dtype.element_ty), dd, input_precision=PREC)
    _put(dv, acc, t0, v0, T, DV, DV)


@triton.jit
def _intra_dqk_gated(q, k, b, dA, dq, dk, scale, T, N, DK: tl.constexpr, C: tl.constexpr,
                     BC: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    """The intra-chunk parts of dQ (rows of sub-chunk p) and dK (keys of sub-chunk p) for GLA,
    written in float32 to dq, dk [BH, N*C, Dk]."""
    P: tl.constexpr = C // BC
    NK: tl.constexpr = (DK + BK - 1) // BK
    i_np, i_k, i_bh = tl.program_id(0) // NK, tl.program_id(0) % NK, tl.program_id(1).to(tl.int64)
    i_n, i_p = i_np // P, i_np % P
    q, k, b = q + i_bh * T * DK, k + i_bh * T * DK, b + i_bh * N * C * DK
    dA, dq, dk = dA + i_bh * N * C * C, dq + i_bh * N * C * DK, dk + i_bh * N * C * DK
    DT = k.dtype.element_ty
    k0 = i_k * BK
    rc = tl.arange(0, BC)
    row0 = i_n * C + i_p * BC
    bi = _tile(b, row0, k0, N * C, DK, DK, BC, BK)  # [BC, BK]
    # dQ_i = scale sum_{j <= i} dA_ij k_j e^(b_i - b_j): earlier sub-chunks through r = b[row0]
    r = _row(b, row0, k0, N * C, DK, BK)
    acc = tl.zeros([BC, BK], dtype=tl.float32)
    for jb in range(0, i_p):
        col0 = i_n * C + jb * BC
        kk = (_tile(k, col0, k0, T, DK, DK, BC, BK) * tl.exp(r[None, :] - _tile(b, col0, k0, N * C, DK, DK, BC, BK))).to(DT)
        acc += tl.dot(_tile(dA, row0, jb * BC, N * C, C, C, BC, BC).to(DT), kk, input_precision=PREC)
    acc = acc * tl.exp(bi - r[None, :])
    for j in range(0, BC):
        da = tl.load(dA + (row0 + rc) * C + i_p * BC + j)  # [BC] column j of the diagonal block
        kj = _row(k, row0 + j, k0, T, DK, BK).to(tl.float32)
        expo = tl.where(rc[:, None] >= j, bi - _row(b, row0 + j, k0, N * C, DK, BK)[None, :], float("-inf"))
        acc += da[:, None] * kj[None, :] * tl.exp(expo)
    _put(dq, acc * scale, row0, k0, N * C, DK, DK)
    # dK_j = scale sum_{i >= j} dA_ij q_i e^(b_i - b_j): later sub-chunks through r = b[last row of p]
    r = _row(b, row0 + BC - 1, k0, N * C, DK, BK)
    acc = tl.zeros([BC, BK], dtype=tl.float32)
    for ib in range(i_p + 1, P):
        r0 = i_n * C + ib * BC
        qq = (_tile(q, r0, k0, T, DK, DK, BC, BK) * tl.exp(_tile(b, r0, k0, N * C, DK, DK, BC, BK) - r[None, :])).to(DT)
        acc += tl.dot(tl.trans(_tile(dA, r0, i_p * BC, N * C, C, C, BC, BC).to(DT)), qq, input_precision=PREC)
    acc = acc * tl.exp(r[None, :] - bi)
    for i in range(0, BC):
        da = tl.load(dA + (row0 + i) * C + i_p * BC + rc)  # [BC] row i of the diagonal block
        qi = _row(q, row0 + i, k0, T, DK, BK).to(tl.float32)
        expo = tl.where(rc[:, None] <= i, _row(b, row0 + i, k0, N * C, DK, BK)[None, :] - bi, float("-inf"))
        acc += da[:, None] * qi[None, :] * tl.exp(expo)
    _put(dk, acc * scale, row0, k0, N * C, DK, DK)


@triton.jit
def _dqkg_bwd(q, k, v, b, hs, dhs, do, dq_intra, dk_intra, dq, dk, dg, scale, T, N, H, HPG,
              DK: tl.constexpr, DV: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
              GATE: tl.constexpr, PREC: tl.constexpr):
    """dQ, dK (and dg with gates) of chunk n for one Dk tile, written to dq, dk, dg [BH, T, Dk].
    With per-channel gates the intra-chunk parts come from _intra_dqk_gated (dq_intra, dk_intra);
    otherwise they are two matmuls with dA = dO V^T (times D with a scalar gate), computed here."""
    NK: tl.constexpr = (DK + BK - 1) // BK
    i_n, i_k, i_bh = tl.program_id(0) // NK, tl.program_id(0) % NK, tl.program_id(1).to(tl.int64)
    i_qk = _qk_row(i_bh, H, HPG)
    q, k = q + i_qk * T * DK, k + i_qk * T * DK
    if GATE == 1:  # b [BH, N*C, Dk]; [BH, N*C] with a scalar gate
        b = b + i_bh * N * C * DK
    else:
        b = b + i_bh * N * C
    v, do = v + i_bh * T * DV, do + i_bh * T * DV
    hs, dhs = hs + (i_bh * N + i_n) * DK * DV, dhs + (i_bh * N + i_n) * DK * DV
    dq, dk, dg = dq + i_bh * T * DK, dk + i_bh * T * DK, dg + i_bh * T * DK
    DT = k.dtype.element_ty
    t0, k0 = i_n * C, i_k * BK
    dq_acc = tl.zeros([C, BK], dtype=tl.float32)
    dk_acc = tl.zeros([C, BK], dtype=tl.float32)
    hdh = tl.zeros([BK], dtype=tl.float32)
    da = tl.zeros([C, C], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(DV, BV)):
        hh = _tile(hs, k0, i_v * BV, DK, DV, DV, BK, BV)  # [BK, BV]
        dh = _tile(dhs, k0, i_v * BV, DK, DV, DV, BK, BV)
        dd = _tile(do, t0, i_v * BV, T, DV, DV, C, BV).to(DT)
        vv = _tile(v, t0, i_v * BV, T, DV, DV, C, BV)
        dq_acc += tl.dot(dd, tl.trans(hh), input_precision=PREC)
        dk_acc += tl.dot(vv, tl.trans(dh), input_precision=PREC)
        if GATE != 0:
            hdh += tl.sum(hh.to(tl.float32) * dh.to(tl.float32), axis=1)
        if GATE != 1:
            da += tl.dot(dd, tl.trans(vv), input_precision=PREC)
    qq = _tile(q, t0, k0, T, DK, DK, C, BK)
    kk = _tile(k, t0, k0, T, DK, DK, C, BK)
    if GATE == 1:
        bb = _tile(b, t0, k0, N * C, DK, DK, C, BK)
        b_last = _row(b, t0 + C - 1, k0, N * C, DK, BK)
        dq_acc = dq_acc * tl.exp(bb) * scale + _tile(dq_intra + i_bh * N * C * DK, t0, k0, N * C, DK, DK, C, BK)
        dk_inter = dk_acc * tl.exp(b_last[None, :] - bb)
        dk_acc = dk_inter + _tile(dk_intra + i_bh * N * C * DK, t0, k0, N * C, DK, DK, C, BK)
        kf = kk.to(tl.float32)
        db = qq.to(tl.float32) * dq_acc - kf * dk_acc
        tail = tl.sum(kf * dk_inter, axis=0) + tl.exp(b_last) * hdh  # d b_L, shared by every step
        _put(dg, tl.cumsum(db, 0, reverse=True) + tail[None, :], t0, k0, T, DK, DK)
    elif GATE == 2:  # the same gradient per channel; the caller sums it over Dk
        dec, bs = _decay(b, t0, C)
        bs_last = tl.load(b + t0 + C - 1)
        dam = _causal(da * dec, t0, T, C).to(DT)
        dq_acc = (dq_acc * tl.exp(bs)[:, None] + tl.dot(dam, kk, input_precision=PREC)) * scale
        dk_inter = dk_acc * tl.exp(bs_last - bs)[:, None]
        dk_acc = dk_inter + tl.dot(tl.trans(dam), qq, input_precision=PREC) * scale
        kf = kk.to(tl.float32)
        db = qq.to(tl.float32) * dq_acc - kf * dk_acc
        tail = tl.sum(kf * dk_inter, axis=0) + tl.exp(bs_last) * hdh
        _put(dg, tl.cumsum(db, 0, reverse=True) + tail[None, :], t0, k0, T, DK, DK)
    else:
        da = _causal(da, t0, T, C).to(DT)
        dq_acc = (dq_acc + tl.dot(da, kk, input_precision=PREC)) * scale
        dk_acc += tl.dot(tl.trans(da), qq, input_precision=PREC) * scale
    _put(dq, dq_acc, t0, k0, T, DK, DK)
    _put(dk, dk_acc, t0, k0, T, DK, DK)

"""Cross-entropy through the output head without the full [N, V] float32 logits.

The tokens are taken ``chunk_size`` at a time: each chunk's logits are made, turned into its loss
and -- in the same pass, since the loss is a scalar -- into its gradients with respect to h, the
head weight and bias (softmax(z) - onehot(target), times the soft-cap's derivative). Backward then
only scales those by the incoming gradient. Peak extra memory is one chunk's logits instead of
all of them, and the logits are never written out and read back. The head's matmuls are the same
three (z = hW^T, dh = g W, dW = g^T h) as autograd would run.

Shapes: N tokens, C model width, V vocabulary, n tokens in a chunk.
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

ROWS = ("auto", "torch", "triton")


def _rows_kernel(rows: str, z_dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the per-row softmax and gradient run as one Triton kernel (triton_rows.py) or as
    PyTorch ops. ``rows``: "auto" (the kernel on CUDA when triton is installed), "torch", or
    "triton" (CUDA, or the CPU under TRITON_INTERPRET=1; bf16, fp16 or float32 logits)."""
    if rows not in ROWS:
        raise ValueError(f"rows: expected one of {', '.join(ROWS)}, got {rows!r}")
    if rows == "torch" or z_dtype == torch.float64:
        if rows == "triton":
            raise ValueError("rows='triton': float64 logits are not supported; accepted: bfloat16, float16, float32")
        return False
    have = importlib.util.find_spec("triton") is not None
    if rows == "auto":
        return have and device.type == "cuda"
    if not have:
        raise ValueError("rows='triton' needs the triton package")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"rows='triton': needs CUDA tensors, got {device.type} (TRITON_INTERPRET=1 runs it on the CPU)")
    return True


def _mm_dtype(h: Tensor) -> torch.dtype:
    dev = h.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return h.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, softcap: float | None,
                ignore_index: int, chunk_size: int, rows: str) -> Tensor:
        dt = _mm_dtype(h)
        fused = _rows_kernel(rows, dt, h.device)
        acc = torch.promote_types(dt, torch.float32)  # softmax and sums: float32 (float64 stays float64)
        hm, wm = h.to(dt), weight.to(dt)
        N = h.shape[0]
        valid_all = targets != ignore_index  # [N]
        n_valid = valid_all.sum().clamp(min=1).to(acc)
        total = torch.zeros((), dtype=acc, device=h.device)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        dh = torch.empty_like(h) if need_h else None
        # one chunk: the weight gradient is written once in its own dtype; several: summed in float32
        dw = None
        if need_w:
            dw = torch.zeros(weight.shape, dtype=acc if N > chunk_size else weight.dtype, device=weight.device)
        db = torch.zeros(bias.shape, dtype=acc, device=h.device) if need_b else None
        for s in range(0, N, chunk_size):
            e = min(s + chunk_size, N)
            hc, tc, valid = hm[s:e], targets[s:e], valid_all[s:e]  # [n, C], [n], [n]
            z = hc @ wm.t()  # [n, V]
            if bias is not None:
                z = z + bias.to(dt)
            if fused:  # loss and g in one kernel; g overwrites z in the matmul dtype
                from .triton_rows import xent_rows_

                loss_rows = torch.empty(e - s, dtype=torch.float32, device=h.device)
                xent_rows_(z, tc, loss_rows, softcap=softcap, ignore_index=ignore_index)
                total += loss_rows.sum()
                if need_b:
                    db += z.sum(0, dtype=acc)
                if need_h:
                    dh[s:e] = z @ wm
                if need_w:
                    dw += (z.t() @ hc).to(dw.dtype)
                continue
            z = z.to(acc)
            if softcap is not None:
                t = torch.tanh(z / softcap)
                z = softcap * t
            lse = torch.logsumexp(z, dim=-1)  # [n]
            safe = torch.where(valid, tc, torch.zeros_like(tc))
            z_t = z.gather(1, safe[:, None]).squeeze(1)  # [n]
            total += ((lse - z_t) * valid).sum()
            if not (need_h or need_w or need_b):
                continue
            g = z.sub_(lse[:, None]).exp_()  # softmax, in place of z  [n, V]
            g[torch.arange(e - s, device=g.device), safe] -= 1.0
            g *= valid[:, None]
            if softcap is not None:
                g *= 1.0 - t * t
            if need_b:
                db += g.sum(0)
            gm = g.to(dt)
            if need_h:
                dh[s:e] = gm @ wm
            if need_w:
                dw += (gm.t() @ hc).to(dw.dtype)
        ctx.save_for_backward(dh, dw, db, n_valid)
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return total / n_valid

    @staticmethod
    def backward(ctx, grad: Tensor):
        dh, dw, db, n_valid = ctx.saved_tensors
        scale = grad / n_valid
        gh = None if dh is None else dh * scale.to(dh.dtype)
        gw = None if dw is None else (dw * scale).to(ctx.weight_dtype)
        gb = None if db is None else (db * scale).to(ctx.bias_dtype)
        return gh, gw, gb, None, None, None, None, None


@torch.compiler.disable
def linear_cross_entropy_chunked(h: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None, *,
                                 softcap: float | None = None, ignore_index: int = -100, chunk_size: int = 4096,
                                 rows: str = "auto") -> Tensor:
    """h [N, C], weight [V, C], targets [N] -> mean loss (float32, or float64 for float64 h). Runs outside torch.compile's
    graph (it holds its own loop), so a compiled model breaks its graph once, before the loss. ``rows``: see
    :func:`_rows_kernel`."""
    return _LinearCrossEntropy.apply(h, weight, bias, targets, softcap, ignore_index, chunk_size, rows)

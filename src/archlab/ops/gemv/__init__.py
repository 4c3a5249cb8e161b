"""Matrix-vector products for decoding one token, with the work around them fused in.

    gemv(x, w, *, norm_weight=None, eps=1e-6, residual=None, swiglu=False, form="auto") -> y

x [K] (one token), w [N, K] (an nn.Linear weight). Optional, in this order:
- ``norm_weight`` [K]: RMSNorm x first, x <- x / sqrt(mean(x^2) + eps) * norm_weight, in float32,
  rounded to x's dtype (as the norm module does before its matmul);
- ``swiglu``: w holds the gate rows then the up rows ([2H, K]); y = silu(gate) * up, [H];
- ``residual`` [N]: y <- y + residual.
Accumulation is float32; y is in x's dtype.

Forms: "torch" (the reference: the same steps as separate PyTorch ops), "triton" (one kernel,
triton_gemv.py; CUDA, or the CPU under TRITON_INTERPRET=1), "auto" (triton on CUDA when installed).
"""
from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import Tensor

FORMS = ("auto", "torch", "triton")
_HAVE_TRITON = importlib.util.find_spec("triton") is not None  # once: gemv runs inside compiled steps


def gemv_reference(x: Tensor, w: Tensor, *, norm_weight: Tensor | None = None, eps: float = 1e-6,
                   residual: Tensor | None = None, swiglu: bool = False) -> Tensor:
    if norm_weight is not None:
        xf = x.float()
        x = (xf * torch.rsqrt(xf.pow(2).mean() + eps) * norm_weight.float()).to(x.dtype)
    y = F.linear(x, w)
    if swiglu:
        g, u = y.float().chunk(2)
        y = (F.silu(g) * u).to(x.dtype)
    if residual is not None:
        y = y + residual
    return y


def gemv(x: Tensor, w: Tensor, *, norm_weight: Tensor | None = None, eps: float = 1e-6,
         residual: Tensor | None = None, swiglu: bool = False, form: str = "auto") -> Tensor:
    if form not in FORMS:
        raise ValueError(f"form: expected one of {', '.join(FORMS)}, got {form!r}")
    if x.dim() != 1 or w.dim() != 2 or w.shape[1] != x.shape[0]:
        raise ValueError(f"x, w: expected [K] and [N, K], got {tuple(x.shape)} and {tuple(w.shape)}")
    if swiglu and w.shape[0] % 2:
        raise ValueError(f"w: swiglu needs the gate and up rows stacked ([2H, K]), got {w.shape[0]} rows")
    out = w.shape[0] // 2 if swiglu else w.shape[0]
    if residual is not None and residual.shape != (out,):
        raise ValueError(f"residual: expected [{out}], got {tuple(residual.shape)}")
    have = _HAVE_TRITON
    on_device = x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"
    if form == "auto":
        form = "triton" if have and x.is_cuda and x.dtype != torch.float64 else "torch"
    if form == "torch":
        return gemv_reference(x, w, norm_weight=norm_weight, eps=eps, residual=residual, swiglu=swiglu)
    if not have:
        raise ImportError("gemv form='triton' needs the triton package")
    if not on_device or x.dtype == torch.float64:
        raise ValueError("gemv form='triton': needs CUDA tensors (or TRITON_INTERPRET=1) and bf16/fp16/float32 inputs")
    return torch.ops.archlab.gemv(x, w, norm_weight, residual, float(eps), swiglu)


@torch.library.custom_op("archlab::gemv", mutates_args=())
def _gemv_op(x: Tensor, w: Tensor, norm_weight: Tensor | None, residual: Tensor | None, eps: float,
             swiglu: bool) -> Tensor:
    """The Triton kernel as one opaque op: a compiled decoding step keeps it whole (one launch)
    and fuses the rest of the step around it."""
    from .triton_gemv import gemv_triton

    return gemv_triton(x, w, norm_weight=norm_weight, eps=eps, residual=residual, swiglu=swiglu)


@_gemv_op.register_fake
def _gemv_shape(x, w, norm_weight, residual, eps, swiglu):
    return x.new_empty(w.shape[0] // 2 if swiglu else w.shape[0])

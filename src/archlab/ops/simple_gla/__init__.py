"""Scalar-gated linear attention ("simple GLA") and RetNet's retention.

    simple_gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
               form="chunk", chunk_size=64) -> (o, final_state | None)
    retention(q, k, v, g, ...)   same; g may also be [H] (a fixed per-head log decay)

q, k: [B, H, T, Dk]; v: [B, H, T, Dv]; g: [B, H, T] log decays (<= 0 for a decay);
state S: [B, H, Dk, Dv]; S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = scale * q_t^T S_t.
Forms: "parallel", "chunk", "chunk_compiled", "recurrent" (see ops/linear_attn/common.py), and
"triton" (ops/linear_attn/triton_chunk.py; CUDA, or the CPU under TRITON_INTERPRET=1).
"""
from __future__ import annotations


import torch
from torch import Tensor

from ..linear_attn.common import TRITON_FORMS, check_chunk_size, check_form, check_qkv, check_shape, compiled, compute_dtype, default_scale, load_triton_chunk, mm_dtype_for
from .chunk import simple_gla_chunk
from .recurrent import simple_gla_recurrent
from .reference import simple_gla_parallel

__all__ = ["simple_gla", "retention", "retention_log_decay"]

_IMPLS = {"parallel": simple_gla_parallel, "chunk": simple_gla_chunk, "recurrent": simple_gla_recurrent}


def simple_gla(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    form: str = "chunk",
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    check_form(form, TRITON_FORMS)
    check_chunk_size(chunk_size)
    B, H, T, Dk, Dv = check_qkv(q, k, v)
    check_shape(g, (B, H, T), "g", "[B, H, T]")
    check_shape(initial_state, (B, H, Dk, Dv), "initial_state", "[B, H, Dk, Dv]")
    if form == "triton":
        o, s = load_triton_chunk().chunk_triton(q, k, v, g, initial_state, scale=default_scale(scale, Dk),
                                                chunk_size=chunk_size)
        return o, (s if output_final_state else None)
    dt = compute_dtype(q, k, v, g)
    out_dtype = v.dtype
    md = mm_dtype_for(form, q, k, v)
    if md is None:
        q, k, v = q.to(dt), k.to(dt), v.to(dt)
    fn = compiled(simple_gla_chunk) if form == "chunk_compiled" else _IMPLS[form]
    extra = {"mm_dtype": md} if form.startswith("chunk") else {}
    o, s = fn(
        q, k, v, g.to(dt), None if initial_state is None else initial_state.to(dt),
        scale=default_scale(scale, Dk), chunk_size=chunk_size, **extra,
    )
    return o.to(out_dtype), (s if output_final_state else None)


def retention_log_decay(heads: int, device: torch.device | None = None) -> Tensor:
    """RetNet's fixed per-head decay gamma_h = 1 - 2^(-5-h), in log space: [H]."""
    h = torch.arange(heads, dtype=torch.float64, device=device)
    return torch.log1p(-torch.pow(2.0, -5.0 - h)).to(torch.float32)


def retention(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    form: str = "chunk",
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """Retention (Sun et al. 2023): simple_gla with a per-head decay; ``g`` is [H] (e.g.
    ``retention_log_decay(H)``) or already broadcast to [B, H, T]."""
    B, H, T, _, _ = check_qkv(q, k, v)
    if isinstance(g, Tensor) and g.dim() == 1:
        check_shape(g, (H,), "g", "[H]")
        g = g.to(q.device).view(1, H, 1).expand(B, H, T)
    return simple_gla(q, k, v, g, scale=scale, initial_state=initial_state,
                      output_final_state=output_final_state, form=form, chunk_size=chunk_size)



"""Gated linear attention (GLA, Yang et al. 2024): one log decay per step and key channel.

    gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False,
        form="chunk", chunk_size=64) -> (o, final_state | None)

q, k, g: [B, H, T, Dk] (g in log space); v: [B, H, T, Dv]; state S: [B, H, Dk, Dv];
S_t = exp(g_t) 1^T ⊙ S_{t-1} + k_t v_t^T, o_t = scale * q_t^T S_t.
Forms: "parallel", "chunk", "chunk_compiled", "recurrent" and "triton" (chunked Triton kernels,
forward and backward, shared with linear_attn in ops/linear_attn/triton_chunk.py; see
ops/linear_attn/common.py).
"""
from __future__ import annotations

from torch import Tensor

from ..linear_attn.common import TRITON_FORMS, check_chunk_size, check_form, check_qkv, check_shape, compiled, compute_dtype, default_scale, load_triton_chunk, mm_dtype_for
from .chunk import gla_chunk
from .recurrent import gla_recurrent
from .reference import gla_parallel

__all__ = ["gla"]

_IMPLS = {"parallel": gla_parallel, "chunk": gla_chunk, "recurrent": gla_recurrent}


def gla(
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
    check_shape(g, (B, H, T, Dk), "g", "[B, H, T, Dk]")
    check_shape(initial_state, (B, H, Dk, Dv), "initial_state", "[B, H, Dk, Dv]")
    if form == "triton":
        o, s = load_triton_chunk().chunk_triton(q, k, v, g, initial_state, scale=default_scale(scale, Dk), chunk_size=chunk_size)
        return o, (s if output_final_state else None)
    dt = compute_dtype(q, k, v, g)
    out_dtype = v.dtype
    md = mm_dtype_for(form, q, k, v)
    if md is None:
        q, k, v = q.to(dt), k.to(dt), v.to(dt)
    fn = compiled(gla_chunk) if form == "chunk_compiled" else _IMPLS[form]
    extra = {"mm_dtype": md} if form.startswith("chunk") else {}
    o, s = fn(
        q, k, v, g.to(dt), None if initial_state is None else initial_state.to(dt),
        scale=default_scale(scale, Dk), chunk_size=chunk_size, **extra,
    )
    return o.to(out_dtype), (s if output_final_state else None)

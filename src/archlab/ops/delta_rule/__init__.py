"""Delta rule (DeltaNet) and gated delta rule (Gated DeltaNet).

    delta_rule(q, k, v, beta, *, scale=None, initial_state=None, output_final_state=False,
               form="chunk", chunk_size=64) -> (o, final_state | None)
    gated_delta_rule(q, k, v, g, beta, *, ...same...)

q, k: [B, H, T, Dk]; v: [B, H, T, Dv]; g: [B, H, T] log decays; beta: [B, H, T] write
strengths (in (0, 1) for a stable rule; use l2-normalised keys). State S: [B, H, Dk, Dv].
``scale`` (default Dk^-0.5) multiplies q only, as in transformers' Qwen3-Next reference.
Forms: "parallel", "chunk", "chunk_compiled" (its batched intra-chunk part compiled; the
chunk-to-chunk loop stays eager), "recurrent". ``l2norm`` matches fla/transformers' helper.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..linear_attn.common import check_chunk_size, check_form, check_qkv, check_shape, compute_dtype, default_scale
from .chunk import delta_rule_chunk, delta_rule_chunk_compiled
from .recurrent import delta_rule_recurrent
from .reference import delta_rule_parallel

__all__ = ["delta_rule", "gated_delta_rule", "l2norm"]

_IMPLS = {
    "parallel": delta_rule_parallel,
    "chunk": delta_rule_chunk,
    "chunk_compiled": delta_rule_chunk_compiled,
    "recurrent": delta_rule_recurrent,
}


def l2norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / sqrt(sum x^2 + eps) over the last dim (the form fla and transformers use)."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def _run(q, k, v, g, beta, initial_state, output_final_state, scale, form, chunk_size):
    check_form(form)
    check_chunk_size(chunk_size)
    B, H, T, Dk, Dv = check_qkv(q, k, v)
    check_shape(g, (B, H, T), "g", "[B, H, T]")
    check_shape(beta, (B, H, T), "beta", "[B, H, T]")
    check_shape(initial_state, (B, H, Dk, Dv), "initial_state", "[B, H, Dk, Dv]")
    dt = compute_dtype(q, k, v, g, beta)
    o, s = _IMPLS[form](
        q.to(dt), k.to(dt), v.to(dt), None if g is None else g.to(dt), beta.to(dt),
        None if initial_state is None else initial_state.to(dt),
        scale=default_scale(scale, Dk), chunk_size=chunk_size,
    )
    return o.to(v.dtype), (s if output_final_state else None)


def delta_rule(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    form: str = "chunk",
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    return _run(q, k, v, None, beta, initial_state, output_final_state, scale, form, chunk_size)


def gated_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, *,
    scale: float | None = None,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    form: str = "chunk",
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    if g is None:
        raise ValueError("g: gated_delta_rule needs log decays [B, H, T]; use delta_rule for none")
    return _run(q, k, v, g, beta, initial_state, output_final_state, scale, form, chunk_size)

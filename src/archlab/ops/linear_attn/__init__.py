"""Linear attention op (Katharopoulos et al. 2020) with an optional normaliser.

    linear_attn(q, k, v, *, normalize=False, scale=None, eps=1e-6, initial_state=None,
                output_final_state=False, form="chunk", chunk_size=64) -> (o, final_state | None)

q, k: [B, H, T, Dk] (already feature-mapped), v: [B, H, T, Dv]. ``scale`` (default Dk^-0.5)
multiplies q. The state is S [B, H, Dk, Dv]; with ``normalize=True`` it is the pair (S, z)
with the normaliser z [B, H, Dk], and o = q^T S / (q . z + eps). ``form`` is one of
"parallel" (quadratic reference), "chunk", "chunk_compiled" (the chunk form through
torch.compile(fullgraph=True)), "recurrent" (token loop) and "triton" (chunked Triton kernels,
forward and backward; the form to use on CUDA: bf16/fp16/fp32, chunk_size 16/32/64/128).
"""
from __future__ import annotations

from torch import Tensor

from .chunk import linear_attn_chunk
from .common import FORMS, TRITON_FORMS, check_chunk_size, check_form, check_qkv, check_shape, compiled, compute_dtype, default_scale, load_triton_chunk, mm_dtype_for
from .recurrent import linear_attn_recurrent
from .reference import linear_attn_parallel

__all__ = ["linear_attn", "FORMS"]

_IMPLS = {"parallel": linear_attn_parallel, "chunk": linear_attn_chunk, "recurrent": linear_attn_recurrent}


def linear_attn(
    q: Tensor, k: Tensor, v: Tensor, *,
    normalize: bool = False,
    scale: float | None = None,
    eps: float = 1e-6,
    initial_state: Tensor | tuple[Tensor, Tensor] | None = None,
    output_final_state: bool = False,
    form: str = "chunk",
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor] | None]:
    check_form(form, TRITON_FORMS)
    check_chunk_size(chunk_size)
    B, H, T, Dk, Dv = check_qkv(q, k, v)
    s0 = z0 = None
    if initial_state is not None:
        if normalize:
            if not (isinstance(initial_state, tuple) and len(initial_state) == 2):
                raise ValueError("initial_state: with normalize=True pass the pair (S [B, H, Dk, Dv], z [B, H, Dk])")
            s0, z0 = initial_state
            check_shape(z0, (B, H, Dk), "initial_state[1]", "[B, H, Dk]")
        else:
            if not isinstance(initial_state, Tensor):
                raise ValueError("initial_state: with normalize=False pass one tensor S [B, H, Dk, Dv]")
            s0 = initial_state
        check_shape(s0, (B, H, Dk, Dv), "initial_state", "[B, H, Dk, Dv]")
    dt = compute_dtype(q, k, v)
    out_dtype = v.dtype
    md = mm_dtype_for(form, q, k, v)
    if form == "triton":  # keeps bf16/fp16 inputs as the kernels' matmul operands
        fn, extra = load_triton_chunk().linear_attn_triton, {}
    else:
        if md is None:
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
        fn = compiled(linear_attn_chunk) if form == "chunk_compiled" else _IMPLS[form]
        extra = {"mm_dtype": md} if form.startswith("chunk") else {}
    o, s, z = fn(
        q, k, v, None if s0 is None else s0.to(dt), None if z0 is None else z0.to(dt),
        normalize=bool(normalize), scale=default_scale(scale, Dk), eps=float(eps), chunk_size=chunk_size, **extra,
    )
    final = None
    if output_final_state:
        final = (s, z) if normalize else s
    return o.to(out_dtype), final

"""A decoding step whose matrix-vector products carry the work around them (ops/gemv).

At batch 1 a Llama-style block is four matrix-vector products (q/k/v, output, gate/up, down)
and, between them, a handful of small kernels: the two RMSNorms, SwiGLU and the two residual
adds. Here each of those rides inside a product: the norm is applied to x as the q/k/v and
gate/up kernels read it, SwiGLU is the gate/up kernel's epilogue, and the residual add is the
output and down kernels'. RoPE, the cache write and attention run as the model's own code
(``SoftmaxAttention.attend_projected``), which ``torch.compile`` fuses.

Supported: every block pre-norm with RMSNorm, softmax attention (any position encoding, cache
kind or window; no QK-norm, output gate, biases or soft-cap), a SwiGLU MLP without biases, the
projections packed (``archlab.packing``), batch 1. :func:`unsupported` says what else is found.
"""
from __future__ import annotations

import torch

from archlab.model import Model
from archlab.ops.gemv import gemv


def unsupported(model: Model, batch_size: int) -> str | None:
    """Why the fused step cannot run this model (None: it can)."""
    from archlab.attention.softmax import SoftmaxAttention
    from archlab.ffn import GatedMLP
    from archlab.norm import RMSNorm

    if batch_size != 1:
        return f"batch_size {batch_size}: the fused step decodes one sequence"
    cfg = model.cfg
    if model.embed_norm is not None or cfg.logit_softcap is not None or model.head is not None and model.head.bias is not None:
        return "an embedding norm, a logit soft-cap or a head bias"
    if model.final_norm is not None and not isinstance(model.final_norm, RMSNorm):
        return f"final norm {type(model.final_norm).__name__}: RMSNorm only"
    for i, b in enumerate(model.blocks):
        a, f = b.mixer, b.ffn
        if b.placement != "pre" or not isinstance(b.mixer_norm, RMSNorm) or not isinstance(b.ffn_norm, RMSNorm):
            return f"layer {i}: needs pre-norm RMSNorm blocks"
        if not isinstance(a, SoftmaxAttention) or getattr(a, "_packed", None) is None:
            return f"layer {i}: needs softmax attention with packed q/k/v"
        if a.cfg.qk_norm != "none" or a.g_proj is not None or a.o_proj.bias is not None or a._packed.bias is not None:
            return f"layer {i}: QK-norm, an output gate or attention biases"
        if not isinstance(f, GatedMLP) or getattr(f, "_packed", None) is None:
            return f"layer {i}: needs a gated MLP with packed gate/up"
        if f.down.bias is not None or f._packed.bias is not None:
            return f"layer {i}: MLP biases"
        if f.act_name != "silu":
            return f"layer {i}: activation {f.act_name!r}: SwiGLU (silu) only"
    return None


class FusedStep:
    """step(tok [1, 1], pos [1, 1]) -> logits [1, V], on the model's static cache.

    Norm weights stored with a unit offset (Gemma's 1 + w) are resolved once, here: like the
    packed projections, the step reads the weights as they were when it was built."""

    def __init__(self, model: Model, cache, *, form: str = "auto"):
        self.model, self.cache, self.form = model, cache, form
        self._norms = {id(n): n.scale().detach() if n.unit_offset else n.weight
                       for n in [*(b.mixer_norm for b in model.blocks), *(b.ffn_norm for b in model.blocks),
                                 *([model.final_norm] if model.final_norm is not None else [])]}

    def __call__(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m, form, nw = self.model, self.form, self._norms
        x = m.embed_input(tok, pos).view(-1)  # [C]
        for i, block in enumerate(m.blocks):
            a, f = block.mixer, block.ffn
            n1, n2 = block.mixer_norm, block.ffn_norm
            qkv = gemv(x, a._packed.weight, norm_weight=nw[id(n1)], eps=n1.eps, form=form)
            q, k, v = (t.view(1, 1, -1) for t in qkv.split(a._packed.sizes))
            o = a.attend_projected(q, k, v, positions=pos, cache=self.cache.layers[i])  # [1, 1, H, D]
            x = gemv(o.reshape(-1), a.o_proj.weight, residual=x, form=form)
            h = gemv(x, f._packed.weight, norm_weight=nw[id(n2)], eps=n2.eps, swiglu=True, form=form)
            x = gemv(h, f.down.weight, residual=x, form=form)
        fn = m.final_norm
        logits = gemv(x, m.lm_head_weight, norm_weight=None if fn is None else nw[id(fn)],
                      eps=1e-6 if fn is None else fn.eps, form=form)
        return logits[None]  # [1, V]

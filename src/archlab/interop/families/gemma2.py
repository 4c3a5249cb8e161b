"""Gemma-2: sandwich RMSNorm with unit offset, tanh-GeGLU, embeddings times sqrt(hidden)
(``embed_scale``; transformers multiplies by it cast to the hidden dtype, as archlab does),
logit scale 1/sqrt(query_pre_attn_scalar) (``attention.scale``), attention soft-cap 50 and
final soft-cap 30, alternating sliding/global layers from ``layer_types`` (a plan ``SA``)."""
import math
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import Unsupported, register
from archlab.interop.common import ANY, Accept
from archlab.interop.llama_like import LlamaLike


@register
class Gemma2(LlamaLike):
    model_type = "gemma2"
    architecture = "Gemma2ForCausalLM"
    priority = 5
    placement = "sandwich"
    norm_names = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")
    unit_offset = True
    window = "layer_types"
    act_attr = "hidden_activation"
    query_scale = True

    def config_from_hf(self, hf: Any) -> ModelConfig:
        if getattr(hf, "use_bidirectional_attention", None):
            raise Unsupported("use_bidirectional_attention: archlab models are causal; bidirectional Gemma has no counterpart")
        cfg = super().config_from_hf(hf)
        return cfg.replace(**{
            "attention.scale": hf.query_pre_attn_scalar ** -0.5,
            "attention.softcap": hf.attn_logit_softcapping,
            "logit_softcap": hf.final_logit_softcapping,
            "embed_scale": hf.hidden_size ** 0.5,
        })

    def accepted(self, cfg: ModelConfig) -> dict[str, Any]:
        root = math.sqrt(cfg.d_model)
        return {
            **super().accepted(cfg),
            "attention.softcap": ANY,
            "logit_softcap": ANY,
            "embed_scale": Accept(lambda s: s is not None and math.isclose(s, root, rel_tol=1e-9),
                                  f"only sqrt(d_model) = {root} (Gemma scales embeddings by it)"),
        }

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        a = cfg.attention
        scale = a.scale if a.scale is not None else a.dim(cfg.d_model) ** -0.5
        scalar = round(scale ** -2)
        if not math.isclose(scalar ** -0.5, scale, rel_tol=1e-9):
            raise Unsupported(
                f"attention.scale={a.scale} has no counterpart in transformers' gemma2, whose scale is "
                "1/sqrt(query_pre_attn_scalar) with an integer query_pre_attn_scalar"
            )
        kw.update(query_pre_attn_scalar=scalar, attn_logit_softcapping=a.softcap,
                  final_logit_softcapping=cfg.logit_softcap)
        return kw

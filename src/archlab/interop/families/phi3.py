"""Phi-3: Llama-shaped with fused ``qkv_proj`` and ``gate_up_proj`` (split on import, fused on
export), one sliding window, partial rotary, LongRoPE with the factor set switched by length.

Decoding across the LongRoPE switch: archlab's cache keeps each key as rotated when written (as
transformers' Llama does), while transformers' Phi-3 ``generate`` rebuilds its cache once the
length passes ``original_max_position_embeddings`` (so 5.24 then matches archlab decoding
without a cache; 5.17 rebuilds differently). Full forwards agree either way."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Phi3(LlamaLike):
    model_type = "phi3"
    architecture = "Phi3ForCausalLM"
    priority = 6
    bias = "none"
    window = "one"
    fused = True
    has_head_dim = False
    partial_rotary = True

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        orig = kw["rope_parameters"].get("original_max_position_embeddings")
        if orig is not None:
            # Phi-3 keeps the trained length at the top level and copies it over rope_parameters'
            kw["original_max_position_embeddings"] = orig
        return kw

"""Qwen2 / Qwen2.5: Llama with biases on q, k and v (not on o); sliding layers via ``layer_types``."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Qwen2(LlamaLike):
    model_type = "qwen2"
    architecture = "Qwen2ForCausalLM"
    priority = 2
    bias = "qkv"
    window = "layer_types"
    has_head_dim = False

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        # without use_sliding_window transformers drops sliding_window, whatever layer_types says
        kw["use_sliding_window"] = "sliding_window" in kw
        return kw

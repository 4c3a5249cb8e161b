"""Qwen3: Llama with RMSNorm on each head's q and k (``attention.qk_norm = "head"``)."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.llama_like import LlamaLike


@register
class Qwen3(LlamaLike):
    model_type = "qwen3"
    architecture = "Qwen3ForCausalLM"
    priority = 3
    qk_norm = "head"
    window = "layer_types"

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        kw["use_sliding_window"] = "sliding_window" in kw
        return kw

"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (RMSNorm on each head's q and k,
``attention_bias`` on q/k/v/o, an explicit ``head_dim``, one ``sliding_window`` behind
``use_sliding_window``) with Qwen2-MoE's routed experts and sparse-layer plan, and no shared expert."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.families.qwen2_moe import QwenMoE
from archlab.moe.config import MoEConfig


@register
class Qwen3Moe(QwenMoE):
    model_type = "qwen3_moe"
    architecture = "Qwen3MoeForCausalLM"
    priority = 22
    qk_norm = "head"
    window = "one"
    config_fields = ("head_dim",)  # read by the attention, not declared by Qwen3MoeConfig

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        kw["use_sliding_window"] = kw["sliding_window"] is not None  # else transformers drops the window
        return kw

    def moe_from_hf(self, hf: Any) -> MoEConfig:
        return MoEConfig(**self.moe_kwargs(hf))

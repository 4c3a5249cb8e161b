"""Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): Qwen2's attention (q/k/v biases behind ``qkv_bias``,
sliding layers via ``layer_types``) with a top-k softmax router, optionally renormalised
(``norm_topk_prob``), routed experts of width ``moe_intermediate_size``, and one shared expert of
width ``shared_expert_intermediate_size`` scaled by sigmoid(``shared_expert_gate`` . x)
(``moe.shared_gate``). Layer i has experts when it is not in ``mlp_only_layers`` and
(i + 1) % ``decoder_sparse_step`` == 0; other layers have a dense MLP of ``intermediate_size``."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import Rule, register
from archlab.interop.common import ANY, Accept
from archlab.interop.llama_like_moe import LlamaLikeMoE
from archlab.interop.moe_rules import experts_from_hf, shared_rules
from archlab.moe.config import MoEConfig


class QwenMoE(LlamaLikeMoE):
    """What Qwen2-MoE and Qwen3-MoE share: the sparse-layer plan and the routed experts' keys."""

    experts_in_every_layer = False
    expert_width_is_intermediate = False

    def moe_kwargs(self, hf: Any) -> dict[str, Any]:
        return dict(num_experts=hf.num_experts, top_k=hf.num_experts_per_tok, expert_hidden=hf.moe_intermediate_size,
                    norm_topk_prob=bool(hf.norm_topk_prob), **experts_from_hf(hf.hidden_act))

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {"router": "softmax_topk", "norm_topk_prob": ANY, "expert_hidden": ANY}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        return {"num_experts": moe.num_experts, "num_experts_per_tok": moe.top_k, "moe_intermediate_size": moe.expert_hidden,
                "norm_topk_prob": moe.norm_topk_prob}


@register
class Qwen2Moe(QwenMoE):
    model_type = "qwen2_moe"
    architecture = "Qwen2MoeForCausalLM"
    priority = 21
    bias = "qkv"
    window = "layer_types"
    has_head_dim = False

    def config_from_hf(self, hf: Any) -> ModelConfig:
        cfg = super().config_from_hf(hf)
        return cfg.replace(**{"attention.qkv_bias": bool(getattr(hf, "qkv_bias", True))})

    def accepted(self, cfg: ModelConfig) -> dict[str, Any]:
        return {**super().accepted(cfg), "attention.qkv_bias": ANY}

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        kw = super().config_to_hf(cfg)
        kw["qkv_bias"] = cfg.attention.qkv_bias
        kw["use_sliding_window"] = "sliding_window" in kw  # else transformers drops the window
        return kw

    def moe_from_hf(self, hf: Any) -> MoEConfig:
        return MoEConfig(**self.moe_kwargs(hf), shared_experts=1, shared_expert_hidden=hf.shared_expert_intermediate_size,
                         shared_gate=True)

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {**super().moe_fields(cfg), "shared_experts": Accept(lambda n: n >= 1, "1 or more (one fused MLP)"),
                "shared_expert_hidden": ANY, "shared_gate": True}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        return {**super().moe_to_hf(moe), "shared_expert_intermediate_size": moe.shared_hidden_total()}

    def shared_rules(self, hf_prefix: str, ours_prefix: str, moe: MoEConfig) -> list[Rule]:
        return shared_rules(hf_prefix + "shared_expert.", ours_prefix, moe, gate=hf_prefix + "shared_expert_gate.weight")

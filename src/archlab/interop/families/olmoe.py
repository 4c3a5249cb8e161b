"""OLMoE: pre-RMSNorm attention with RMSNorm over the whole q and k projections
(``attention.qk_norm = "full"``) and a top-k softmax router over ``num_experts`` SwiGLU experts
of width ``intermediate_size`` in every layer, optionally renormalised (``norm_topk_prob``).
``clip_qkv`` (clamping q, k, v) has no archlab counterpart."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import Unsupported, register
from archlab.interop.common import ANY
from archlab.interop.llama_like_moe import LlamaLikeMoE
from archlab.interop.moe_rules import experts_from_hf
from archlab.moe.config import MoEConfig


@register
class Olmoe(LlamaLikeMoE):
    model_type = "olmoe"
    architecture = "OlmoeForCausalLM"
    priority = 23
    qk_norm = "full"
    has_head_dim = False

    def config_from_hf(self, hf: Any) -> ModelConfig:
        if getattr(hf, "clip_qkv", None) is not None:
            raise Unsupported(f"clip_qkv: clamping q, k and v to +-{hf.clip_qkv} has no archlab counterpart; accepted: None")
        return super().config_from_hf(hf)

    def moe_from_hf(self, hf: Any) -> MoEConfig:
        return MoEConfig(num_experts=hf.num_experts, top_k=hf.num_experts_per_tok, expert_hidden=hf.intermediate_size,
                         norm_topk_prob=bool(hf.norm_topk_prob), **experts_from_hf(hf.hidden_act))

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {"router": "softmax_topk", "norm_topk_prob": ANY, "expert_hidden": ANY}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        return {"num_experts": moe.num_experts, "num_experts_per_tok": moe.top_k, "norm_topk_prob": moe.norm_topk_prob}

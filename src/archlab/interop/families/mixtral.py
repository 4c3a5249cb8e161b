"""Mixtral: Mistral's attention (one sliding window, no biases) with a top-k softmax router whose k
weights are renormalised (``moe.norm_topk_prob``) over ``num_local_experts`` SwiGLU experts of
width ``intermediate_size`` in every layer. Files name the MoE module ``block_sparse_moe`` and
the experts' matrices w1 (gate), w3 (up), w2 (down)."""
from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import register
from archlab.interop.common import ANY
from archlab.interop.llama_like_moe import LlamaLikeMoE
from archlab.interop.moe_rules import experts_from_hf
from archlab.moe.config import MoEConfig


@register
class Mixtral(LlamaLikeMoE):
    model_type = "mixtral"
    architecture = "MixtralForCausalLM"
    priority = 20
    bias = "none"
    window = "one"
    file_prefix = "block_sparse_moe."
    expert_names = ("w1", "w3", "w2")

    def canonical(self, key: str) -> str:
        return super().canonical(key.replace(".block_sparse_moe.", ".mlp."))

    def moe_from_hf(self, hf: Any) -> MoEConfig:
        return MoEConfig(num_experts=hf.num_local_experts, top_k=hf.num_experts_per_tok, expert_hidden=hf.intermediate_size,
                         norm_topk_prob=True, **experts_from_hf(hf.hidden_act))

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {"router": "softmax_topk", "norm_topk_prob": True, "expert_hidden": ANY}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        return {"num_local_experts": moe.num_experts, "num_experts_per_tok": moe.top_k}

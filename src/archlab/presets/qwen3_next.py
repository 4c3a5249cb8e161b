"""Qwen3-Next (Qwen team 2025): three Gated DeltaNet layers for every gated-attention layer, a
sparse MoE with a sigmoid-gated shared expert after each, zero-centred RMSNorms (1 + w) everywhere
(QK-norm included), partial rotary on a quarter of each attention head."""
from archlab.config import LayerPlan, ModelConfig
from archlab.linear.config import LinearAttentionConfig
from archlab.moe.config import MoEConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def qwen3_next(*, d_model: int, n_layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int, vocab: int,
               linear_heads: int, linear_key_heads: int, linear_head_dim: int, experts: int, top_k: int, expert_hidden: int,
               context: int | None = None, theta: float = 10_000_000.0) -> ModelConfig:
    base = llama(d_model=d_model, n_layers=n_layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim, ffn=ffn, vocab=vocab,
                 theta=theta, eps=1e-6, context=context)
    return base.replace(
        linear=LinearAttentionConfig(kind="gated_deltanet", heads=linear_heads, key_heads=linear_key_heads,
                                     head_dim=linear_head_dim, value_head_dim=linear_head_dim, conv_size=4, norm_eps=1e-6),
        moe=MoEConfig(num_experts=experts, top_k=top_k, expert_hidden=expert_hidden, norm_topk_prob=True, shared_experts=1,
                      shared_gate=True),
        plan=LayerPlan(pattern="XXXE"),
        **{"attention.qk_norm": "head", "attention.qk_norm_unit_offset": True, "attention.output_gate": "sigmoid",
           "position.rotary_fraction": 0.25, "norm.unit_offset": True},
    )


@preset("qwen3-next-80b-a3b")
def qwen3_next_80b_a3b() -> ModelConfig:
    return qwen3_next(d_model=2048, n_layers=48, heads=16, kv_heads=2, head_dim=256, ffn=5120, vocab=151936,
                      linear_heads=32, linear_key_heads=16, linear_head_dim=128, experts=512, top_k=10, expert_hidden=512,
                      context=262144)


@preset("qwen3-next-debug")
def qwen3_next_debug() -> ModelConfig:
    return qwen3_next(d_model=64, n_layers=4, heads=4, kv_heads=2, head_dim=32, ffn=128, vocab=256, linear_heads=4,
                      linear_key_heads=2, linear_head_dim=16, experts=8, top_k=2, expert_hidden=32)

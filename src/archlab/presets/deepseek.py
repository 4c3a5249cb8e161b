"""DeepSeek-V2-Lite (DeepSeek-AI 2024) and DeepSeek-V3 (DeepSeek-AI 2024): multi-head latent
attention (``attention.kind=mla``) in every layer; the first k layers have a dense SwiGLU FFN,
the rest fine-grained DeepSeekMoE (many small routed experts plus always-on shared ones).
Pre-RMSNorm (eps 1e-6), untied head, RoPE on the 64 decoupled key dims (interleaved pairs, as
DeepSeek's weights expect) with YaRN x40 over a 4096-token trained context.

The layer plan is a pattern of n_layers letters: ``A`` (MLA + dense FFN) for the first-k-dense
layers, then ``E`` (MLA + MoE). The multi-token-prediction module of V3 is not part of the
published 671B count and is not modelled.
"""
from archlab.attention.config import AttentionConfig
from archlab.attention.mla_config import MLAConfig
from archlab.config import LayerPlan, ModelConfig
from archlab.ffn import FFNConfig
from archlab.moe.config import MoEConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig, RopeScalingConfig
from archlab.presets import preset


def deepseek(*, d_model: int, n_layers: int, heads: int, mla: MLAConfig, dense_layers: int, dense_ffn: int,
             moe: MoEConfig, vocab: int, mscale: float, yarn_factor: float = 40.0, original: int = 4096) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(kind="mla", heads=heads, mla=mla),
        position=PositionConfig(kind="rope", theta=10000.0, interleaved=True, max_positions=int(original * yarn_factor),
                                scaling=RopeScalingConfig(kind="yarn", factor=yarn_factor, original_max_positions=original,
                                                          beta_fast=32.0, beta_slow=1.0, mscale=mscale, mscale_all_dim=mscale)),
        ffn=FFNConfig(kind="swiglu", hidden=dense_ffn),
        norm=NormConfig(kind="rmsnorm", eps=1e-6, placement="pre"),
        moe=moe,
        plan=LayerPlan(pattern="A" * dense_layers + "E" * (n_layers - dense_layers)),
        tie_embeddings=False,
    )


@preset("deepseek-v2-lite")
def deepseek_v2_lite() -> ModelConfig:
    """15.7B total, 2.4B active: no query compression, 64 routed experts top-6 (greedy softmax) + 2 shared."""
    return deepseek(
        d_model=2048, n_layers=27, heads=16, vocab=102400, dense_layers=1, dense_ffn=10944, mscale=0.707,
        mla=MLAConfig(kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128),
        moe=MoEConfig(num_experts=64, top_k=6, expert_hidden=1408, router="softmax_topk", shared_experts=2,
                      seq_balance_coef=0.001),
    )


@preset("deepseek-v3")
def deepseek_v3() -> ModelConfig:
    """671B total, 37B active: query compression 1536, 256 routed experts top-8 + 1 shared, sigmoid
    scores with an aux-loss-free correction bias, group-limited routing (8 groups, best 4 by
    their top-2 sum), weights renormalised and scaled by 2.5."""
    return deepseek(
        d_model=7168, n_layers=61, heads=128, vocab=129280, dense_layers=3, dense_ffn=18432, mscale=1.0,
        mla=MLAConfig(kv_lora_rank=512, q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128),
        moe=MoEConfig(num_experts=256, top_k=8, expert_hidden=2048, router="sigmoid", norm_topk_prob=True,
                      routed_scaling_factor=2.5, n_group=8, topk_group=4, group_score="top2_sum", shared_experts=1,
                      correction_bias=True, bias_update_rate=0.001, seq_balance_coef=0.0001),
    )


@preset("deepseek-debug")
def deepseek_debug() -> ModelConfig:
    """DeepSeek-V3's structure at test size: query compression, one dense layer then MoE."""
    return deepseek(
        d_model=64, n_layers=2, heads=4, vocab=256, dense_layers=1, dense_ffn=128, mscale=1.0, yarn_factor=4.0, original=64,
        mla=MLAConfig(kv_lora_rank=32, q_lora_rank=24, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
        moe=MoEConfig(num_experts=8, top_k=2, expert_hidden=32, router="sigmoid", norm_topk_prob=True,
                      routed_scaling_factor=2.5, n_group=4, topk_group=2, group_score="top2_sum", shared_experts=1,
                      correction_bias=True),
    )

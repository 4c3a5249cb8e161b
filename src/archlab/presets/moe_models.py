"""Mixture-of-experts families: Mixtral (coarse, top-2), OLMoE (fine-grained, 64 x top-8),
Qwen2-MoE (fine-grained + a gated shared expert), Qwen3-MoE (128 x top-8, renormalised, QK-norm,
no shared expert), and a Switch-style top-1 decoder."""
from archlab.config import LayerPlan, ModelConfig
from archlab.moe.config import MoEConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def _moe(cfg: ModelConfig, pattern: str = "E", **moe) -> ModelConfig:
    return cfg.replace(moe=MoEConfig(**moe), plan=LayerPlan(pattern=pattern))


@preset("mixtral-8x7b")
def mixtral_8x7b() -> ModelConfig:
    base = llama(d_model=4096, n_layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=32000, theta=1e6)
    return _moe(base, num_experts=8, top_k=2, expert_hidden=14336, norm_topk_prob=True)


@preset("mixtral-debug")
def mixtral_debug() -> ModelConfig:
    base = llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256, theta=1e6)
    return _moe(base, num_experts=4, top_k=2, expert_hidden=64, norm_topk_prob=True)


def _olmoe(base: ModelConfig) -> ModelConfig:
    return base.replace(**{"attention.qk_norm": "full"})


@preset("olmoe-1b-7b")
def olmoe_1b_7b() -> ModelConfig:
    base = _olmoe(llama(d_model=2048, n_layers=16, heads=16, kv_heads=16, head_dim=128, ffn=1024, vocab=50304, theta=10000.0))
    return _moe(base, num_experts=64, top_k=8, expert_hidden=1024, norm_topk_prob=False)


@preset("olmoe-debug")
def olmoe_debug() -> ModelConfig:
    base = _olmoe(llama(d_model=64, n_layers=2, heads=4, kv_heads=4, head_dim=16, ffn=32, vocab=256, theta=10000.0))
    return _moe(base, num_experts=16, top_k=4, expert_hidden=32)


def _qwen2(base: ModelConfig) -> ModelConfig:
    return base.replace(**{"attention.qkv_bias": True})


@preset("qwen2-57b-a14b")
def qwen2_57b_a14b() -> ModelConfig:
    base = _qwen2(llama(d_model=3584, n_layers=28, heads=28, kv_heads=4, head_dim=128, ffn=18944, vocab=151936,
                        theta=1e6, eps=1e-6))
    return _moe(base, num_experts=64, top_k=8, expert_hidden=2560, shared_experts=1, shared_expert_hidden=20480,
                shared_gate=True)


@preset("qwen2-moe-debug")
def qwen2_moe_debug() -> ModelConfig:
    base = _qwen2(llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256, theta=1e6, eps=1e-6))
    return _moe(base, num_experts=8, top_k=2, expert_hidden=32, shared_experts=1, shared_expert_hidden=64, shared_gate=True)


def _qwen3(base: ModelConfig) -> ModelConfig:
    return base.replace(**{"attention.qk_norm": "head"})


@preset("qwen3-30b-a3b")
def qwen3_30b_a3b() -> ModelConfig:
    base = _qwen3(llama(d_model=2048, n_layers=48, heads=32, kv_heads=4, head_dim=128, ffn=6144, vocab=151936,
                        theta=1e6, eps=1e-6, context=40960))
    return _moe(base, num_experts=128, top_k=8, expert_hidden=768, norm_topk_prob=True)


@preset("qwen3-235b-a22b")
def qwen3_235b_a22b() -> ModelConfig:
    base = _qwen3(llama(d_model=4096, n_layers=94, heads=64, kv_heads=4, head_dim=128, ffn=12288, vocab=151936,
                        theta=1e6, eps=1e-6, context=40960))
    return _moe(base, num_experts=128, top_k=8, expert_hidden=1536, norm_topk_prob=True)


@preset("qwen3-moe-debug")
def qwen3_moe_debug() -> ModelConfig:
    base = _qwen3(llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=32, ffn=128, vocab=256, theta=1e6, eps=1e-6))
    return _moe(base, num_experts=8, top_k=2, expert_hidden=32, norm_topk_prob=True)


def _switch(*, d_model: int, n_layers: int, heads: int, experts: int, hidden: int, vocab: int) -> ModelConfig:
    """Switch Transformer routing (Fedus et al. 2021) in a decoder: top-1, capacity factor 1.25
    with token dropping, load-balancing loss 0.01, router z-loss 0.001 (ST-MoE), MoE every
    other layer."""
    base = llama(d_model=d_model, n_layers=n_layers, heads=heads, kv_heads=heads, head_dim=d_model // heads,
                 ffn=hidden, vocab=vocab, theta=10000.0)
    return _moe(base, pattern="AE", num_experts=experts, top_k=1, expert_hidden=hidden, router="topk_softmax",
                expert_kind="mlp", activation="relu", capacity_factor=1.25, load_balance_coef=0.01, z_loss_coef=0.001)


@preset("switch-style-base")
def switch_style_base() -> ModelConfig:
    return _switch(d_model=768, n_layers=12, heads=12, experts=8, hidden=3072, vocab=32128)


@preset("switch-style-debug")
def switch_style_debug() -> ModelConfig:
    return _switch(d_model=64, n_layers=2, heads=4, experts=4, hidden=128, vocab=256)

"""Linear-attention families for experiments (not published checkpoints): GLA (Yang et al.
2024), DeltaNet / Gated DeltaNet (Yang et al. 2024, 2025) and Based (Arora et al. 2024),
each a Llama-style stack whose token mixer is the linear-attention kind, with SwiGLU MLPs."""
from archlab.config import LayerPlan, ModelConfig
from archlab.linear.config import LinearAttentionConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def linear_stack(kind: str, *, d_model: int, n_layers: int, heads: int, vocab: int, pattern: str = "L",
                 **linear) -> ModelConfig:
    base = llama(d_model=d_model, n_layers=n_layers, heads=heads, kv_heads=heads, head_dim=d_model // heads,
                 ffn=int(8 / 3 * d_model) // 64 * 64, vocab=vocab, theta=10000.0, tied=True)
    return base.replace(linear=LinearAttentionConfig(kind=kind, heads=heads, **linear), plan=LayerPlan(pattern=pattern))


@preset("gla-340m")
def gla_340m() -> ModelConfig:
    return linear_stack("gla", d_model=1024, n_layers=24, heads=4, vocab=32000)


@preset("gla-debug")
def gla_debug() -> ModelConfig:
    return linear_stack("gla", d_model=64, n_layers=2, heads=2, vocab=256)


@preset("deltanet-340m")
def deltanet_340m() -> ModelConfig:
    return linear_stack("deltanet", d_model=1024, n_layers=24, heads=8, vocab=32000)


@preset("deltanet-debug")
def deltanet_debug() -> ModelConfig:
    return linear_stack("deltanet", d_model=64, n_layers=2, heads=2, vocab=256)


@preset("gated-deltanet-340m")
def gated_deltanet_340m() -> ModelConfig:
    return linear_stack("gated_deltanet", d_model=1024, n_layers=24, heads=8, vocab=32000)


@preset("gated-deltanet-debug")
def gated_deltanet_debug() -> ModelConfig:
    return linear_stack("gated_deltanet", d_model=64, n_layers=2, heads=2, vocab=256)


@preset("based-360m")
def based_360m() -> ModelConfig:
    return linear_stack("based", d_model=1024, n_layers=24, heads=16, vocab=32000, window=64)


@preset("based-debug")
def based_debug() -> ModelConfig:
    return linear_stack("based", d_model=64, n_layers=2, heads=4, vocab=256, window=8)


@preset("hybrid-gla-debug")
def hybrid_gla_debug() -> ModelConfig:
    """One softmax-attention layer for every three GLA layers: the recall fix of hybrids."""
    return linear_stack("gla", d_model=64, n_layers=4, heads=2, vocab=256, pattern="LLLA")

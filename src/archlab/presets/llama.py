"""Llama 3 (Grattafiori et al. 2024): pre-RMSNorm, SwiGLU, RoPE, GQA with 8 KV heads."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig, RopeScalingConfig
from archlab.presets import preset


def llama(*, d_model: int, n_layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int, vocab: int = 128256,
          theta: float = 500000.0, tied: bool = False, eps: float = 1e-5, context: int | None = None,
          scaling: RopeScalingConfig | None = None, **extra) -> ModelConfig:
    """``context``: the trained context (position.max_positions), the default length RoPE
    scaling extends from."""
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, kv_heads=kv_heads, head_dim=head_dim),
        position=PositionConfig(kind="rope", theta=theta, max_positions=context, scaling=scaling or RopeScalingConfig()),
        ffn=FFNConfig(kind="swiglu", hidden=ffn),
        norm=NormConfig(kind="rmsnorm", eps=eps, placement="pre"),
        tie_embeddings=tied, **extra,
    )


@preset("llama-3-8b")
def llama_3_8b() -> ModelConfig:
    return llama(d_model=4096, n_layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, context=8192)


@preset("llama-3-70b")
def llama_3_70b() -> ModelConfig:
    return llama(d_model=8192, n_layers=80, heads=64, kv_heads=8, head_dim=128, ffn=28672, context=8192)


@preset("llama-3.2-1b")
def llama_3_2_1b() -> ModelConfig:
    # Llama-3.1-style scaling stretches the 8k-trained frequencies to 128k
    scaling = RopeScalingConfig(kind="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                original_max_positions=8192)
    return llama(d_model=2048, n_layers=16, heads=32, kv_heads=8, head_dim=64, ffn=8192, tied=True, context=131072,
                 scaling=scaling)


@preset("llama-3-debug")
def llama_3_debug() -> ModelConfig:
    return llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256, context=256)

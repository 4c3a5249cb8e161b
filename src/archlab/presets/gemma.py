"""Gemma 2 (Gemma team 2024): alternating local (sliding 4096) and global layers, logit
soft-capping (attention 50, final 30), sandwich RMSNorm with unit offset, embeddings scaled
by sqrt(d_model), tanh-GeGLU, query scale 1/sqrt(query_pre_attn_scalar)."""
import math

from archlab.attention.config import AttentionConfig
from archlab.config import LayerPlan, LayerSpec, ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def gemma2(*, d_model: int, n_layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int, window: int,
           query_scalar: float, vocab: int = 256000) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, kv_heads=kv_heads, head_dim=head_dim, softcap=50.0,
                                  scale=query_scalar**-0.5),
        position=PositionConfig(kind="rope", theta=10000.0),
        ffn=FFNConfig(kind="geglu", hidden=ffn),
        norm=NormConfig(kind="rmsnorm", eps=1e-6, unit_offset=True, placement="sandwich"),
        # layer 0 is local, layer 1 global, and so on
        plan=LayerPlan(pattern="SA", letters={"S": LayerSpec(set={"attention.window": window})}),
        tie_embeddings=True, embed_scale=math.sqrt(d_model), logit_softcap=30.0,
    )


@preset("gemma-2-9b")
def gemma_2_9b() -> ModelConfig:
    return gemma2(d_model=3584, n_layers=42, heads=16, kv_heads=8, head_dim=256, ffn=14336, window=4096, query_scalar=256)


@preset("gemma-2-debug")
def gemma_2_debug() -> ModelConfig:
    return gemma2(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=32, ffn=128, window=8, query_scalar=32, vocab=256)

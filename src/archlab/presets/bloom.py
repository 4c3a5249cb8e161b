"""BLOOM (BigScience 2022): ALiBi instead of position embeddings, LayerNorm right after the
embedding, biases everywhere, tanh-GELU MLP, tied head."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def bloom(*, d_model: int, n_layers: int, heads: int, vocab: int = 250880) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, qkv_bias=True, out_bias=True),
        position=PositionConfig(kind="alibi"),
        ffn=FFNConfig(kind="mlp", hidden=4 * d_model, bias=True, activation="gelu_tanh"),
        norm=NormConfig(kind="layernorm", bias=True, eps=1e-5, placement="pre", embedding_norm=True),
        tie_embeddings=True,
    )


@preset("bloom-7b1")
def bloom_7b1() -> ModelConfig:
    return bloom(d_model=4096, n_layers=30, heads=32)


@preset("bloom-debug")
def bloom_debug() -> ModelConfig:
    return bloom(d_model=64, n_layers=2, heads=4, vocab=256)

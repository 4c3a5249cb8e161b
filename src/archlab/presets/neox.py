"""GPT-NeoX / Pythia (Black et al. 2022; Biderman et al. 2023): rotary on 25% of each
head, parallel attention and MLP with two LayerNorms, biases, exact GELU, untied head."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def neox(*, d_model: int, n_layers: int, heads: int, vocab: int = 50432) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, qkv_bias=True, out_bias=True),
        position=PositionConfig(kind="rope", theta=10000.0, rotary_fraction=0.25),
        ffn=FFNConfig(kind="mlp", hidden=4 * d_model, bias=True, activation="gelu"),
        norm=NormConfig(kind="layernorm", bias=True, eps=1e-5, placement="parallel"),
        tie_embeddings=False,
    )


@preset("pythia-6.9b")
def pythia_6_9b() -> ModelConfig:
    return neox(d_model=4096, n_layers=32, heads=32)


@preset("gpt-neox-20b")
def gpt_neox_20b() -> ModelConfig:
    return neox(d_model=6144, n_layers=44, heads=64)


@preset("pythia-debug")
def pythia_debug() -> ModelConfig:
    return neox(d_model=64, n_layers=2, heads=4, vocab=256)

"""A decoder-only model with T5's relative position bias (Raffel et al. 2020): log-spaced
buckets of relative distance, one learned scalar per bucket and head, shared by all layers.
For experiments on extrapolation; not a published checkpoint."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def t5_style(*, d_model: int, n_layers: int, heads: int, vocab: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads),
        position=PositionConfig(kind="t5", num_buckets=32, max_distance=128, shared_across_layers=True),
        ffn=FFNConfig(kind="geglu", hidden=int(8 / 3 * d_model)),
        norm=NormConfig(kind="rmsnorm", eps=1e-6, placement="pre"),
        tie_embeddings=False,
    )


@preset("t5-style-60m")
def t5_style_60m() -> ModelConfig:
    return t5_style(d_model=512, n_layers=8, heads=8, vocab=32128)


@preset("t5-style-debug")
def t5_style_debug() -> ModelConfig:
    return t5_style(d_model=64, n_layers=2, heads=4, vocab=256)

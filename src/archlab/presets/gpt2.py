"""GPT-2 (Radford et al. 2019): pre-LayerNorm with biases, tanh-GELU MLP, tied head.

Its learned absolute positions (1024) are the ``learned`` position kind."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def gpt2(*, d_model: int, n_layers: int, heads: int, vocab: int = 50257, max_positions: int = 1024) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, qkv_bias=True, out_bias=True),
        position=PositionConfig(kind="learned", max_positions=max_positions),
        ffn=FFNConfig(kind="mlp", hidden=4 * d_model, bias=True, activation="gelu_tanh"),
        norm=NormConfig(kind="layernorm", bias=True, eps=1e-5, placement="pre"),
        tie_embeddings=True,
    )


@preset("gpt2-124m")
def gpt2_124m() -> ModelConfig:
    return gpt2(d_model=768, n_layers=12, heads=12)


@preset("gpt2-debug")
def gpt2_debug() -> ModelConfig:
    return gpt2(d_model=64, n_layers=2, heads=4, vocab=256, max_positions=128)

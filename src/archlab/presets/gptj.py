"""GPT-J (Wang & Komatsuzaki 2021): attention and MLP in parallel from one LayerNorm, rotary on
the first 64 dims of each head with adjacent pairs rotated, no attention biases, a biased
untied LM head."""
from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset


def gptj(*, d_model: int, n_layers: int, heads: int, rotary_dim: int, vocab: int = 50400, max_positions: int = 2048) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads),
        position=PositionConfig(kind="rope", theta=10000.0, rotary_fraction=rotary_dim / (d_model // heads),
                                interleaved=True, max_positions=max_positions),
        ffn=FFNConfig(kind="mlp", hidden=4 * d_model, bias=True, activation="gelu_tanh"),
        norm=NormConfig(kind="layernorm", bias=True, eps=1e-5, placement="parallel_shared"),
        tie_embeddings=False, head_bias=True,
    )


@preset("gpt-j-6b")
def gpt_j_6b() -> ModelConfig:
    return gptj(d_model=4096, n_layers=28, heads=16, rotary_dim=64)


@preset("gpt-j-debug")
def gpt_j_debug() -> ModelConfig:
    return gptj(d_model=64, n_layers=2, heads=4, rotary_dim=8, vocab=256, max_positions=128)

"""Phi-3 (Abdin et al. 2024): Llama-shaped (transformers fuses qkv and gate/up), sliding window
2047 in the 4k-context models, RMSNorm eps 1e-5, untied head."""
from archlab.config import ModelConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def phi3(*, d_model: int, n_layers: int, heads: int, kv_heads: int, ffn: int, window: int | None,
         vocab: int = 32064, max_positions: int = 4096) -> ModelConfig:
    cfg = llama(d_model=d_model, n_layers=n_layers, heads=heads, kv_heads=kv_heads, head_dim=d_model // heads, ffn=ffn,
                vocab=vocab, theta=10000.0, eps=1e-5)
    return cfg.replace(**{"attention.window": window, "position.max_positions": max_positions})


@preset("phi-3-mini-4k")
def phi_3_mini_4k() -> ModelConfig:
    return phi3(d_model=3072, n_layers=32, heads=32, kv_heads=32, ffn=8192, window=2047)


@preset("phi-3-medium-4k")
def phi_3_medium_4k() -> ModelConfig:
    return phi3(d_model=5120, n_layers=40, heads=40, kv_heads=10, ffn=17920, window=2047)


@preset("phi-3-debug")
def phi_3_debug() -> ModelConfig:
    return phi3(d_model=64, n_layers=2, heads=4, kv_heads=2, ffn=128, window=8, vocab=256, max_positions=64)

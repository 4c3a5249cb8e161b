"""Mistral 7B (Jiang et al. 2023): Llama-style with a 4096-token sliding window."""
from archlab.config import ModelConfig
from archlab.presets import preset
from archlab.presets.llama import llama


@preset("mistral-7b")
def mistral_7b() -> ModelConfig:
    cfg = llama(d_model=4096, n_layers=32, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=32000, theta=10000.0,
                context=32768)
    return cfg.replace(**{"attention.window": 4096})


@preset("mistral-debug")
def mistral_debug() -> ModelConfig:
    cfg = llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256, theta=10000.0)
    return cfg.replace(**{"attention.window": 8})

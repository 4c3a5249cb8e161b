"""Qwen3 (Qwen team 2025): Llama-style with RMSNorm on each head's q and k (QK-norm)."""
from archlab.config import ModelConfig
from archlab.presets import preset
from archlab.presets.llama import llama


@preset("qwen3-8b")
def qwen3_8b() -> ModelConfig:
    cfg = llama(d_model=4096, n_layers=36, heads=32, kv_heads=8, head_dim=128, ffn=12288, vocab=151936,
                theta=1_000_000.0, eps=1e-6, context=40960)
    return cfg.replace(**{"attention.qk_norm": "head"})


@preset("qwen3-debug")
def qwen3_debug() -> ModelConfig:
    cfg = llama(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=32, ffn=128, vocab=256, theta=1_000_000.0, eps=1e-6)
    return cfg.replace(**{"attention.qk_norm": "head"})

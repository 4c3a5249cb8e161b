"""Qwen2 (Qwen team 2024): Llama-style with biases on q, k and v, RoPE theta 1e6, RMSNorm eps 1e-6."""
from archlab.config import ModelConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def qwen2(*, d_model: int, n_layers: int, heads: int, kv_heads: int, ffn: int, vocab: int, tied: bool) -> ModelConfig:
    cfg = llama(d_model=d_model, n_layers=n_layers, heads=heads, kv_heads=kv_heads, head_dim=d_model // heads, ffn=ffn,
                vocab=vocab, theta=1_000_000.0, eps=1e-6, tied=tied)
    return cfg.replace(**{"attention.qkv_bias": True})


@preset("qwen2-0.5b")
def qwen2_0_5b() -> ModelConfig:
    return qwen2(d_model=896, n_layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, tied=True)


@preset("qwen2-1.5b")
def qwen2_1_5b() -> ModelConfig:
    return qwen2(d_model=1536, n_layers=28, heads=12, kv_heads=2, ffn=8960, vocab=151936, tied=True)


@preset("qwen2-7b")
def qwen2_7b() -> ModelConfig:
    return qwen2(d_model=3584, n_layers=28, heads=28, kv_heads=4, ffn=18944, vocab=152064, tied=False)


@preset("qwen2-72b")
def qwen2_72b() -> ModelConfig:
    return qwen2(d_model=8192, n_layers=80, heads=64, kv_heads=8, ffn=29568, vocab=152064, tied=False)


@preset("qwen2-debug")
def qwen2_debug() -> ModelConfig:
    return qwen2(d_model=64, n_layers=2, heads=4, kv_heads=2, ffn=128, vocab=256, tied=True)

"""OLMo 2 (OLMo team 2024): RMSNorm on each sublayer's output inside the residual, and
QK-norm over the whole q and k projections."""
from archlab.config import ModelConfig
from archlab.presets import preset
from archlab.presets.llama import llama


def _olmo2(cfg: ModelConfig) -> ModelConfig:
    return cfg.replace(**{"attention.qk_norm": "full", "norm.placement": "output", "norm.eps": 1e-6})


@preset("olmo-2-7b")
def olmo_2_7b() -> ModelConfig:
    return _olmo2(llama(d_model=4096, n_layers=32, heads=32, kv_heads=32, head_dim=128, ffn=11008, vocab=100352, context=4096))


@preset("olmo-2-debug")
def olmo_2_debug() -> ModelConfig:
    return _olmo2(llama(d_model=64, n_layers=2, heads=4, kv_heads=4, head_dim=16, ffn=128, vocab=256))

"""Linear attention token mixers: feature-map linear attention (elu+1, relu, Performer,
cosFormer, Hedgehog, Taylor), RetNet retention, GLA, DeltaNet, Gated DeltaNet and Based.

    mixer = build_mixer(LinearAttentionConfig(kind="gla", heads=4), d_model=256, layer_idx=0)
    y = mixer(x, positions=pos)                          # x [B, T, C]
    cache = mixer.new_cache(batch_size, max_len, dtype, device)
    y = mixer(x_new, positions=pos_new, cache=cache)     # continues from the cached state

The ops (three forms each) are in archlab.ops.{linear_attn, simple_gla, gla, delta_rule, short_conv}.
"""
from .accounting import cache_bytes, flops_per_token, params
from .cache import LinearAttentionCache
from .config import FeatureMapConfig, LinearAttentionConfig
from .mixers import MIXERS, Based, DeltaNet, FeatureMapLinearAttention, GatedDeltaNet, GatedLinearAttention, Retention, build_mixer

__all__ = [
    "LinearAttentionConfig", "FeatureMapConfig", "LinearAttentionCache", "MIXERS", "build_mixer",
    "FeatureMapLinearAttention", "Retention", "GatedLinearAttention", "DeltaNet", "GatedDeltaNet", "Based",
    "params", "flops_per_token", "cache_bytes",
]

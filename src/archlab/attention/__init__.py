"""Softmax attention and its backends; kinds register in ``ATTENTION``."""
from archlab.attention.config import AttentionConfig
from archlab.attention.registry import ATTENTION
from archlab.attention.backends import BACKENDS, eager_attention, sdpa_attention, visibility
from archlab.attention import softmax  # noqa: F401  (registers "softmax")
from archlab.attention import mla  # noqa: F401  (registers "mla")
from archlab.attention.mla_config import MLAConfig

__all__ = ["AttentionConfig", "MLAConfig", "ATTENTION", "BACKENDS", "eager_attention", "sdpa_attention", "visibility"]

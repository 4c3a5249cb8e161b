"""Softmax attention and its backends; kinds register in ``ATTENTION``."""
from archlab.attention.config import AttentionConfig
from archlab.attention.registry import ATTENTION
from archlab.attention.backends import BACKENDS, eager_attention, sdpa_attention, visibility
from archlab.attention import softmax  # noqa: F401  (registers "softmax")

__all__ = ["AttentionConfig", "ATTENTION", "BACKENDS", "eager_attention", "sdpa_attention", "visibility"]

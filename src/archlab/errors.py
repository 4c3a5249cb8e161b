"""Named exceptions. Every message says which field, key or file is wrong and what is accepted."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value, key or combination is invalid.

    The message names the dotted field (e.g. ``attention.kv_heads``) and what would be accepted.
    """


class CacheOverflowError(ValueError):
    """A forward pass would write past the ``max_len`` a cache was created with."""


class CheckpointError(ValueError):
    """A checkpoint or weight file is missing, unreadable or does not match the model."""


def check(cond: bool, field: str, message: str) -> None:
    """Raise ConfigError(f"{field}: {message}") unless ``cond`` holds.

    Used by config ``__post_init__`` methods so that every error names its field.
    """
    if not cond:
        raise ConfigError(f"{field}: {message}")

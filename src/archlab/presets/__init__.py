"""Published architectures as named configs; every family has a tiny ``-debug`` size.

``get(name, **overrides)`` returns a ModelConfig; ``names()`` lists them. A preset is a
short function in its family's file, registered with ``@preset("name")``.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

from archlab.config import ModelConfig
from archlab.errors import ConfigError

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}
_FAMILIES = ("gpt2", "llama", "mistral", "qwen", "olmo", "gemma", "bloom", "neox", "t5", "moe_models", "ssm_models", "qwen2", "phi3", "gptj", "deepseek", "linear_models", "qwen3_next")
_loaded = False


def preset(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    def deco(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} registered twice")
        _PRESETS[name] = fn
        return fn

    return deco


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for fam in _FAMILIES:
            importlib.import_module(f"archlab.presets.{fam}")


def names() -> list[str]:
    _load()
    return sorted(_PRESETS)


def get(name: str, **overrides: Any) -> ModelConfig:
    """The preset's config, with optional dotted overrides (``get("llama-3-8b", **{"attention.kv_heads": 1})``)."""
    _load()
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"preset: unknown name {name!r}{hint} (archlab.presets.names() lists {len(_PRESETS)})")
    cfg = _PRESETS[name]()
    if cfg.name is None:
        cfg = cfg.replace(name=name)
    return cfg.replace(**overrides) if overrides else cfg

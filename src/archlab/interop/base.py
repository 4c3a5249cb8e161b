"""The seam every transformers family plugs into, and the registry of families.

A family maps one transformers ``model_type`` both ways:

- config: ``config_from_hf(hf_config) -> ModelConfig`` and ``config_to_hf(cfg) -> dict`` (keyword
  arguments of the transformers config class). ``config_to_hf`` raises :class:`Unsupported`
  naming the first component the family has no counterpart for.
- weights: ``rules(cfg) -> list[Rule]``; a rule ties one or more checkpoint tensors to one or
  more archlab parameters, with the functions converting between them (split/fuse,
  transpose, per-head interleaving).

Families live one per file in :mod:`archlab.interop.families`; every module there is imported
on first use, so adding a family (Mixtral, Mamba...) is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Collection, Sequence

import torch

from archlab.config import ModelConfig
from archlab.errors import ConfigError
from archlab.registry import Registry

Tensors = tuple[torch.Tensor, ...]


class Unsupported(ConfigError):
    """A config component that a transformers family cannot express (or the reverse)."""


@dataclass(frozen=True)
class Rule:
    """Checkpoint tensors ``hf`` <-> archlab parameters ``ours`` (full dotted names).

    ``load(*hf_tensors) -> ours tensors`` and ``save(*our_tensors) -> hf tensors``; both None
    means a one-to-one copy under a new name.
    """

    hf: tuple[str, ...]
    ours: tuple[str, ...]
    load: Callable[..., Tensors] | None = None
    save: Callable[..., Tensors] | None = None

    def to_ours(self, tensors: Sequence[torch.Tensor]) -> Tensors:
        out = tuple(tensors) if self.load is None else tuple(self.load(*tensors))
        if len(out) != len(self.ours):  # a family bug, not user input
            raise RuntimeError(f"interop rule {self.hf} -> {self.ours} produced {len(out)} tensors")
        return out

    def to_hf(self, tensors: Sequence[torch.Tensor]) -> Tensors:
        out = tuple(tensors) if self.save is None else tuple(self.save(*tensors))
        if len(out) != len(self.hf):
            raise RuntimeError(f"interop rule {self.ours} -> {self.hf} produced {len(out)} tensors")
        return out


def rule(hf: str | Sequence[str], ours: str | Sequence[str], load=None, save=None) -> Rule:
    as_tuple = lambda x: (x,) if isinstance(x, str) else tuple(x)  # noqa: E731
    return Rule(as_tuple(hf), as_tuple(ours), load, save)


class Family:
    """One transformers causal-LM family. Subclasses set the class attributes and the three methods."""

    model_type: ClassVar[str]  # transformers' config.model_type, the registry key
    architecture: ClassVar[str]  # the *ForCausalLM class written to config.json "architectures"
    prefix: ClassVar[str]  # base_model_prefix: checkpoints may omit it (old GPT-2 files do)
    # checkpoint keys holding no weights (old attention-mask buffers, rotary caches), regexes
    ignore: ClassVar[tuple[str, ...]] = (r"\.attn\.bias$", r"\.attn\.masked_bias$", r"rotary_emb\.inv_freq$")
    head: ClassVar[str] = "lm_head.weight"  # the untied output matrix in checkpoints
    priority: ClassVar[int] = 100  # to_hf without model_type tries families in this order (lower first)
    # config keys the family's modeling reads that its transformers config class does not declare
    # (transformers keeps unknown keywords as attributes; Qwen3-MoE's head_dim)
    config_fields: ClassVar[tuple[str, ...]] = ()

    def config_from_hf(self, hf: Any) -> ModelConfig:
        raise NotImplementedError

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        raise NotImplementedError

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        raise NotImplementedError

    def load_rules(self, cfg: ModelConfig, keys: Collection[str]) -> list[Rule]:
        """The rules for reading a checkpoint that holds ``keys`` (canonical names). ``rules(cfg)``
        by default; a family whose checkpoints come in several layouts (MoE experts fused in memory,
        one tensor per expert in files) picks the layout by the keys."""
        return self.rules(cfg)

    # -- shared behaviour --
    def canonical(self, key: str) -> str:
        """A checkpoint key with the base-model prefix added where the file omits it."""
        if key.startswith(self.prefix + ".") or key.startswith("lm_head."):
            return key
        return f"{self.prefix}.{key}"

    def ignored(self, key: str, cfg: ModelConfig) -> bool:
        if cfg.tie_embeddings and key == self.head:
            return True  # a tied head is the embedding; in-memory state dicts still list it
        return any(re.search(p, key) for p in self.ignore)


FAMILIES: Registry[Family] = Registry("transformers model_type")
_loaded = False


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance under ``cls.model_type``."""
    FAMILIES.register(cls.model_type)(cls())
    return cls


def load_families() -> Registry[Family]:
    """Import every module of ``archlab.interop.families`` (each registers itself)."""
    global _loaded
    if not _loaded:
        _loaded = True
        from archlab.interop import families

        for info in pkgutil.iter_modules(families.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{families.__name__}.{info.name}")
    return FAMILIES


def family(model_type: str) -> Family:
    """The family registered for a transformers ``model_type``, or a ConfigError listing those supported."""
    reg = load_families()
    if model_type not in reg:
        raise Unsupported(
            f"model_type: transformers family {model_type!r} is not supported by archlab.interop; "
            f"supported: {', '.join(reg.names())}"
        )
    return reg.get(model_type)


def supported_model_types() -> list[str]:
    return load_families().names()

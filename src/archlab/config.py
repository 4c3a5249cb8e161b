"""The root ModelConfig: composes the per-axis configs and the layer plan.

Per-layer variation comes from the layer plan: a pattern of letters (cycled to n_layers)
or an explicit list of layer specs. A letter names the mixer and FFN slots of a layer and
may carry dotted overrides of the model config for that layer alone, e.g. Gemma-2's local
layers: ``{"S": {"mixer": "attention", "set": {"attention.window": 4096}}}``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from archlab.attention.config import AttentionConfig
from archlab.configbase import Config
from archlab.errors import ConfigError, check
from archlab.ffn import FFNConfig
from archlab.linear.config import LinearAttentionConfig
from archlab.norm import NormConfig
from archlab.moe.config import MoEConfig
from archlab.position.config import PositionConfig
from archlab.ssm.config import SSMConfig

# Sections a layer may override; the rest (sizes, vocabulary, plan) are whole-model.
LAYER_SECTIONS = ("attention", "position", "ffn", "norm", "moe", "ssm", "linear")
# the config section each slot name needs
SLOT_SECTIONS = {"moe": "moe", "ssm": "ssm", "linear": "linear"}


@dataclass(frozen=True)
class LayerSpec(Config):
    mixer: str = "attention"  # which token mixer fills the layer (a name in slots.MIXERS)
    ffn: str = "dense"  # which FFN fills the layer (a name in slots.FFNS; "none" = mixer only)
    set: Mapping[str, Any] = field(default_factory=dict)  # dotted overrides of the model config for this layer
    tie: str | None = None  # layers with the same tie name share one block's weights (Zamba's shared block)

    def __post_init__(self) -> None:
        from archlab.slots import FFNS, MIXERS

        check(self.mixer in MIXERS, "mixer", f"unknown mixer {self.mixer!r}; accepted: {', '.join(MIXERS.names())}")
        check(self.ffn in FFNS, "ffn", f"unknown ffn {self.ffn!r}; accepted: {', '.join(FFNS.names())}")
        for key in self.set:
            check(
                key.split(".")[0] in LAYER_SECTIONS and "." in key,
                f"set.{key}",
                f"a layer may override fields of {', '.join(LAYER_SECTIONS)} (e.g. attention.window)",
            )


# Built-in letters; a plan's `letters` adds to or replaces these.
BUILTIN_LETTERS: dict[str, LayerSpec] = {
    "A": LayerSpec(mixer="attention", ffn="dense"),  # a transformer block
    "E": LayerSpec(mixer="attention", ffn="moe"),  # attention + mixture of experts
    "M": LayerSpec(mixer="ssm", ffn="none"),  # a Mamba block (mixer only)
    "L": LayerSpec(mixer="linear", ffn="dense"),  # linear attention + MLP
    "X": LayerSpec(mixer="linear", ffn="moe"),  # linear attention + mixture of experts (Qwen3-Next)
}


@dataclass(frozen=True)
class LayerPlan(Config):
    _section = "plan"
    pattern: str = "A"  # one letter per layer, cycled to n_layers ("MMMA": three M layers, then A)
    letters: Mapping[str, LayerSpec] = field(default_factory=dict)  # letter meanings beyond BUILTIN_LETTERS
    layers: tuple[LayerSpec, ...] | None = None  # explicit per-layer specs; overrides pattern

    def __post_init__(self) -> None:
        check(len(self.pattern) > 0, "plan.pattern", "must hold at least one letter")
        table = self.table()
        for ch in self.pattern:
            check(ch in table, "plan.pattern", f"letter {ch!r} has no meaning; known letters: {', '.join(sorted(table))} (add it under plan.letters)")
        check(self.layers is None or len(self.layers) > 0, "plan.layers", "must list at least one layer or be null")

    def table(self) -> dict[str, LayerSpec]:
        return {**BUILTIN_LETTERS, **dict(self.letters)}

    def specs(self, n_layers: int) -> tuple[LayerSpec, ...]:
        if self.layers is not None:
            check(len(self.layers) == n_layers, "plan.layers", f"lists {len(self.layers)} layers but n_layers is {n_layers}")
            return tuple(self.layers)
        p = self.pattern
        check(
            n_layers % len(p) == 0,
            "plan.pattern",
            f"{p!r} has {len(p)} letters, which does not divide n_layers={n_layers}; use a pattern whose length divides it",
        )
        table = self.table()
        return tuple(table[p[i % len(p)]] for i in range(n_layers))


@dataclass(frozen=True)
class ModelConfig(Config):
    vocab_size: int = 256  # tokens the embedding and head cover
    d_model: int = 256  # residual stream width
    n_layers: int = 4  # number of blocks
    attention: AttentionConfig = field(default_factory=AttentionConfig)  # softmax-attention settings
    position: PositionConfig = field(default_factory=PositionConfig)  # how order enters
    ffn: FFNConfig = field(default_factory=FFNConfig)  # dense MLP settings
    norm: NormConfig = field(default_factory=NormConfig)  # norm kind and placement
    moe: MoEConfig | None = None  # routed experts, for layers whose FFN slot is "moe"
    ssm: SSMConfig | None = None  # state-space mixer, for layers whose mixer slot is "ssm"
    linear: LinearAttentionConfig | None = None  # linear-attention mixer, for layers whose mixer slot is "linear"
    plan: LayerPlan = field(default_factory=LayerPlan)  # which mixer/FFN each layer has
    tie_embeddings: bool = True  # the LM head reuses the token embedding matrix
    head_bias: bool = False  # a bias on the untied LM head (GPT-J)
    embed_scale: float | None = None  # multiply token embeddings (Gemma: sqrt(d_model))
    logit_softcap: float | None = None  # final logits -> cap * tanh(logits / cap) (Gemma-2)
    init_std: float = 0.02  # std of the normal init of weights
    name: str | None = None  # label only (preset name); never changes behaviour

    def __post_init__(self) -> None:
        check(self.vocab_size > 0, "vocab_size", f"must be a positive integer, got {self.vocab_size}")
        check(self.d_model > 0, "d_model", f"must be a positive integer, got {self.d_model}")
        check(self.n_layers > 0, "n_layers", f"must be a positive integer, got {self.n_layers}")
        check(self.init_std > 0, "init_std", f"must be > 0, got {self.init_std}")
        # a scale outside [1e-6, 1e6] under- or overflows in bfloat16/float32 (1e-295 became 0, then 0/0)
        for name in ("embed_scale", "logit_softcap"):
            v = getattr(self, name)
            check(v is None or 1e-6 <= v <= 1e6, name, f"must lie in [1e-6, 1e6] or be null, got {v}")
        check(not (self.head_bias and self.tie_embeddings), "head_bias", "needs an untied head; set tie_embeddings=false")
        specs = self.plan.specs(self.n_layers)  # pattern length vs n_layers
        tied: dict[str, LayerSpec] = {}
        for i, spec in enumerate(specs):
            if spec.tie is not None:
                first = tied.setdefault(spec.tie, spec)
                check(first == spec, "plan.letters", f"layers tied as {spec.tie!r} must have the same spec (layer {i} differs)")
        for i in range(self.n_layers):
            _check_layer(self.layer_config(i), i, self.layer_spec(i))

    # -- the per-layer view --
    def tied_to(self, i: int) -> int | None:
        """The earlier layer whose block layer i reuses (same ``tie`` name), or None."""
        tie = self.layer_spec(i).tie
        if tie is None:
            return None
        first = next(j for j in range(i + 1) if self.layer_spec(j).tie == tie)
        return first if first < i else None

    def layer_spec(self, i: int) -> LayerSpec:
        return self.plan.specs(self.n_layers)[i]

    def layer_config(self, i: int) -> "ModelConfig":
        """The config seen by layer i: the root with that layer's overrides applied."""
        spec = self.layer_spec(i)
        if not spec.set:
            return self
        key = tuple(sorted((k, repr(v)) for k, v in spec.set.items()))
        cache = self.__dict__.setdefault("_layer_cfgs", {})
        if key not in cache:
            try:
                sections = {s: getattr(self, s) for s in LAYER_SECTIONS}
                tmp = _Sections(**sections).replace(**dict(spec.set))
            except ConfigError as e:
                raise ConfigError(f"plan layer {i}: {e}") from None
            cache[key] = dataclasses.replace(self, plan=LayerPlan(), n_layers=1, **{s: getattr(tmp, s) for s in LAYER_SECTIONS})
        return cache[key]


@dataclass(frozen=True)
class _Sections(Config):
    """Only the overridable sections, so a layer's overrides validate without the whole model."""

    attention: AttentionConfig
    position: PositionConfig
    ffn: FFNConfig
    norm: NormConfig
    moe: MoEConfig | None
    ssm: SSMConfig | None
    linear: LinearAttentionConfig | None


def _check_layer(cfg: ModelConfig, i: int, spec: LayerSpec | None = None) -> None:
    """Cross-field checks that need d_model and the attention shape together."""
    a = cfg.attention
    where = f" (layer {i})" if i else ""
    if spec is not None:
        for slot in (spec.mixer, spec.ffn):
            section = SLOT_SECTIONS.get(slot)
            if section is not None and getattr(cfg, section) is None:
                raise ConfigError(f"{section}: layer {i} uses {slot!r} but the {section} section is not set")
    if a.head_dim is None and a.mla is None:  # MLA's head sizes live in attention.mla
        check(
            cfg.d_model % a.heads == 0,
            "attention.head_dim",
            f"d_model ({cfg.d_model}) is not divisible by attention.heads ({a.heads}){where}; set attention.head_dim explicitly",
        )
    d = a.dim(cfg.d_model)
    from archlab.position.base import check_position_sizes

    check_position_sizes(cfg.position, n_heads=a.heads, head_dim=d, d_model=cfg.d_model)
    if cfg.position.kind == "rope":
        rot = int(d * cfg.position.rotary_fraction)
        check(rot >= 2, "position.rotary_fraction", f"leaves {rot} rotary dims of head_dim {d}{where}; need at least 2")
    if cfg.position.max_positions is None and cfg.position.kind == "learned":
        raise ConfigError(f"position.max_positions: learned positions need a table size{where}")

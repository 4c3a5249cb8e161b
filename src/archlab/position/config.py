"""Positional-encoding configs: one ``kind`` per school, RoPE scaling as its own section.

Every RoPE scaling field changes only non-persistent buffers (frequencies) and a float
(the attention factor), so a trained model can be rebuilt with another scaling and the
same ``state_dict``: ``cfg.replace(**{"position.scaling.kind": "yarn", "position.scaling.factor": 4})``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from archlab.configbase import Config
from archlab.errors import check

PositionKind = Literal["none", "sinusoidal", "learned", "t5", "rope", "alibi"]
ScalingKind = Literal["none", "linear", "ntk", "dynamic", "yarn", "llama3", "longrope"]

#: scaling kinds whose formula needs the context length the model was trained at
NEEDS_ORIGINAL = ("dynamic", "yarn", "llama3", "longrope")


@dataclass(frozen=True)
class RopeScalingConfig(Config):
    _section = "position.scaling"
    """Context extension applied to RoPE frequencies at inference (or training) time.

    none: trained frequencies. linear: position interpolation (Chen et al. 2023).
    ntk: NTK-aware base scaling (bloc97 2023). dynamic: NTK with a factor that follows
    the current length (emozilla 2023). yarn: per-frequency ramp plus attention
    temperature (Peng et al. 2023). llama3: Llama-3.1 low/high-frequency rule.
    longrope: per-dimension rescale factors (Ding et al. 2024, Phi-3).
    """

    kind: ScalingKind = "none"  # which extension trick; "none" keeps the trained frequencies
    factor: float = 1.0  # target context / original context
    original_max_positions: int | None = None  # trained context; None = position.max_positions
    low_freq_factor: float = 1.0  # llama3: wavelengths above original/low_freq_factor are interpolated
    high_freq_factor: float = 4.0  # llama3: wavelengths below original/high_freq_factor are kept
    beta_fast: float = 32.0  # yarn: dims turning more than this many times over the context are kept
    beta_slow: float = 1.0  # yarn: dims turning fewer times than this are fully interpolated
    truncate: bool = True  # yarn: round the ramp's ends to whole dims (floor/ceil) as the authors' code
    mscale: float | None = None  # yarn (DeepSeek): numerator coefficient of the attention factor
    mscale_all_dim: float | None = None  # yarn (DeepSeek): denominator coefficient; also the softmax-scale term
    attention_factor: float | None = None  # yarn/longrope: cos/sin multiplier; None = the paper's default
    short_factor: tuple[float, ...] | None = None  # longrope: per-frequency divisors for short contexts
    long_factor: tuple[float, ...] | None = None  # longrope: per-frequency divisors for long contexts
    longrope_select: Literal["long", "short", "by_length"] = "long"  # longrope: fixed set (cache-exact) or switch past original as Phi-3

    def __post_init__(self) -> None:
        p = "position.scaling"
        check(self.factor >= 1.0, f"{p}.factor", f"must be >= 1, got {self.factor}")
        check(
            self.kind != "none" or self.factor == 1.0,
            f"{p}.factor",
            f"{self.factor} has no effect with scaling kind 'none'; pick a scaling kind or set factor to 1",
        )
        check(
            self.original_max_positions is None or self.original_max_positions > 0,
            f"{p}.original_max_positions",
            "must be a positive integer or null",
        )
        check(self.low_freq_factor > 0, f"{p}.low_freq_factor", f"must be > 0, got {self.low_freq_factor}")
        check(
            self.high_freq_factor > self.low_freq_factor,
            f"{p}.high_freq_factor",
            f"must be > low_freq_factor ({self.low_freq_factor}), got {self.high_freq_factor}",
        )
        check(self.beta_slow > 0, f"{p}.beta_slow", f"must be > 0, got {self.beta_slow}")
        check(
            self.beta_fast > self.beta_slow,
            f"{p}.beta_fast",
            f"must be > beta_slow ({self.beta_slow}), got {self.beta_fast}",
        )
        for name in ("mscale", "mscale_all_dim"):
            value = getattr(self, name)
            check(value is None or self.kind == "yarn", f"{p}.{name}", f"only used by kind 'yarn', got kind {self.kind!r}")
            check(value is None or value >= 0, f"{p}.{name}", f"must be >= 0 or null, got {value}")
        check(
            self.attention_factor is None or self.kind in ("yarn", "longrope"),
            f"{p}.attention_factor",
            f"only used by kinds 'yarn' and 'longrope', got kind {self.kind!r}",
        )
        check(
            self.attention_factor is None or self.attention_factor > 0,
            f"{p}.attention_factor",
            f"must be > 0 or null, got {self.attention_factor}",
        )
        for name in ("short_factor", "long_factor"):
            value = getattr(self, name)
            if self.kind == "longrope":
                check(value is not None and len(value) > 0, f"{p}.{name}", "required by kind 'longrope': one divisor per rotary frequency")
                check(all(v > 0 for v in value), f"{p}.{name}", "every entry must be > 0")
            else:
                check(value is None, f"{p}.{name}", f"only used by kind 'longrope', got kind {self.kind!r}")
        if self.kind == "longrope":
            check(
                len(self.short_factor) == len(self.long_factor),  # type: ignore[arg-type]
                f"{p}.long_factor",
                f"must have as many entries as short_factor ({len(self.short_factor)}), got {len(self.long_factor)}",  # type: ignore[arg-type]
            )


@dataclass(frozen=True)
class PositionConfig(Config):
    _section = "position"
    """How token order enters the model."""

    kind: PositionKind = "rope"  # none (NoPE), sinusoidal/learned (added to embeddings), t5/alibi (logit bias), rope (rotation)
    theta: float = 10000.0  # RoPE and sinusoidal base: larger = longer wavelengths
    rotary_fraction: float = 1.0  # share of each head's dims that rotate (GPT-NeoX: 0.25)
    interleaved: bool = False  # rotate adjacent pairs (GPT-J) instead of the two halves (Llama/NeoX)
    max_positions: int | None = None  # learned: hard table size; rope: trained context (scaling default); None = unbounded
    num_buckets: int = 32  # t5: relative-distance buckets, half exact and half log-spaced
    max_distance: int = 128  # t5: distances at or beyond this share the last bucket
    shared_across_layers: bool = True  # t5: one bias table for all layers (T5) or one per layer
    scaling: RopeScalingConfig = field(default_factory=RopeScalingConfig)  # context extension (rope only)

    def __post_init__(self) -> None:
        check(self.theta > 0, "position.theta", f"must be > 0, got {self.theta}")
        check(0.0 < self.rotary_fraction <= 1.0, "position.rotary_fraction", f"must be in (0, 1], got {self.rotary_fraction}")
        check(
            self.max_positions is None or self.max_positions > 0,
            "position.max_positions",
            f"must be a positive integer or null, got {self.max_positions}",
        )
        check(
            self.kind != "learned" or self.max_positions is not None,
            "position.max_positions",
            "required by kind 'learned' (the size of the position table)",
        )
        check(self.num_buckets >= 2, "position.num_buckets", f"must be >= 2, got {self.num_buckets}")
        check(
            self.max_distance > self.num_buckets // 2,
            "position.max_distance",
            f"must exceed num_buckets // 2 = {self.num_buckets // 2} (the exact buckets), got {self.max_distance}",
        )
        s = self.scaling
        check(
            s.kind == "none" or self.kind == "rope",
            "position.scaling.kind",
            f"RoPE scaling needs position.kind 'rope', got position.kind {self.kind!r}; use 'none'",
        )
        check(
            s.kind not in NEEDS_ORIGINAL or self.original_max_positions is not None,
            "position.scaling.original_max_positions",
            f"required by scaling kind {s.kind!r} (the context length the model was trained at); "
            "set it or position.max_positions",
        )

    @property
    def original_max_positions(self) -> int | None:
        """The trained context that scaling extends: the scaling field, else ``max_positions``."""
        if self.scaling.original_max_positions is not None:
            return self.scaling.original_max_positions
        return self.max_positions

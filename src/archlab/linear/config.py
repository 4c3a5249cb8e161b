"""Linear-attention token-mixer config (one ``kind`` per published mixer)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from archlab.configbase import Config
from archlab.errors import check

Kind = Literal["linear", "retention", "gla", "deltanet", "gated_deltanet", "based"]
FeatureMapKind = Literal["elu+1", "relu", "performer", "cosformer", "hedgehog", "taylor"]
Form = Literal["auto", "parallel", "chunk", "chunk_compiled", "recurrent", "triton"]
TRITON_KINDS = ("linear", "gla", "based", "retention")  # the kinds whose ops have a Triton form

# what each kind uses when output_norm / output_gate / conv_size are left at None (its paper's choice)
KIND_DEFAULTS: dict[str, dict[str, object]] = {
    "linear": {"output_norm": "none", "output_gate": "none", "conv_size": 0},
    "retention": {"output_norm": "layer", "output_gate": "swish", "conv_size": 0},
    "gla": {"output_norm": "rms", "output_gate": "swish", "conv_size": 0},
    "deltanet": {"output_norm": "rms", "output_gate": "none", "conv_size": 4},
    "gated_deltanet": {"output_norm": "rms", "output_gate": "swish", "conv_size": 4},
    "based": {"output_norm": "none", "output_gate": "none", "conv_size": 0},
}


@dataclass(frozen=True)
class FeatureMapConfig(Config):
    _section = "linear.feature_map"
    kind: FeatureMapKind = "elu+1"  # phi applied to q and k (kind="linear"; "based" always uses taylor)
    performer_features: int = 64  # FAVOR+ random feature count m (the state has m rows)
    performer_redraw: Literal["fixed", "every_forward"] = "fixed"  # redraw the random projection on each training forward, or keep the one drawn at init
    cosformer_max_len: int = 4096  # M in cos(pi/2 * (i - j) / M); every position must stay below it

    def __post_init__(self) -> None:
        check(self.performer_features > 0, "linear.feature_map.performer_features", f"must be positive, got {self.performer_features}")
        check(self.cosformer_max_len > 0, "linear.feature_map.cosformer_max_len", f"must be positive, got {self.cosformer_max_len}")


@dataclass(frozen=True)
class LinearAttentionConfig(Config):
    _section = "linear"
    kind: Kind = "linear"  # the mixer: feature-map linear attention, RetNet, GLA, DeltaNet, Gated DeltaNet, Based
    heads: int = 4  # number of heads (value heads, each with its own state)
    key_heads: int | None = None  # q/k heads, each serving heads/key_heads consecutive value heads (Qwen3-Next); None = heads
    head_dim: int | None = None  # q/k width per head before the feature map; None = d_model // heads (16 for based/taylor, Based's feature dim)
    value_head_dim: int | None = None  # v width per head; None = d_model // heads
    feature_map: FeatureMapConfig = field(default_factory=FeatureMapConfig)  # phi for kind="linear"
    normalize: bool = True  # divide by the normaliser q . sum(k) (kind="linear" and "based"; the gated kinds use output_norm instead)
    output_norm: Literal["none", "rms", "layer"] | None = None  # per-head norm of the mixer output; None = the kind's paper (rms: GLA/DeltaNet; layer: RetNet's group norm)
    output_gate: Literal["none", "swish"] | None = None  # output * swish(x W_g); None = the kind's paper (RetNet, GLA, Gated DeltaNet)
    conv_size: int | None = None  # short causal depthwise conv on q/k/v (0 = none); None = the kind's paper (4 for DeltaNets)
    gate_low_rank: int = 16  # GLA: rank of the data-dependent gate projection
    gate_normalizer: float = 16.0  # GLA: log gate = logsigmoid(.) / gate_normalizer
    window: int = 64  # based: sliding-window softmax span (the decode cache keeps this many slots)
    chunk_size: int = 64  # chunk length of the chunkwise (training/prefill) form
    # auto: triton on CUDA for the kinds that have it (TRITON_KINDS) when the chunk size is one the kernels
    # take, chunk_compiled for the other kinds, chunk on CPU, recurrent for one-token cached steps (logged once)
    form: Form = "auto"
    norm_eps: float = 1e-5  # epsilon of the output norms
    eps: float = 1e-6  # added to the normaliser

    def __post_init__(self) -> None:
        check(self.heads > 0, "linear.heads", f"must be a positive integer, got {self.heads}")
        if self.key_heads is not None:
            check(self.key_heads > 0 and self.heads % self.key_heads == 0, "linear.key_heads",
                  f"must divide heads ({self.heads}); accepted: {', '.join(str(d) for d in range(1, self.heads + 1) if self.heads % d == 0)} or null")
        for name in ("head_dim", "value_head_dim"):
            val = getattr(self, name)
            check(val is None or val > 0, f"linear.{name}", f"must be a positive integer or null, got {val}")
        check(self.conv_size is None or self.conv_size >= 0, "linear.conv_size", f"must be >= 0 (0 = no conv) or null, got {self.conv_size}")
        check(self.conv_size != 1, "linear.conv_size", "1 is a per-channel scale, not a convolution; use 0 (none) or >= 2")
        check(self.form != "triton" or self.kind in TRITON_KINDS, "linear.form",
              f"'triton' exists for kinds {', '.join(TRITON_KINDS)}, not {self.kind!r}; use auto, chunk or chunk_compiled")
        check(self.gate_low_rank > 0, "linear.gate_low_rank", f"must be positive, got {self.gate_low_rank}")
        check(self.gate_normalizer > 0, "linear.gate_normalizer", f"must be positive, got {self.gate_normalizer}")
        check(self.window > 0, "linear.window", f"must be positive, got {self.window}")
        check(self.chunk_size > 0, "linear.chunk_size", f"must be positive, got {self.chunk_size}")
        check(self.norm_eps > 0, "linear.norm_eps", f"must be positive, got {self.norm_eps}")
        check(self.eps >= 0, "linear.eps", f"must be >= 0, got {self.eps}")

    def resolved(self, name: str):
        """output_norm / output_gate / conv_size with None replaced by the kind's default."""
        val = getattr(self, name)
        return KIND_DEFAULTS[self.kind][name] if val is None else val

"""Positional encodings: one registry (``position.kind``), components register on import.

none (NoPE), sinusoidal and learned (added to embeddings), t5 and alibi (attention-logit
bias), rope (rotation of q/k, with ``position.scaling`` for context extension).
"""
from archlab.position.base import (
    POSITION,
    PositionEncoding,
    PositionOutOfRangeError,
    build_position,
    check_position_sizes,
    position_params,
)
from archlab.position.config import PositionConfig, RopeScalingConfig
from archlab.position import absolute, alibi, rope, t5_bias  # noqa: F401  (register their kinds)
from archlab.position.rope_scaling import scaled_inv_freq, yarn_get_mscale, yarn_softmax_scale_multiplier

__all__ = [
    "POSITION",
    "PositionConfig",
    "PositionEncoding",
    "PositionOutOfRangeError",
    "RopeScalingConfig",
    "build_position",
    "check_position_sizes",
    "position_params",
    "scaled_inv_freq",
    "yarn_get_mscale",
    "yarn_softmax_scale_multiplier",
]

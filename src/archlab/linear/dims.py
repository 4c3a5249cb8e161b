"""Per-head widths of a linear-attention mixer, resolved from its config and d_model."""
from __future__ import annotations

from dataclasses import dataclass

from archlab.errors import ConfigError

from .config import LinearAttentionConfig


@dataclass(frozen=True)
class Dims:
    heads: int  # H (value heads)
    k_heads: int  # q/k heads (Hk); each serves H / Hk consecutive value heads
    qk: int  # q/k width per head before the feature map (Dk)
    v: int  # value width per head (Dv)
    feat: int  # state rows per head: the feature-mapped q/k width (Df)
    conv: int  # short-conv kernel size (0 = none)
    conv_channels: int  # channels the short conv runs over (q, k and v projections)


def taylor_features(d: int) -> int:
    """1 + d + d^2: constant, linear and all second-order terms (Based's Taylor map)."""
    return 1 + d + d * d


def feature_dim(cfg: LinearAttentionConfig, qk: int) -> int:
    if cfg.kind == "based":
        return taylor_features(qk)
    if cfg.kind != "linear":
        return qk
    fm = cfg.feature_map.kind
    if fm in ("elu+1", "relu"):
        return qk
    if fm == "performer":
        return cfg.feature_map.performer_features
    if fm in ("cosformer", "hedgehog"):
        return 2 * qk
    return taylor_features(qk)  # taylor


def dims(cfg: LinearAttentionConfig, d_model: int) -> Dims:
    H = cfg.heads
    if (cfg.head_dim is None or cfg.value_head_dim is None) and d_model % H:
        raise ConfigError(
            f"linear.heads: d_model ({d_model}) is not divisible by heads ({H}); "
            f"choose heads from {[h for h in range(1, min(d_model, 64) + 1) if d_model % h == 0]} or set head_dim and value_head_dim"
        )
    uses_taylor = cfg.kind == "based" or (cfg.kind == "linear" and cfg.feature_map.kind == "taylor")
    qk = cfg.head_dim if cfg.head_dim is not None else (16 if uses_taylor else d_model // H)
    v = cfg.value_head_dim if cfg.value_head_dim is not None else d_model // H
    conv = int(cfg.resolved("conv_size"))
    Hk = cfg.key_heads or H
    return Dims(heads=H, k_heads=Hk, qk=qk, v=v, feat=feature_dim(cfg, qk), conv=conv,
                conv_channels=(2 * Hk * qk + H * v) if conv else 0)

"""The seam every positional encoding plugs into.

A position module may add vectors to the token embeddings (absolute schools), rotate
queries and keys (RoPE), and/or add a bias to attention logits (ALiBi, T5). Attention
calls ``rotate`` on the new tokens before they enter the cache, and ``bias`` with the
query positions and the positions of the keys it attends to (which, with a ring-buffer
cache, are not a contiguous range).

Shapes: B batch, H heads, T new tokens, S keys attended, D head dim, C model width.
"""
from __future__ import annotations

import torch
from torch import nn

from archlab.position.config import PositionConfig
from archlab.registry import Registry

POSITION: Registry[type["PositionEncoding"]] = Registry("position.kind")


class PositionOutOfRangeError(ValueError):
    """Positions the encoding cannot represent (a learned table past ``max_positions``)."""


class PositionEncoding(nn.Module):
    """Default behaviour: no position information (NoPE)."""

    #: one module for all layers (True) or one per layer (e.g. T5 bias not shared)
    shared: bool = True

    def __init__(self, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.d_model = d_model

    @classmethod
    def params(cls, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> int:
        """Parameters the module holds, computed without building it."""
        return 0

    @classmethod
    def check_sizes(cls, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> None:
        """Raise ConfigError if ``cfg`` conflicts with the model's sizes (e.g. LongRoPE factor
        counts vs the rotary width). Config validation calls it so errors come before building."""

    @classmethod
    def is_shared(cls, cfg: PositionConfig) -> bool:
        return cls.shared

    def embed(self, positions: torch.Tensor) -> torch.Tensor | None:
        """[B, T] -> [B, T, C] added to the token embeddings, or None."""
        return None

    def rotate(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q [B, H, T, D], k [B, Hkv, T, D] at positions [B, T] -> rotated q, k."""
        return q, k

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor | None:
        """q_pos [B, T], k_pos [B, S] -> additive logit bias [B, H, T, S], or None."""
        return None

    def score_mod(self, offset: int):
        """For flex_attention: ``f(score, b, h, q_idx, kv_idx) -> score`` adding this encoding's
        bias for query position ``q_idx + offset`` and key position ``kv_idx``; None when the
        encoding has no bias (or cannot express it elementwise)."""
        return None

    def check_positions(self, positions: torch.Tensor) -> None:
        """Raise a clear error for positions the encoding cannot represent."""


@POSITION.register("none")
class NoPE(PositionEncoding):
    """No positional encoding (Kazemnejad et al. 2023): causal masking alone carries order."""


def build_position(cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> PositionEncoding:
    return POSITION.get(cfg.kind)(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)


def check_position_sizes(cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> None:
    POSITION.get(cfg.kind).check_sizes(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)


def position_params(cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> int:
    return POSITION.get(cfg.kind).params(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)

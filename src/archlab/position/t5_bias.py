"""T5 relative position bias (Raffel et al. 2020, sec. 2.1), causal (decoder) form.

Each head learns one scalar per bucket of the distance n = max(i - j, 0) from query i back
to key j. With N buckets and E = N // 2, the first E buckets are exact and the rest are
log-spaced up to ``max_distance``; farther distances share the last bucket:
    bucket(n) = n                                                        if n < E
              = min(N - 1, E + floor(ln(n / E) / ln(max_distance / E) * (N - E)))  otherwise T5 shares one table across layers (computed in
the first layer); ``shared_across_layers=False`` gives each layer its own table.
Keys after the query fall in bucket 0 but are masked by attention.

Shapes: B batch, H heads, T queries, S keys, N buckets.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from archlab.position.base import POSITION, PositionEncoding
from archlab.position.config import PositionConfig


def t5_bucket(q_pos: torch.Tensor, k_pos: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """q_pos [B, T], k_pos [B, S] -> bucket ids [B, T, S] int64 in [0, num_buckets)."""
    return bucket_of_distance(q_pos[:, :, None] - k_pos[:, None, :], num_buckets, max_distance)  # [B, T, S]


def bucket_of_distance(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Elementwise: query position minus key position (any shape) -> bucket ids, int64."""
    n = rel.clamp(min=0)  # distance into the past; future keys share bucket 0 (masked anyway)
    max_exact = num_buckets // 2
    # float32 in T5's order of operations, so bucket edges match T5 checkpoints exactly
    # n = 0 would give log(0); it is an exact bucket, so clamping it changes nothing selected
    log_ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).to(torch.long)
    large = large.clamp(max=num_buckets - 1)
    return torch.where(n < max_exact, n, large)


@POSITION.register("t5")
class T5Bias(PositionEncoding):
    """Learned per-head scalar per distance bucket: ``weight`` [N, H] (T5 name: relative_attention_bias)."""

    def __init__(self, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int):
        super().__init__(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)
        self.weight = nn.Parameter(torch.empty(cfg.num_buckets, n_heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    @classmethod
    def params(cls, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> int:
        return cfg.num_buckets * n_heads

    @classmethod
    def is_shared(cls, cfg: PositionConfig) -> bool:
        return cfg.shared_across_layers

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        b = t5_bucket(q_pos, k_pos, self.cfg.num_buckets, self.cfg.max_distance)  # [B, T, S]
        return self.weight[b].permute(0, 3, 1, 2)  # [B, T, S, H] -> [B, H, T, S]

    def score_mod(self, offset: int):
        weight, nb, md = self.weight, self.cfg.num_buckets, self.cfg.max_distance

        def t5_mod(score, b, h, q_idx, kv_idx):
            return score + weight[bucket_of_distance(q_idx + offset - kv_idx, nb, md), h]

        return t5_mod

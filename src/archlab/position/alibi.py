"""ALiBi: attention with linear biases (Press et al. 2022, "Train Short, Test Long").

Head h adds ``-m_h * (i - j)`` to the logit of query position i on key position j (the
causal form; keys after the query are masked by attention anyway). For H a power of two the
slopes are the geometric sequence starting at and with ratio 2^(-8/H). Otherwise the paper's
rule: take the slopes for the largest power of two H' < H, then every other slope of the
2H' sequence for the remaining H - H' heads.

The bias is a function of positions only, so a ring-buffer cache (keys not contiguous) works.
BLOOM's ``build_alibi_tensor`` adds ``m_h * j`` instead: it differs by ``m_h * i``, a constant
per query row that softmax ignores.

Shapes: B batch, H heads, T queries, S keys.
"""
from __future__ import annotations

import math

import torch

from archlab.position.base import POSITION, PositionEncoding
from archlab.position.config import PositionConfig


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes m_h [H], float64, from the paper's rule."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    if n_heads & (n_heads - 1) == 0:
        slopes = power_of_two(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


@POSITION.register("alibi")
class ALiBi(PositionEncoding):
    """No parameters; ``slopes`` is a non-persistent buffer (flex_attention can read it)."""

    def __init__(self, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int):
        super().__init__(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)
        self.register_buffer("slopes", alibi_slopes(n_heads).to(torch.float32), persistent=False)

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        rel = (k_pos[:, None, :] - q_pos[:, :, None]).to(torch.float32)  # [B, T, S]: j - i, <= 0 for the past
        return self.slopes[None, :, None, None] * rel[:, None]  # [B, H, T, S]

    def score_mod(self, offset: int):
        slopes = self.slopes

        def alibi_mod(score, b, h, q_idx, kv_idx):
            return score + slopes[h] * (kv_idx - (q_idx + offset))

        return alibi_mod

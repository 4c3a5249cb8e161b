"""Absolute positions added to the token embeddings: sinusoidal and learned tables.

Sinusoidal (Vaswani et al. 2017, "Attention Is All You Need", sec. 3.5):
    PE(pos, 2i) = sin(pos / base^(2i / C)),  PE(pos, 2i + 1) = cos(pos / base^(2i / C)).
Learned (GPT/GPT-2, BERT): a trained table of ``max_positions`` vectors; positions at or
past the table raise ``PositionOutOfRangeError`` (never a clamp or an index error).
The paper's sqrt(C) scaling of token embeddings belongs to the model's embedding, not here.

Shapes: B batch, T tokens, C model width.
"""
from __future__ import annotations

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.position.base import POSITION, PositionEncoding, PositionOutOfRangeError
from archlab.position.config import PositionConfig


def _capturing() -> bool:
    return torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def check_nonnegative(positions: torch.Tensor, kind: str) -> None:
    if positions.numel() and int(positions.min()) < 0:
        raise PositionOutOfRangeError(f"position.kind={kind!r}: positions must be >= 0, got {int(positions.min())}")


def sinusoidal_table(positions: torch.Tensor, d_model: int, base: float) -> torch.Tensor:
    """positions [B, T] -> [B, T, C] float32, sin on even dims and cos on odd dims.

    An odd C keeps the formula: its last dim is the sin of frequency (C - 1) / 2.
    """
    inv = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64, device=positions.device) / d_model)  # [ceil(C/2)]
    ang = positions.to(torch.float64)[..., None] * inv  # [B, T, ceil(C/2)]
    # stack then flatten interleaves: (sin_0, cos_0, sin_1, cos_1, ...)
    table = torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(-2)  # [B, T, 2 ceil(C/2)]
    return table[..., :d_model].to(torch.float32)  # [B, T, C]


@POSITION.register("sinusoidal")
class Sinusoidal(PositionEncoding):
    """Fixed sinusoids added to the embeddings; no parameters, no length limit."""

    def check_positions(self, positions: torch.Tensor) -> None:
        check_nonnegative(positions, "sinusoidal")

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        return sinusoidal_table(positions, self.d_model, self.cfg.theta)


@POSITION.register("learned")
class LearnedAbsolute(PositionEncoding):
    """A trained [max_positions, C] table (GPT-2 init: normal, std 0.02)."""

    def __init__(self, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int):
        super().__init__(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)
        if cfg.max_positions is None:  # PositionConfig already refuses this; kept for direct construction
            raise ConfigError("position.max_positions: required by kind 'learned' (the size of the position table)")
        self.max_positions = cfg.max_positions
        self.weight = nn.Parameter(torch.empty(cfg.max_positions, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    @classmethod
    def params(cls, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> int:
        return (cfg.max_positions or 0) * d_model

    def check_positions(self, positions: torch.Tensor) -> None:
        check_nonnegative(positions, "learned")
        if positions.numel() and int(positions.max()) >= self.max_positions:
            raise PositionOutOfRangeError(
                f"position.max_positions: the learned table holds positions 0..{self.max_positions - 1}, "
                f"got position {int(positions.max())}; use a shorter input or a model with a larger "
                "position.max_positions (a learned table cannot extrapolate)"
            )

    def embed(self, positions: torch.Tensor) -> torch.Tensor:
        if not _capturing():  # the check syncs with the host: not allowed while compiling or capturing a graph
            self.check_positions(positions)
        return self.weight[positions]  # [B, T, C]

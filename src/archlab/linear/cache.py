"""Decode cache of the linear-attention mixers: fixed size, independent of the length."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from archlab.errors import CacheOverflowError


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """Recurrent states accumulate over every step, so they are kept in float32 (float64
    for float64 models) whatever the model dtype; conv and window buffers use the model dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class LinearAttentionCache:
    """Tensors a linear-attention mixer carries between calls (updated in place).

    state: [B, H, Df, Dv] the recurrent state; normalizer: [B, H, Df] running sum of keys
    (normalised kinds); conv: [B, Ch, K-1] last K-1 inputs of the short conv; window_k,
    window_v: [B, H, W, Dv] ring buffers of the sliding-window branch (based), slot = pos % W.
    """

    state: Tensor
    normalizer: Tensor | None
    conv: Tensor | None
    window_k: Tensor | None
    window_v: Tensor | None
    max_len: int
    seen: int = 0  # tokens already processed (the ring buffer's write position)
    offsets: Tensor | None = None  # [B] left-padding tokens per row (None: no padding)

    def set_padding(self, offsets: Tensor) -> None:
        """The mixer keeps pads out of the state; the window branch hides ring slots before ``offsets``."""
        self.offsets = offsets

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.state, self.normalizer, self.conv, self.window_k, self.window_v) if t is not None]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def reset(self) -> None:
        for t in self.tensors():
            t.zero_()
        self.seen = 0
        self.offsets = None

    def check_room(self, n_new: int) -> None:
        if self.seen + n_new > self.max_len:
            raise CacheOverflowError(
                f"cache: {self.seen} cached + {n_new} new tokens exceed max_len={self.max_len}; "
                f"create the cache with max_len >= {self.seen + n_new}"
            )

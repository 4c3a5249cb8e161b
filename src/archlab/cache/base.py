"""The model-level cache: one typed per-layer cache per block, and the shared token count.

Per-layer caches implement :class:`LayerCache`; mixers update them in place during forward.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch

from archlab.errors import CacheOverflowError


class LayerCache(Protocol):
    def nbytes(self) -> int: ...

    def reset(self) -> None: ...

    def set_padding(self, offsets: torch.Tensor) -> None: ...


def tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class ModelCache:
    """What ``model.new_cache`` returns: per-layer caches plus the number of tokens seen."""

    def __init__(self, layers: Sequence[LayerCache | None], *, batch_size: int, max_len: int):
        self.layers = list(layers)
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0  # tokens already processed; new tokens get positions length, length+1, ...
        self.static = False  # static mode: the caller passes positions; no host-side bookkeeping
        # left padding: [B] pad tokens before each row's first real token (None = no padding)
        self.offsets: torch.Tensor | None = None

    def make_static(self) -> None:
        """Fixed shapes and no host synchronisation per step, so a decode step can be captured
        in a CUDA graph. Every per-layer cache must support it."""
        for i, c in enumerate(self.layers):
            if c is not None and not hasattr(c, "make_static"):
                raise ValueError(f"cache: layer {i} ({type(c).__name__}) has no static mode; "
                                 "static decoding supports full KV caches")
            if c is not None:
                c.make_static()
        self.static = True

    def set_padding(self, offsets: torch.Tensor) -> None:
        """Record left padding before the first tokens enter the cache: row b's first
        ``offsets[b]`` slots hold pad tokens. Its real tokens then take positions 0, 1, ... and
        every layer hides the pad slots (attention) or keeps them out of its state (recurrences)."""
        if self.length:
            raise ValueError(f"attention_mask: padding can only start an empty cache; this one holds {self.length} "
                             "tokens (pass later tokens without padding)")
        for i, c in enumerate(self.layers):
            if c is not None and not hasattr(c, "set_padding"):
                raise ValueError(f"attention_mask: layer {i} ({type(c).__name__}) does not support padded batches")
        for c in self.layers:
            if c is not None:
                c.set_padding(offsets)
        self.offsets = offsets

    def positions(self, batch_size: int, n_new: int, device: torch.device) -> torch.Tensor:
        """Absolute positions [B, T] of the next n_new tokens (per row when padded: the pad
        count subtracted, so pads get negative positions); checks room and batch size."""
        if batch_size != self.batch_size:
            raise ValueError(f"input_ids: batch size {batch_size} does not match the cache's batch_size {self.batch_size}")
        if self.length + n_new > self.max_len:
            raise CacheOverflowError(
                f"cache: {self.length} cached + {n_new} new tokens exceed max_len={self.max_len}; "
                f"create the cache with model.new_cache(batch_size, max_len >= {self.length + n_new})"
            )
        pos = torch.arange(self.length, self.length + n_new, device=device)
        if self.offsets is not None:
            return pos[None] - self.offsets[:, None]  # [B, T]
        return pos.expand(batch_size, n_new)

    def advance(self, n_new: int) -> None:
        self.length += n_new

    def nbytes(self) -> int:
        """Bytes of all tensors the per-layer caches hold."""
        return sum(c.nbytes() for c in self.layers if c is not None)

    def reset(self) -> None:
        for c in self.layers:
            if c is not None:
                c.reset()
        self.length = 0
        self.offsets = None

    def __len__(self) -> int:
        return self.length

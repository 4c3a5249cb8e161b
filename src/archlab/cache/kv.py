"""Full key/value cache: preallocated [B, Hkv, max_len, D] tensors, filled left to right.

Shapes: B batch, Hkv key/value heads, L max_len, T new tokens, D head dim.
"""
from __future__ import annotations

import torch

from archlab.cache.base import tensor_bytes


class KVCache:
    def __init__(self, batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None = None, *,
                 dtype: torch.dtype, device: torch.device | str | None = None):
        self.k = torch.zeros(batch_size, kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros(batch_size, kv_heads, max_len, v_dim or head_dim, dtype=dtype, device=device)
        self.length = 0
        self.static = False  # static mode: writes go to the given positions, reads cover all slots
        self.slot_pos: torch.Tensor | None = None
        self.offsets: torch.Tensor | None = None  # [B] left-padding slots per row (None: no padding)

    def set_padding(self, offsets: torch.Tensor) -> None:
        """Row b's first ``offsets[b]`` slots hold pads: slot s then holds position s - offsets[b]
        (negative for pads, which attention hides from real queries)."""
        self.offsets = offsets
        if self.static:
            self.slot_pos = self._slot_positions()

    def _slot_positions(self) -> torch.Tensor:
        B, _, L, _ = self.k.shape
        slots = torch.arange(L, device=self.k.device)
        return slots.expand(B, L) if self.offsets is None else slots[None] - self.offsets[:, None]  # [B, L]

    def make_static(self) -> None:
        """Switch to static mode (for CUDA graphs): no host-side length, fixed shapes every step.
        Each update writes at the positions it is given and returns every slot; slots not yet
        written hold positions beyond any query, so the causal mask hides them."""
        self.static = True
        self.slot_pos = self._slot_positions()

    def update(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append k/v [B, Hkv, T, D]; return all cached k, v [B, Hkv, S, D] and their positions [B, S]."""
        if self.static:
            # [T]: rows share slots in static mode (padded rows: slot = position + pad count)
            idx = positions[0] if self.offsets is None else positions[0] + self.offsets[0]
            self.k.index_copy_(2, idx, k.to(self.k.dtype))
            self.v.index_copy_(2, idx, v.to(self.v.dtype))
            return self.k, self.v, self.slot_pos
        start, end = self.length, self.length + k.shape[2]
        self.k[:, :, start:end] = k.to(self.k.dtype)
        self.v[:, :, start:end] = v.to(self.v.dtype)
        self.length = end
        k_pos = torch.arange(end, device=k.device).expand(k.shape[0], end)
        if self.offsets is not None:
            k_pos = k_pos - self.offsets[:, None]  # [B, S]: pads at negative positions
        # a cache stored in another dtype than the model's is read back in the model's
        return self.k[:, :, :end].to(k.dtype), self.v[:, :, :end].to(v.dtype), k_pos

    def nbytes(self) -> int:
        return tensor_bytes(self.k, self.v)

    def reset(self) -> None:
        self.length = 0
        self.offsets = None
        if self.static:
            self.slot_pos = self._slot_positions()

    @staticmethod
    def bytes_for(batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None, elem: int) -> int:
        return batch_size * kv_heads * max_len * (head_dim + (v_dim or head_dim)) * elem

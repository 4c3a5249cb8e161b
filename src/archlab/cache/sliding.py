"""Bounded key/value cache for sliding-window attention: a ring buffer of W slots, plus S
sink slots that keep the first tokens forever (StreamingLLM). Memory stays constant however
long generation runs.

Position p is stored in slot p if p < S, else in slot S + (p - S) mod W. A query at
position q sees keys q-W+1..q (and the sinks), so the W most recent positions suffice.
The cache allocates min(max_len, S + W) slots: shorter requests never wrap.

Left-padded batches (``set_padding``): rows then differ in how many real tokens they hold,
so each row places its real position p (pads are never stored) by the same rule, the
position held by every slot is kept per row (-1 while empty, hidden by attention like a
pad), and attention reads all slots. Windows and sinks so count real tokens only.

Shapes: B batch, Hkv key/value heads, N = slots, T new tokens, D head dim.
"""
from __future__ import annotations

import torch

from archlab.cache.base import tensor_bytes


class SlidingKVCache:
    def __init__(self, batch_size: int, kv_heads: int, max_len: int, head_dim: int, *, window: int, sinks: int = 0,
                 v_dim: int | None = None, dtype: torch.dtype, device=None):
        self.window, self.sinks = window, sinks
        n = self.slots(max_len, window, sinks)
        self.k = torch.zeros(batch_size, kv_heads, n, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros(batch_size, kv_heads, n, v_dim or head_dim, dtype=dtype, device=device)
        self.length = 0
        self.offsets: torch.Tensor | None = None  # [B] left-padding tokens per row (None: no padding)
        self.slot_pos: torch.Tensor | None = None  # [B, N] real position held by each slot, -1 = empty (padded mode)

    def set_padding(self, offsets: torch.Tensor) -> None:
        self.offsets = offsets
        self.slot_pos = torch.full((self.k.shape[0], self.k.shape[2]), -1, dtype=torch.long, device=self.k.device)

    @staticmethod
    def slots(max_len: int, window: int, sinks: int) -> int:
        return min(max_len, window + sinks)

    def _slot(self, pos: torch.Tensor) -> torch.Tensor:
        S, W = self.sinks, self.window
        return torch.where(pos < S, pos, S + (pos - S) % W)

    def held_positions(self, device) -> torch.Tensor:
        """Positions currently stored, ascending: the sinks, then the last W tokens."""
        L, S, W = self.length, self.sinks, self.window
        sink = torch.arange(min(L, S), device=device)
        start = max(S, L - W)
        recent = torch.arange(start, max(start, L), device=device)
        return torch.cat([sink, recent])

    def update(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend over what is held plus the new k/v [B, Hkv, T, D]; keep only what later queries need."""
        if self.offsets is not None:
            return self._update_padded(k, v, positions)
        B, T = k.shape[0], k.shape[2]
        old = self.held_positions(k.device)
        slots = self._slot(old)
        new = torch.arange(self.length, self.length + T, device=k.device)
        k_all = torch.cat([self.k[:, :, slots].to(k.dtype), k], dim=2)  # [B, Hkv, |old| + T, D]
        v_all = torch.cat([self.v[:, :, slots].to(v.dtype), v], dim=2)
        keep = (new < self.sinks) | (new >= self.length + T - self.window)
        idx = keep.nonzero().squeeze(-1) if not torch.compiler.is_compiling() else torch.arange(T, device=k.device)
        dst = self._slot(new[idx])
        self.k[:, :, dst] = k[:, :, idx].to(self.k.dtype)
        self.v[:, :, dst] = v[:, :, idx].to(self.v.dtype)
        self.length += T
        return k_all, v_all, torch.cat([old, new]).expand(B, -1)

    def _update_padded(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded rows: positions [B, T] are real positions (negative for pads); every slot is read."""
        B, T, N = k.shape[0], k.shape[2], self.k.shape[2]
        every = torch.arange(N, device=k.device)
        k_all = torch.cat([self.k[:, :, every].to(k.dtype), k], dim=2)  # [B, Hkv, N + T, D]: a copy, written below
        v_all = torch.cat([self.v[:, :, every].to(v.dtype), v], dim=2)
        pos_all = torch.cat([self.slot_pos, positions], dim=1)  # [B, N + T]
        dst = self._slot(positions.clamp(min=0))  # [B, T]
        if T == 1:  # a decode step: every row stores its (real) token, each in its own slot
            rows = torch.arange(B, device=k.device)
            self.k[rows, :, dst[:, 0]] = k[:, :, 0].to(self.k.dtype)  # [B, Hkv, D]
            self.v[rows, :, dst[:, 0]] = v[:, :, 0].to(self.v.dtype)
            self.slot_pos[rows, dst[:, 0]] = positions[:, 0]
        else:  # a prefill: rows keep different tokens (pads never; sinks and the last W real ones)
            last = positions[:, -1:]  # [B, 1]
            keep = (positions >= 0) & ((positions < self.sinks) | (positions > last - self.window))
            for b in range(B):
                idx = keep[b].nonzero().squeeze(-1)
                self.k[b:b + 1, :, dst[b, idx]] = k[b:b + 1, :, idx].to(self.k.dtype)
                self.v[b:b + 1, :, dst[b, idx]] = v[b:b + 1, :, idx].to(self.v.dtype)
                self.slot_pos[b, dst[b, idx]] = positions[b, idx]
        self.length += T
        return k_all, v_all, pos_all

    def nbytes(self) -> int:
        return tensor_bytes(self.k, self.v)

    def reset(self) -> None:
        self.length = 0
        self.offsets = self.slot_pos = None

    @staticmethod
    def bytes_for(batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None, elem: int, *,
                  window: int, sinks: int) -> int:
        n = SlidingKVCache.slots(max_len, window, sinks)
        return batch_size * kv_heads * n * (head_dim + (v_dim or head_dim)) * elem

"""Bounded key/value cache for sliding-window attention: a ring buffer of W slots, plus S
sink slots that keep the first tokens forever (StreamingLLM). Memory stays constant however
long generation runs.

Position p is stored in slot p if p < S, else in slot S + (p - S) mod W. A query at
position q sees keys q-W+1..q (and the sinks), so the W most recent positions suffice.
The cache allocates min(max_len, S + W) slots: shorter requests never wrap.

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

    def nbytes(self) -> int:
        return tensor_bytes(self.k, self.v)

    def reset(self) -> None:
        self.length = 0

    @staticmethod
    def bytes_for(batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None, elem: int, *,
                  window: int, sinks: int) -> int:
        n = SlidingKVCache.slots(max_len, window, sinks)
        return batch_size * kv_heads * n * (head_dim + (v_dim or head_dim)) * elem

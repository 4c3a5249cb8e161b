"""Which keys a query may see, as a function of absolute positions.

One rule serves every backend: the eager and SDPA paths evaluate it on position tensors
[B, T, S]; flex_attention evaluates it inside its kernel on scalar indices, building a
block mask so that fully masked tiles are skipped and no T x S matrix is materialised.

Patterns (one at a time):
- causal: k <= q.
- sliding window W (Mistral; Beltagy et al. 2020): q - k < W.
- attention sinks S (Xiao et al. 2023, StreamingLLM): a window, plus keys k < S always.
- block-sparse (Longformer/BigBird local + global): keys in the query's block or the
  previous block of size Bk, plus the first G "global" tokens, which also see everything
  before them (causally).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSpec:
    window: int | None = None
    sinks: int = 0
    block: int | None = None
    global_tokens: int = 0

    @property
    def is_causal_only(self) -> bool:
        return self.window is None and self.block is None

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Elementwise visibility for broadcastable position tensors q and k."""
        ok = k <= q
        if self.window is not None:
            near = (q - k) < self.window
            if self.sinks:
                near = near | (k < self.sinks)
            ok = ok & near
        elif self.block is not None:
            qb, kb = q // self.block, k // self.block
            near = (qb - kb) <= 1
            if self.global_tokens:
                near = near | (k < self.global_tokens) | (q < self.global_tokens)
            ok = ok & near
        return ok

    def visibility(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos [B, T], k_pos [B, S] -> bool [B, 1, T, S]."""
        return self.allowed(q_pos[:, :, None], k_pos[:, None, :])[:, None]

    def mean_keys(self, seq_len: int) -> float:
        """Mean number of visible keys per query over a causal sequence (for FLOP counts)."""
        if seq_len <= 4096:
            q = torch.arange(seq_len)
            return float(self.allowed(q[:, None], q[None, :]).sum()) / seq_len
        # large T: count per query analytically by sampling every position is O(T^2); use closed forms
        T = seq_len
        if self.window is not None:
            W = self.window
            base = (min(W, T) * (min(W, T) + 1) / 2 + max(T - W, 0) * W) / T
            extra = sum(max(0, min(self.sinks, q - W + 1)) for q in range(W, T)) / T if self.sinks else 0.0
            return base + extra
        if self.block is not None:
            Bk, G = self.block, self.global_tokens
            total = 0
            for q in range(T):
                if q < G:
                    total += q + 1
                    continue
                lo = max(0, (q // Bk - 1) * Bk)
                total += (q - lo + 1) + min(G, lo)
            return total / T
        return (T + 1) / 2

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

``padded`` (a batch with left padding, any pattern): pads sit at negative positions; real
queries see no pad and pads see only pads (so no softmax row is empty).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSpec:
    window: int | None = None
    sinks: int = 0
    block: int | None = None
    global_tokens: int = 0
    padded: bool = False

    @property
    def is_causal_only(self) -> bool:
        return self.window is None and self.block is None and not self.padded

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
        if self.padded:
            ok = ok & ((k >= 0) == (q >= 0))
        return ok

    def visibility(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """q_pos [B, T], k_pos [B, S] -> bool [B, 1, T, S]."""
        return self.allowed(q_pos[:, :, None], k_pos[:, None, :])[:, None]

    def mean_keys(self, seq_len: int) -> float:
        """Mean number of visible keys per query over a causal sequence (for FLOP counts);
        closed forms, O(1) (block-sparse: O(T) vectorised)."""
        return _mean_keys(self, seq_len)


def padded_spec(spec: MaskSpec, mask: torch.Tensor | None, cache) -> MaskSpec:
    """``spec`` with ``padded`` set when this call has pad tokens (``mask`` [B, T]) or its cache
    holds some (recorded by ``set_padding``); ``spec`` itself otherwise."""
    if mask is None and getattr(cache, "offsets", None) is None:
        return spec
    return _padded(spec)


@functools.lru_cache(maxsize=64)
def _padded(spec: MaskSpec) -> MaskSpec:
    return dataclasses.replace(spec, padded=True)


def _tri(n: int) -> int:
    return n * (n + 1) // 2


@functools.lru_cache(maxsize=256)
def _mean_keys(spec: MaskSpec, T: int) -> float:
    if spec.window is not None:
        W, S = spec.window, spec.sinks
        total = _tri(T) if T <= W else _tri(W) + (T - W) * W  # sum over q of min(q + 1, W)
        n = max(T - W, 0)  # queries past the window also see the sinks that fell out of it
        total += _tri(n) if n <= S else _tri(S) + (n - S) * S
        return total / T
    if spec.block is not None:
        Bk, G = spec.block, spec.global_tokens
        q = torch.arange(T, dtype=torch.float64)
        lo = ((q // Bk - 1) * Bk).clamp(min=0)  # first key of the previous block
        local = q - lo + 1 + torch.clamp(lo, max=G)  # own + previous block, plus globals before them
        return float(torch.where(q < G, q + 1, local).sum()) / T
    return (T + 1) / 2

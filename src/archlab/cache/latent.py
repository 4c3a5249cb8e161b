"""The multi-head latent attention cache (DeepSeek-V2/V3): per token only the normalised
key/value latent (R = kv_lora_rank values) and the rotated RoPE key shared by all heads
(Dr = qk_rope_head_dim), as one row of R + Dr values -- whatever the number of heads.

Stored as [B, 1, L, R + Dr] so that the absorbed attention path can use it directly as the
single key/value head of a multi-query attention (keys the whole row, values its first R).
With ``quant`` int8/fp8 the row is quantized with two scales (latent and RoPE key apart: the
two parts have different magnitudes), see :mod:`archlab.cache.quantized`.

Shapes: B batch, L max_len, S cached tokens, T new tokens, R latent width, Dr RoPE key width.
"""
from __future__ import annotations

import torch

from archlab.cache.base import tensor_bytes
from archlab.cache.quantized import QuantizedStore


class LatentCache:
    def __init__(self, batch_size: int, max_len: int, kv_lora_rank: int, rope_dim: int, *, dtype: torch.dtype,
                 device: torch.device | str | None = None, quant: str = "auto"):
        shape = (batch_size, 1, max_len, kv_lora_rank + rope_dim)
        self.rank, self.rope_dim, self.quant = kv_lora_rank, rope_dim, quant
        if quant == "auto":
            self.kv: torch.Tensor | QuantizedStore = torch.zeros(shape, dtype=dtype, device=device)
        else:
            self.kv = QuantizedStore(shape, quant, dtype=dtype, device=device, groups=(kv_lora_rank, rope_dim))
        self.length = 0
        self.offsets: torch.Tensor | None = None  # [B] left-padding slots per row (None: no padding)

    def set_padding(self, offsets: torch.Tensor) -> None:
        """Row b's first ``offsets[b]`` slots hold pads (negative positions, hidden by attention)."""
        self.offsets = offsets

    def update(self, kv: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Append rows [B, 1, T, R + Dr]; return all cached rows [B, 1, S, R + Dr] and their positions [B, S]."""
        start, end = self.length, self.length + kv.shape[2]
        self.kv[:, :, start:end] = kv.to(self.kv.dtype)
        self.length = end
        k_pos = torch.arange(end, device=kv.device).expand(kv.shape[0], end)
        if self.offsets is not None:
            k_pos = k_pos - self.offsets[:, None]  # [B, S]: pads at negative positions
        return self.kv[:, :, :end].to(kv.dtype), k_pos  # no copy when the cache has the model's dtype

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.kv.tensors() if isinstance(self.kv, QuantizedStore) else (self.kv,)

    def nbytes(self) -> int:
        return tensor_bytes(*self.tensors())

    def reset(self) -> None:
        self.length = 0
        self.offsets = None

    @staticmethod
    def bytes_for(batch_size: int, max_len: int, kv_lora_rank: int, rope_dim: int, elem: int, quant: str = "auto") -> int:
        rows = batch_size * max_len
        if quant != "auto":
            return QuantizedStore.bytes_for(rows, kv_lora_rank + rope_dim, groups=2)
        return rows * (kv_lora_rank + rope_dim) * elem

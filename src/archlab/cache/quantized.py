"""Quantized caches: keys/values (or the MLA latent) stored in 8 bits, dequantized on read.

Each cached row -- one token of one key/value head -- gets its own float32 scale
(per-token, per-head scaling), so an outlier token or head does not cost the others
precision. Symmetric, no zero point:

- int8: s = amax(|x|) / 127, q = round(x / s) in [-127, 127]. Error per element
  |x - s q| <= s / 2 = amax / 254 (about 0.4% of the row's largest magnitude).
- fp8 (e4m3, ``torch.float8_e4m3fn``): s = amax(|x|) / 448, q = fp8(x / s). Three mantissa
  bits: relative error <= 2^-4 for |x| >= 2^-6 s (normal range), absolute <= 2^-10 s below
  it. Needs a device with float8 casts (any CUDA device with torch >= 2.1; recent CPU builds).

Memory per row of D values: D bytes + 4 bytes of scale (+ 4 per extra scale group): for
D = 128 that is 132 bytes against 256 in bf16 (0.52x), the scale overhead 3.1%.

Measured quantization error on logits (``tests/cache/test_quantized.py`` and the same setup
over seeds 0-2: random 2-layer models, d_model 64, vocabulary 101, every parameter perturbed by
N(0, 0.1^2), float32; 8 tokens prefilled then 16 decoded; GQA full cache, window 8 + 2 sinks,
and MLA latent; logits' standard deviation about 0.8):
- int8: max |logit error| 0.023-0.040 (2.7-4.7% of the logits' std), mean 0.003-0.006,
  largest KL(reference || quantized) per position 1.1e-4; top-1 token agrees at 98-100% of
  positions (the disagreements are near-ties of an untrained model).
- fp8 e4m3: max 0.11-0.24 (13-29% of the std), mean 0.014-0.029, KL <= 3.5e-3, top-1 90-100%.
The test asserts int8 <= 6% of the std and KL <= 3e-4, fp8 <= 40% and KL <= 1e-2. The error
depends on the spread of magnitudes within a row, not on the context length (each row is
quantized on its own).

Reads dequantize the whole attended range into the compute dtype: a decode step with a
quantized cache holds, transiently, one layer's K/V in the compute dtype on top of the
8-bit cache (``benchmarks/cache_memory_gpu.py`` measures it).

Shapes: B batch, Hkv key/value heads, L slots, T new tokens, D head dim, G scale groups.
"""
from __future__ import annotations

from typing import Sequence

import torch

from archlab.cache.base import tensor_bytes
from archlab.cache.kv import KVCache
from archlab.cache.sliding import SlidingKVCache

STORAGE = {"int8": torch.int8, "fp8": torch.float8_e4m3fn}  # the 8-bit format of each cache_dtype
# fp8 bytes are held as uint8 and viewed as fp8 to decode: indexed reads and writes then need no
# float8 kernels (index/index_put), only the casts
_RAW = {"int8": torch.int8, "fp8": torch.uint8}
QMAX = {"int8": 127.0, "fp8": 448.0}  # the largest magnitude each format represents (symmetric)
SCALE_DTYPE = torch.float32  # one scale per row and group; float32 keeps scale error far below the 8-bit step
SCALE_BYTES = 4


def _kind(kind: str) -> str:
    if kind not in STORAGE:
        raise ValueError(f"attention.cache_dtype: {kind!r} is not a quantized format; accepted: {', '.join(STORAGE)}")
    return kind


def check_supported(kind: str, device: torch.device | str | None = None) -> None:
    """Raise a clear error if ``device`` cannot cast to the storage format (fp8 on old builds)."""
    try:
        torch.zeros(2, device=device).to(STORAGE[_kind(kind)]).float()
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"attention.cache_dtype: {kind} storage is not supported on {device or 'cpu'} ({e}); "
                         "use cache_dtype=int8") from None


def _expand(scales: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """[..., G] scales -> broadcastable to [..., D]: group i covers groups[i] consecutive dims."""
    if len(groups) == 1:
        return scales  # [..., 1] broadcasts over D
    return torch.cat([scales[..., i:i + 1].expand(*scales.shape[:-1], w) for i, w in enumerate(groups)], dim=-1)


def quantize(x: torch.Tensor, kind: str, groups: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> 8-bit values [..., D] and float32 scales [..., G], one per row and group."""
    groups = tuple(groups or (x.shape[-1],))
    xf = x.to(SCALE_DTYPE)
    amax = torch.stack([part.abs().amax(dim=-1) for part in xf.split(groups, dim=-1)], dim=-1)  # [..., G]
    # an all-zero row gets the smallest positive scale: its values quantize to exactly 0
    scales = (amax / QMAX[_kind(kind)]).clamp_min(torch.finfo(SCALE_DTYPE).tiny)
    y = xf / _expand(scales, groups)
    if kind == "int8":
        q = y.round_().clamp_(-127, 127).to(torch.int8)
    else:
        q = y.clamp_(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q, scales


def dequantize(q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype, groups: Sequence[int] | None = None) -> torch.Tensor:
    """8-bit values [..., D] and scales [..., G] -> [..., D] in ``dtype``."""
    groups = tuple(groups or (q.shape[-1],))
    return (q.to(SCALE_DTYPE) * _expand(scales, groups)).to(dtype)


class QuantizedStore:
    """A preallocated [..., L, D] buffer held as 8-bit values plus scales [..., L, G].

    Indexing over the leading dims (never the last) reads dequantized values in ``dtype``;
    assigning quantizes. So cache code written for plain tensors (``buf[:, :, a:b] = x``,
    ``buf[:, :, slots]``) works on it unchanged; ``dtype`` reports the compute dtype, so
    ``x.to(buf.dtype)`` before a write is a no-op.
    """

    def __init__(self, shape: Sequence[int], kind: str, *, dtype: torch.dtype, device=None,
                 groups: Sequence[int] | None = None):
        check_supported(kind, device)
        self.kind = kind
        self.dtype = dtype
        self.groups = tuple(groups or (shape[-1],))
        if sum(self.groups) != shape[-1]:
            raise ValueError(f"QuantizedStore: scale groups {self.groups} must sum to the last dim {shape[-1]}")
        self.values = torch.zeros(tuple(shape), dtype=_RAW[kind], device=device)
        self.scales = torch.zeros(*shape[:-1], len(self.groups), dtype=SCALE_DTYPE, device=device)

    @property
    def shape(self) -> torch.Size:
        return self.values.shape

    @property
    def device(self) -> torch.device:
        return self.values.device

    def __getitem__(self, idx) -> torch.Tensor:
        q = self.values[idx].view(STORAGE[self.kind])  # raw bytes -> the 8-bit format (same size)
        return dequantize(q, self.scales[idx], self.dtype, self.groups)

    def __setitem__(self, idx, x: torch.Tensor) -> None:
        q, s = quantize(x, self.kind, self.groups)
        self.values[idx] = q.view(self.values.dtype)
        self.scales[idx] = s

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values, self.scales

    def nbytes(self) -> int:
        return tensor_bytes(self.values, self.scales)

    @staticmethod
    def bytes_for(rows: int, width: int, groups: int = 1) -> int:
        """Bytes of ``rows`` rows of ``width`` values: 1 byte each plus 4 per scale group."""
        return rows * (width + groups * SCALE_BYTES)


class QuantizedKVCache(KVCache):
    """The full cache (:class:`KVCache`) with 8-bit K/V and per-token, per-head scales."""

    def __init__(self, batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None = None, *,
                 kind: str, dtype: torch.dtype, device=None):
        self.kind = kind
        self.k = QuantizedStore((batch_size, kv_heads, max_len, head_dim), kind, dtype=dtype, device=device)
        self.v = QuantizedStore((batch_size, kv_heads, max_len, v_dim or head_dim), kind, dtype=dtype, device=device)
        self.length = 0
        self.static = False
        self.slot_pos = None
        self.offsets = None

    def make_static(self) -> None:
        raise ValueError("cache: a quantized KV cache has no static (CUDA-graph) mode; use attention.cache_dtype=auto")

    def nbytes(self) -> int:
        return self.k.nbytes() + self.v.nbytes()

    @staticmethod
    def bytes_for(batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None = None) -> int:
        rows = batch_size * kv_heads * max_len
        return QuantizedStore.bytes_for(rows, head_dim) + QuantizedStore.bytes_for(rows, v_dim or head_dim)


class QuantizedSlidingKVCache(SlidingKVCache):
    """The ring buffer (:class:`SlidingKVCache`, window + sinks) with 8-bit K/V and scales."""

    def __init__(self, batch_size: int, kv_heads: int, max_len: int, head_dim: int, *, window: int, sinks: int = 0,
                 v_dim: int | None = None, kind: str, dtype: torch.dtype, device=None):
        self.window, self.sinks, self.kind = window, sinks, kind
        n = self.slots(max_len, window, sinks)
        self.k = QuantizedStore((batch_size, kv_heads, n, head_dim), kind, dtype=dtype, device=device)
        self.v = QuantizedStore((batch_size, kv_heads, n, v_dim or head_dim), kind, dtype=dtype, device=device)
        self.length = 0
        self.offsets = self.slot_pos = None

    def nbytes(self) -> int:
        return self.k.nbytes() + self.v.nbytes()

    @staticmethod
    def bytes_for(batch_size: int, kv_heads: int, max_len: int, head_dim: int, v_dim: int | None = None, *,
                  window: int, sinks: int) -> int:
        rows = batch_size * kv_heads * SlidingKVCache.slots(max_len, window, sinks)
        return QuantizedStore.bytes_for(rows, head_dim) + QuantizedStore.bytes_for(rows, v_dim or head_dim)


def quantized_kv_cache(kind: str, batch_size: int, kv_heads: int, max_len: int, head_dim: int, *, window: int | None,
                       sinks: int, dtype: torch.dtype, device=None) -> QuantizedKVCache | QuantizedSlidingKVCache:
    """The quantized cache a softmax-attention layer needs: a ring buffer with a window, else full."""
    if window is not None:
        return QuantizedSlidingKVCache(batch_size, kv_heads, max_len, head_dim, window=window, sinks=sinks,
                                       kind=kind, dtype=dtype, device=device)
    return QuantizedKVCache(batch_size, kv_heads, max_len, head_dim, kind=kind, dtype=dtype, device=device)


def quantized_kv_bytes(batch_size: int, kv_heads: int, max_len: int, head_dim: int, *, window: int | None, sinks: int) -> int:
    """Bytes :func:`quantized_kv_cache` allocates (values and scales)."""
    if window is not None:
        return QuantizedSlidingKVCache.bytes_for(batch_size, kv_heads, max_len, head_dim, window=window, sinks=sinks)
    return QuantizedKVCache.bytes_for(batch_size, kv_heads, max_len, head_dim)

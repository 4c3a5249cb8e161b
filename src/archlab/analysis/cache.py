"""Cache bytes from the config alone, equal to what ``model.new_cache`` allocates."""
from __future__ import annotations

import torch

from archlab.config import ModelConfig
from archlab.slots import MIXERS

_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "fp32": torch.float32, "float32": torch.float32, "int8": torch.int8, "fp8": torch.float8_e4m3fn}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in _NAMES:
            raise ValueError(f"dtype: unknown {dtype!r}; accepted: {', '.join(_NAMES)}")
        return _NAMES[dtype]
    return dtype


def dtype_size(dtype: torch.dtype | str) -> int:
    return torch.empty((), dtype=resolve_dtype(dtype)).element_size()


def cache_bytes(cfg: ModelConfig, seq_len: int, batch_size: int = 1, dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes of the whole cache for batch_size sequences of seq_len tokens, fixed states included."""
    if seq_len < 0 or batch_size <= 0:
        raise ValueError(f"cache_bytes: seq_len must be >= 0 and batch_size > 0, got {seq_len}, {batch_size}")
    dtype = resolve_dtype(dtype)
    total = 0
    for i in range(cfg.n_layers):
        spec, lc = cfg.layer_spec(i), cfg.layer_config(i)
        slot = MIXERS.get(spec.mixer)(lc)
        if slot.cache_bytes is not None:
            total += slot.cache_bytes(lc, seq_len, batch_size, dtype)
    return total


def cache_bytes_per_token(cfg: ModelConfig, dtype: torch.dtype | str = torch.bfloat16) -> int:
    """Bytes each additional token adds to the cache of one sequence (layers whose cache is
    bounded, such as sliding windows past their window or recurrent states, add 0 once full;
    this figure is the growth while every window is still filling)."""
    return cache_bytes(cfg, 2, 1, dtype) - cache_bytes(cfg, 1, 1, dtype)

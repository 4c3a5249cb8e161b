"""Block-quantized FP8 checkpoints (DeepSeek-V3's published weights, the "-FP8" Qwen3 releases):
dequantized while they load.

Such a checkpoint stores a linear weight ``X.weight`` [M, K] in float8 (e4m3) beside
``X.weight_scale_inv`` [ceil(M / bm), ceil(K / bk)] float32, one scale per bm x bk block, with
``quantization_config = {"quant_method": "fp8", "weight_block_size": [bm, bk], ...}`` in
config.json. The weight is ``X.weight.float() * scale`` of its block (the scale multiplies despite
its name, as in DeepSeek-V3's reference ``weight_dequant``). Other tensors (embeddings, norms,
routers, the head) are stored unquantized and pass through.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

from archlab.errors import CheckpointError

SCALE = "_scale_inv"
FLOAT8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
               if hasattr(torch, n))


def block_size(hf_config: Any, keys: Iterable[str]) -> tuple[int, int] | None:
    """(bm, bk) of a block-quantized FP8 checkpoint, or None when it has no scales."""
    if not any(k.endswith(SCALE) for k in keys):
        return None
    qc = getattr(hf_config, "quantization_config", None) or {}
    if not isinstance(qc, dict):
        qc = qc.to_dict() if hasattr(qc, "to_dict") else vars(qc)
    if qc.get("quant_method") != "fp8":
        raise CheckpointError(f"checkpoint holds *{SCALE} tensors but config.json's quantization_config.quant_method is "
                              f"{qc.get('quant_method')!r}; accepted: 'fp8' (block-quantized float8 weights)")
    block = qc.get("weight_block_size")
    if not (isinstance(block, (list, tuple)) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
        raise CheckpointError(f"quantization_config.weight_block_size: expected [rows, cols] of positive integers, got {block!r}")
    return int(block[0]), int(block[1])


def dequantize(weight: torch.Tensor, scale: torch.Tensor, block: tuple[int, int], name: str) -> torch.Tensor:
    """float32 weight [M, K] from its float8 values and per-block scales."""
    if weight.dim() != 2:
        raise CheckpointError(f"{name}: a block-quantized weight must be 2-D, got shape {tuple(weight.shape)}")
    (M, K), (bm, bk) = weight.shape, block
    want = (-(-M // bm), -(-K // bk))
    if tuple(scale.shape) != want:
        raise CheckpointError(f"{name}{SCALE}: shape {tuple(scale.shape)}, expected {want} for a {M} x {K} weight in "
                              f"{bm} x {bk} blocks")
    s = scale.float().repeat_interleave(bm, 0)[:M].repeat_interleave(bk, 1)[:, :K]
    return weight.float() * s


def dequantized(source: Iterable[tuple[str, torch.Tensor]], block: tuple[int, int], dtype: torch.dtype | None
                ) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors with every float8 weight dequantized (in ``dtype``, default bfloat16)
    and its scale consumed. A weight and its scale may come in either order, in different shards."""
    weights: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    out = dtype or torch.bfloat16
    for key, t in source:
        if key.endswith(SCALE):
            name = key[: -len(SCALE)]
            if name in weights:
                yield name, dequantize(weights.pop(name), t, block, name).to(out)
            else:
                scales[name] = t
        elif t.dtype in FLOAT8:
            if key in scales:
                yield key, dequantize(t, scales.pop(key), block, key).to(out)
            else:
                weights[key] = t
        else:
            yield key, t
    if weights or scales:
        lone = [f"{k} (no {k}{SCALE})" for k in weights] + [f"{k}{SCALE} (no float8 {k})" for k in scales]
        raise CheckpointError(f"FP8 checkpoint: {len(lone)} tensor(s) without their pair: {', '.join(lone[:6])}"
                              f"{' ...' if len(lone) > 6 else ''}")


def unquantized(source: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``source`` unchanged, refusing a float8 tensor (it has no block scale to dequantize it by)."""
    for key, t in source:
        if t.dtype in FLOAT8:
            raise CheckpointError(f"{key}: a {t.dtype} tensor without a block scale ({key}{SCALE}); only block-quantized "
                                  "FP8 checkpoints (quantization_config.quant_method 'fp8' with weight_block_size) are read")
        yield key, t


def for_loading(hf_config: Any, keys: Iterable[str], source: Iterable[tuple[str, torch.Tensor]],
                dtype: torch.dtype | None) -> tuple[list[str], Iterator[tuple[str, torch.Tensor]]]:
    """The checkpoint's keys and tensors as the loader should see them: FP8 weights dequantized,
    their scales gone."""
    keys = list(keys)
    block = block_size(hf_config, keys)
    if block is None:
        return keys, unquantized(source)
    return [k for k in keys if not k.endswith(SCALE)], dequantized(source, block, dtype)

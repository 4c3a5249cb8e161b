"""archlab's own checkpoint format: a directory with ``config.json`` (the ModelConfig, as
``ModelConfig.to_json`` writes it) and ``model.safetensors`` (or shards with
``model.safetensors.index.json``) holding every parameter and saved buffer once, under the
model's own names (``named_parameters``; a module shared by several layers under its first name).

Loading streams tensors into a model built with its parameters on the meta device, as
``from_hf`` does; nothing is unpickled.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from archlab.config import ModelConfig
from archlab.errors import CheckpointError
from archlab.interop.weights import (
    build_empty, canonical_tensors, install, iter_tensors, parse_size, tensor_bytes, unmaterialised, write_shards,
)
from archlab.model import Model

CONFIG = "config.json"


def save_archlab(model: Model, out_dir: str | os.PathLike, *, dtype: torch.dtype | None = None,
                 max_shard_size: int | str = "5GB") -> Path:
    """Write ``model`` in archlab's format; returns the directory."""
    if not isinstance(model, Model):
        raise TypeError(f"save_archlab: expected an archlab Model, got {type(model).__name__}")
    out = Path(out_dir)
    tensors = canonical_tensors(model)

    def item(name: str, t: torch.Tensor):
        cast = lambda: t.detach().to(dtype) if dtype is not None and t.is_floating_point() else t.detach()  # noqa: E731
        return tensor_bytes([t], dtype), lambda: [(name, cast())]

    with torch.no_grad():
        write_shards([item(n, t) for n, t in tensors.items()], out, parse_size(max_shard_size))
    model.cfg.to_json(out / CONFIG)
    return out


def load_archlab(path: str | os.PathLike, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None) -> Model:
    """Read a directory written by :func:`save_archlab` (or ``archlab convert --from-hf``)."""
    p = Path(path)
    if not (p / CONFIG).is_file():
        raise CheckpointError(f"{p}: no {CONFIG} (expected an archlab checkpoint directory)")
    cfg = ModelConfig.from_json(p / CONFIG)
    model = build_empty(cfg)
    expected = set(canonical_tensors(model))
    unexpected = []
    for name, t in iter_tensors(p):
        if name not in expected:
            unexpected.append(name)
            continue
        install(model, name, t, dtype=dtype, device=device)
    missing = unmaterialised(model)
    if missing or unexpected:
        raise CheckpointError(
            f"{p}: weights do not match config.json"
            + (f"; missing: {', '.join(missing[:8])}" if missing else "")
            + (f"; unexpected: {', '.join(unexpected[:8])}" if unexpected else "")
        )
    if device is not None:
        model.to(device)
    return model

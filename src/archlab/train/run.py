"""Open a trained run (or one checkpoint) for generation or evaluation."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlab.errors import CheckpointError
from archlab.train.checkpoint import latest_checkpoint, read_state
from archlab.train.config import RunConfig


@dataclass
class LoadedRun:
    model: Any  # archlab Model in eval mode
    tokenizer: Any  # the run's tokenizer, or None when the data had none
    config: RunConfig  # the resolved run config
    checkpoint: Path  # the checkpoint folder the weights came from
    step: int  # optimizer steps the weights had


def find_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a checkpoint folder, else the newest complete checkpoint of the run in it."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such run or checkpoint folder")
    if (p / "trainer.json").is_file():
        return p
    ckpt = latest_checkpoint(p)
    if ckpt is None:
        raise CheckpointError(f"{p}: holds no complete checkpoint (expected {p}/checkpoints/step_*/trainer.json, "
                              f"written by archlab train)")
    return ckpt


def load_run(path: str | os.PathLike, *, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> LoadedRun:
    """The model (weights validated by name), tokenizer and config of a run folder or checkpoint folder."""
    import archlab
    from archlab.train.weights import load_weights

    ckpt = find_checkpoint(path)
    state = read_state(ckpt)
    if not (ckpt / "run.json").is_file():
        raise CheckpointError(f"{ckpt}: run.json is missing")
    run = RunConfig.from_json(ckpt / "run.json")
    model = archlab.build(run.model)
    load_weights(model, ckpt / "model.safetensors")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device=device, dtype=dtype).eval()
    tokenizer = None
    if (ckpt / "tokenizer").is_dir():
        from archlab.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(ckpt / "tokenizer")
    return LoadedRun(model, tokenizer, run, ckpt, int(state["step"]))

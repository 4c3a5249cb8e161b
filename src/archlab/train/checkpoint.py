"""Checkpoints that survive a kill mid-save and resume a run exactly.

A checkpoint is the folder ``RUN_DIR/checkpoints/step_00000100/``:

  config.json        the ModelConfig (with model.safetensors: archlab.interop's native format)
  run.json           the resolved RunConfig (model + training)
  model.safetensors  the full weights, every tensor once (also written by sharded runs, for generation)
  optimizer.pt       unsharded runs: AdamW state keyed by parameter name (torch.load weights_only=True)
  dcp/               sharded (FSDP2) runs: model and optimizer shards (torch.distributed.checkpoint),
                     which reload into any number of processes, or one
  rng/rank_N.pt      each process's RNG states (torch, CUDA, numpy, python)
  tokenizer/         the tokenizer, when the data has one
  trainer.json       step, tokens seen, data position, schedule and process layout

Everything is written into ``checkpoints/.tmp-step_...`` and renamed into place once complete
(files and folders fsynced first), so a kill during a save leaves the previous checkpoint intact;
only folders named ``step_*`` holding ``trainer.json`` count. The newest ``keep_last`` are kept.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.errors import CheckpointError
from archlab.train.distributed import DistInfo, barrier
from archlab.train.weights import check_weights, read_weights, save_weights, tensor_aliases

STEP_PREFIX = "step_"
FORMAT = 1
STATE_FILE = "trainer.json"  # written last: marks a complete checkpoint


# -- finding checkpoints ----------------------------------------------------------------------
def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{STEP_PREFIX}{step:08d}"


def _step_of(p: Path) -> int | None:
    tail = p.name[len(STEP_PREFIX):]
    return int(tail) if p.name.startswith(STEP_PREFIX) and tail.isdigit() else None


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step_of(p) is not None and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: _step_of(p))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(ckpt: str | os.PathLike) -> dict[str, Any]:
    """The ``trainer.json`` of a checkpoint folder (CheckpointError when it is not one)."""
    ckpt = Path(ckpt)
    path = ckpt / STATE_FILE
    if not path.is_file():
        hint = "" if ckpt.is_dir() else " (no such folder)"
        raise CheckpointError(f"{ckpt}: not a complete checkpoint{hint}; expected a folder holding {STATE_FILE}, "
                              f"e.g. RUN_DIR/checkpoints/{STEP_PREFIX}00000100")
    try:
        state = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, this archlab reads {FORMAT}")
    return state


# -- RNG ----------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# -- writing ------------------------------------------------------------------------------------
def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(Path(dirpath) / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def full_model_state(model: nn.Module, info: DistInfo) -> dict[str, torch.Tensor]:
    """Unsharded weights on the CPU: on rank 0 for a sharded model (a collective), else directly."""
    if info.sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return model.state_dict()


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """AdamW state keyed by parameter name (unsharded models)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_checkpoint(run_dir: str | os.PathLike, step: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    run_config, state: dict[str, Any], info: DistInfo, tokenizer: Any = None,
                    keep_last: int = 2) -> Path:
    """Write checkpoint ``step`` (every process calls this) and keep the newest ``keep_last``.

    ``model`` is the unwrapped model (FSDP2-sharded in place for sharded runs); ``state`` is
    the trainer's JSON-ready state (data position, metrics), stored in ``trainer.json``.
    """
    root = Path(run_dir) / "checkpoints"
    final = checkpoint_path(run_dir, step)
    tmp = root / f".tmp-{final.name}"
    if info.is_main:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # left by a save that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        (tmp / "rng").mkdir()
    barrier(info)

    weights = full_model_state(model, info)
    if info.is_main:
        save_weights(weights, tmp / "model.safetensors", tensor_aliases(model))
        run_config.model.to_json(tmp / "config.json")
        run_config.to_json(tmp / "run.json")
        if tokenizer is not None and hasattr(tokenizer, "save"):
            tokenizer.save(tmp / "tokenizer")
    del weights
    if info.sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)},
                 checkpoint_id=str(tmp / "dcp"))
    elif info.is_main:
        torch.save(full_optimizer_state(model, optimizer), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / "rng" / f"rank_{info.rank}.pt")
    barrier(info)

    if info.is_main:
        _write_json(tmp / STATE_FILE, {"format": FORMAT, "step": step, "world_size": info.world,
                                       "sharded": info.sharded, **state})
        _fsync_tree(tmp)
        old = None
        if final.exists():  # the same step saved again (a resumed run that stopped at once)
            old = root / f".old-{final.name}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for stale in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(stale, ignore_errors=True)
    barrier(info)
    return final


# -- reading ------------------------------------------------------------------------------------
def _check_optimizer_state(osd: Any, model: nn.Module, optimizer: torch.optim.Optimizer, where: str) -> None:
    """Names and shapes of a by-name optimizer state against the current parameters."""
    if not isinstance(osd, dict) or "state" not in osd or "param_groups" not in osd:
        raise CheckpointError(f"{where}: not an optimizer state (expected keys 'state' and 'param_groups')")
    shapes = {}
    for name, p in model.named_parameters():
        shapes[name] = tuple(p.shape)
    for name, st in osd["state"].items():
        if name not in shapes:
            raise CheckpointError(f"{where}: optimizer state for {name!r}, which is not a parameter of the model")
        for key, t in st.items():
            if isinstance(t, torch.Tensor) and t.dim() > 0 and tuple(t.shape) != shapes[name]:
                raise CheckpointError(f"{where}: optimizer state {name!r}.{key} has shape {list(t.shape)}, "
                                      f"the parameter has {list(shapes[name])}")
    saved = [list(g["params"]) for g in osd["param_groups"]]
    if len(saved) != len(optimizer.param_groups):
        raise CheckpointError(f"{where}: {len(saved)} parameter groups saved, the optimizer has "
                              f"{len(optimizer.param_groups)} (train.no_decay or weight_decay changed?)")
    owned = {name for g in saved for name in g}
    missing = [n for n in shapes if n not in owned]
    if missing:
        raise CheckpointError(f"{where}: parameter {missing[0]!r} has no optimizer state in the checkpoint")


def load_checkpoint(ckpt: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    info: DistInfo | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Restore weights (and optimizer and RNG states) from a checkpoint folder; returns its trainer state.

    Works across layouts: a sharded (``dcp/``) checkpoint loads into one process or any number
    of processes; an unsharded one also loads into an FSDP2-sharded model.
    """
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    sharded_model = info is not None and info.sharded
    if (ckpt / "dcp").is_dir() and (optimizer is not None or sharded_model):
        _load_dcp(ckpt, model, optimizer)
    else:
        weights = read_weights(ckpt / "model.safetensors")
        if sharded_model:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            full = check_weights(weights, full_model_state_shapes(model), str(ckpt / "model.safetensors"),
                                 tensor_aliases(model))
            set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True))
        else:
            own = model.state_dict()
            full = check_weights(weights, own, str(ckpt / "model.safetensors"), tensor_aliases(model))
            with torch.no_grad():
                for k, t in own.items():
                    t.copy_(full[k])
        if optimizer is not None:
            _load_full_optimizer(ckpt / "optimizer.pt", model, optimizer)
    if restore_rng:
        rank = info.rank if info is not None else 0
        rng = ckpt / "rng" / f"rank_{rank}.pt"
        if rng.is_file() and state.get("world_size") == (info.world if info is not None else 1):
            set_rng_state(torch.load(rng, weights_only=True))
    return state


def full_model_state_shapes(model: nn.Module) -> dict[str, torch.Tensor]:
    """Meta tensors with the unsharded shapes of a (possibly FSDP2-sharded) model's state, for checks."""
    out = {}
    for k, t in model.state_dict().items():
        shape = t.shape  # a DTensor reports its global shape
        out[k] = torch.empty(shape, dtype=t.dtype, device="meta")
    return out


def _load_full_optimizer(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this checkpoint holds no optimizer state")
    try:
        osd = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated file or a pickle that weights_only refuses
        raise CheckpointError(f"{path}: cannot be read as an optimizer state with weights_only=True ({e})") from None
    _check_optimizer_state(osd, model, optimizer, str(path))
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))


def _load_dcp(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict, get_optimizer_state_dict, set_model_state_dict, set_optimizer_state_dict,
    )

    target: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        target["optim"] = get_optimizer_state_dict(model, optimizer)
    try:
        with warnings.catch_warnings():  # loading in one process without a process group is intended here
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            dcp.load(target, checkpoint_id=str(ckpt / "dcp"))
    except Exception as e:  # DCP reports a missing key or a size mismatch with its own exception types
        raise CheckpointError(f"{ckpt / 'dcp'}: does not match the model ({str(e).strip().splitlines()[-1][:500]})") from None
    set_model_state_dict(model, target["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, target["optim"])

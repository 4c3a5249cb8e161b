"""Open a training run (or one of its checkpoints) for evaluation.

A run written by ``archlab train`` (``checkpoints/step_*/trainer.json``) opens through the
trainer's ``load_run``: weights, tokenizer, resolved config, the training length and data
section. Any other folder is read directly: a resolved config (``config.json``/``config.yaml``, with a ``model`` section
and optionally ``data`` and ``train``/``training`` sections holding ``seq_len``) in the
checkpoint folder or a parent, weights as ``*.safetensors`` (the latest checkpoint under
``checkpoints/`` when a run folder is given), and the tokenizer saved by the data layer
(``archlab_tokenizer.json``) beside them, else the one the data section names.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from archlab.errors import CheckpointError

CONFIG_NAMES = ("config.json", "config.yaml", "config.yml", "resolved_config.json", "run.json")


def _find_up(start: Path, names: tuple[str, ...], levels: int = 2) -> Path | None:
    d = start
    for _ in range(levels + 1):
        for n in names:
            if (d / n).is_file():
                return d / n
        d = d.parent
    return None


def _read(path: Path) -> dict:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        import yaml

        return yaml.safe_load(path.read_text()) or {}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read the run config ({e})") from None


def _step(p: Path) -> int:
    m = re.findall(r"\d+", p.parent.name if p.parent.name.startswith(("step", "ckpt", "checkpoint")) else p.stem)
    return int(m[-1]) if m else -1


def _weights(path: Path) -> Path:
    if path.is_file():
        return path
    here = sorted(path.glob("*.safetensors"))
    if here:
        return here[0]
    nested = list(path.glob("checkpoints/*/*.safetensors")) + list(path.glob("*/*.safetensors"))
    if not nested:
        raise CheckpointError(f"{path}: no *.safetensors weights here or under checkpoints/; is it a run directory?")
    return max(nested, key=lambda p: (_step(p), p.stat().st_mtime))


def _train_len(data: dict) -> int | None:
    for section in ("train", "training", "trainer"):
        sec = data.get(section)
        if isinstance(sec, dict):
            for key in ("seq_len", "context", "sequence_length"):
                if isinstance(sec.get(key), int):
                    return sec[key]
    return data.get("seq_len") if isinstance(data.get("seq_len"), int) else None


def load(path: Path, *, device=None):
    """An ``EvalTarget`` for a run directory, a checkpoint directory or a weights file."""
    from archlab.config import ModelConfig
    from archlab.data.config import DataConfig
    from archlab.data.tokenizer import get_tokenizer, load_tokenizer
    from archlab.eval.runner import EvalTarget
    from archlab.model import build

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if (path / "trainer.json").is_file() or any(path.glob("checkpoints/*/trainer.json")):
        return _from_trainer(path, device)
    weights = _weights(path)
    ckpt_dir = weights.parent
    cfg_path = _find_up(ckpt_dir, CONFIG_NAMES, levels=3)
    if cfg_path is None:
        raise CheckpointError(f"{path}: no run config ({', '.join(CONFIG_NAMES)}) beside the weights or above them")
    raw = _read(cfg_path)
    model_raw = raw.get("model", raw)
    try:
        cfg = ModelConfig.from_dict(model_raw)
        data = DataConfig.from_dict(raw["data"]) if isinstance(raw.get("data"), dict) else None
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    from safetensors.torch import load_file

    model = build(cfg, device=device)
    state = load_file(str(weights), device=str(device or "cpu"))
    state = {k.removeprefix("model.").removeprefix("_orig_mod."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights}: does not match the config in {cfg_path}: missing {list(missing)[:5]}, "
                              f"unexpected {list(unexpected)[:5]}")
    tok_file = _find_up(ckpt_dir, ("archlab_tokenizer.json",), levels=3)
    tokenizer = load_tokenizer(tok_file.parent) if tok_file else get_tokenizer(data.tokenizer if data else "byte")
    return EvalTarget(model=model.eval(), tokenizer=tokenizer, train_len=_train_len(raw), data=data,
                      directory=ckpt_dir, label=cfg.name or cfg_path.parent.name,
                      meta={"checkpoint": str(weights), "config": str(cfg_path)})


def _from_trainer(path: Path, device):
    from archlab.data.tokenizer import get_tokenizer
    from archlab.eval.runner import EvalTarget
    from archlab.train.run import load_run

    run = load_run(path, device=device or "cpu")
    data = run.config.train.data
    tokenizer = run.tokenizer if run.tokenizer is not None else get_tokenizer(data.tokenizer)
    name = run.config.model.name or run.checkpoint.parent.parent.name
    return EvalTarget(model=run.model, tokenizer=tokenizer, train_len=run.config.train.seq_len, data=data,
                      directory=run.checkpoint, label=name,
                      meta={"checkpoint": str(run.checkpoint), "step": run.step, "model": name})

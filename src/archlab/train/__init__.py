"""Training: AdamW + schedules, gradient accumulation, bf16 autocast, checkpoints with exact
resume, DDP / FSDP2 under torchrun, metrics (JSONL, TensorBoard, terminal).

    from archlab.train import RunConfig, TrainConfig, train
    run = RunConfig(model=archlab.presets.get("llama-3-debug"), train=TrainConfig(steps=300))
    result = train(run, "runs/llama-debug")                 # resume=True continues a run
    loaded = load_run("runs/llama-debug")                   # model + tokenizer for generation

Command line: ``archlab train PRESET --data stdlib --steps 300 --out DIR [--resume]``;
several processes: ``torchrun --nproc_per_node N -m archlab.cli train ...``.
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

_EXPORTS = {
    "TrainConfig": "archlab.train.config",
    "RunConfig": "archlab.train.config",
    "split_overrides": "archlab.train.config",
    "Trainer": "archlab.train.loop",
    "TrainResult": "archlab.train.loop",
    "NonFiniteLossError": "archlab.train.loop",
    "train": "archlab.train.loop",
    "lm_loss": "archlab.train.loop",
    "lr_at": "archlab.train.schedule",
    "lr_factor": "archlab.train.schedule",
    "param_groups": "archlab.train.optim",
    "make_optimizer": "archlab.train.optim",
    "save_checkpoint": "archlab.train.checkpoint",
    "load_checkpoint": "archlab.train.checkpoint",
    "latest_checkpoint": "archlab.train.checkpoint",
    "list_checkpoints": "archlab.train.checkpoint",
    "load_weights": "archlab.train.weights",
    "save_weights": "archlab.train.weights",
    "load_run": "archlab.train.run",
    "LoadedRun": "archlab.train.run",
    "TokenTensorDataset": "archlab.train.data",
    "peak_flops": "archlab.train.mfu",
    "PEAK_BF16_FLOPS": "archlab.train.mfu",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)

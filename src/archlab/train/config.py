"""The training run's configs: ``TrainConfig`` (optimizer, schedule, loop, data) and
``RunConfig`` (the model and its training together: what a run saves and resumes from).

The defaults train ``llama-3-debug`` on the built-in ``stdlib`` corpus with byte tokens to a
validation loss well below the corpus's unigram entropy in a few minutes on two CPU cores.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from archlab.config import ModelConfig
from archlab.configbase import Config
from archlab.data.config import DataConfig
from archlab.errors import ConfigError, check

NoDecay = Literal["norm", "bias", "embedding"]


@dataclass(frozen=True)
class TrainConfig(Config):
    _section = "train"

    steps: int = 300  # optimizer steps; the schedule spans them all
    batch_size: int = 16  # sequences per optimizer step, over all processes and micro-steps
    seq_len: int = 256  # tokens per training sequence
    grad_accum: int = 1  # micro-steps per optimizer step (each process sees batch_size / (world * grad_accum))
    lr: float = 3e-3  # peak learning rate (small models tolerate a high one)
    min_lr_ratio: float = 0.1  # the schedule ends at lr * min_lr_ratio
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"  # after warmup: cosine decay, warmup-stable-decay, or flat
    warmup_steps: int | None = None  # linear warmup from lr/warmup to lr; None: 10% of steps, at most 1000
    decay_fraction: float = 0.2  # wsd only: the share of steps, at the end, that decays linearly to the minimum
    weight_decay: float = 0.1  # AdamW decoupled weight decay (multiplied by lr)
    no_decay: tuple[NoDecay, ...] = ("norm", "bias", "embedding")  # parameter kinds exempt from weight decay
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95 is the usual LM choice: faster to adapt than 0.999)
    eps: float = 1e-8  # AdamW denominator floor
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; None: measure it only
    precision: Literal["auto", "float32", "bf16"] = "auto"  # auto: bf16 autocast on a GPU, float32 on the CPU
    compile: bool = False  # torch.compile the model after build (and after DDP/FSDP wrapping)
    activation_checkpointing: bool = False  # recompute each block in the backward pass to save activation memory
    eval_every: int = 100  # steps between validation losses (and after the last step); 0: only at the end
    eval_batches: int | None = 20  # validation loss over eval_batches x batch_size windows; None: the whole split
    log_every: int = 10  # steps between lines on the terminal (the JSONL log gets every step)
    save_every: int = 100  # steps between checkpoints (one is always written after the last step); 0: only at the end
    keep_last: int = 2  # checkpoints kept on disk; older ones are deleted after a newer one is complete
    seed: int = 0  # model initialisation and data order
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"  # with several processes (torchrun): auto = ddp; FSDP2 shards
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the local GPU when there is one
    peak_flops: float | None = None  # the device's peak FLOP/s for MFU; None: looked up by device name
    tensorboard: bool = True  # also write TensorBoard event files (when tensorboard is installed)
    data: DataConfig = field(default_factory=DataConfig)  # corpus, tokenizer and split

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "grad_accum", "log_every", "keep_last"):
            v = getattr(self, name)
            check(v >= 1, f"train.{name}", f"must be an integer >= 1, got {v}")
        for name in ("eval_every", "save_every", "seed"):
            v = getattr(self, name)
            check(v >= 0, f"train.{name}", f"must be an integer >= 0, got {v}")
        check(self.batch_size % self.grad_accum == 0, "train.grad_accum",
              f"must divide batch_size={self.batch_size}, got {self.grad_accum}")
        check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        check(self.warmup_steps is None or 0 <= self.warmup_steps <= self.steps, "train.warmup_steps",
              f"must be in [0, steps={self.steps}] or null, got {self.warmup_steps}")
        check(0.0 < self.decay_fraction <= 1.0, "train.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}")
        check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(len(set(self.no_decay)) == len(self.no_decay), "train.no_decay", f"lists a kind twice: {list(self.no_decay)}")
        check(0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0, "train.beta1",
              f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        check(self.eps > 0, "train.eps", f"must be > 0, got {self.eps}")
        check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip", f"must be > 0 or null, got {self.grad_clip}")
        check(self.eval_batches is None or self.eval_batches >= 1, "train.eval_batches",
              f"must be >= 1 or null (the whole split), got {self.eval_batches}")
        check(self.peak_flops is None or self.peak_flops > 0, "train.peak_flops", f"must be > 0 or null, got {self.peak_flops}")

    @property
    def warmup(self) -> int:
        """Warmup steps, with the None default resolved."""
        return self.warmup_steps if self.warmup_steps is not None else min(self.steps // 10, 1000)


@dataclass(frozen=True)
class RunConfig(Config):
    """Everything a run needs to be repeated: saved as ``config.json`` in the run and in every checkpoint."""

    model: ModelConfig  # the architecture (vocab_size follows the tokenizer)
    train: TrainConfig = field(default_factory=TrainConfig)  # how it is trained

    def resolved(self, vocab_size: int) -> "RunConfig":
        """The config as run: the model's vocabulary set to the tokenizer's, warmup made explicit."""
        model = self.model if self.model.vocab_size == vocab_size else self.model.replace(vocab_size=vocab_size)
        train = self.train if self.train.warmup_steps is not None else self.train.replace(warmup_steps=self.train.warmup)
        return dataclasses.replace(self, model=model, train=train)


def split_overrides(sets: Mapping[str, Any]) -> dict[str, Any]:
    """Route dotted overrides to the run config: ``train.``/``model.`` prefixes are explicit; a
    bare key goes to whichever of TrainConfig and ModelConfig has its first part
    (``lr=1e-3`` -> ``train.lr``, ``attention.kv_heads=1`` -> ``model.attention.kv_heads``)."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    out: dict[str, Any] = {}
    for key, value in sets.items():
        head = key.split(".")[0]
        if head in ("train", "model"):
            out[key] = value
        elif head in train_fields and head in model_fields:
            raise ConfigError(f"--set {key}: ambiguous; write train.{key} or model.{key}")
        elif head in train_fields:
            out[f"train.{key}"] = value
        elif head in model_fields:
            out[f"model.{key}"] = value
        else:
            import difflib

            close = difflib.get_close_matches(head, sorted(train_fields | model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--set {key}: {head!r} is neither a training nor a model setting{hint} "
                              f"(training: {', '.join(sorted(train_fields))})")
    return out

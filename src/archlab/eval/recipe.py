"""Train a fresh model on a synthetic task (MQAR, copying, induction) and measure held-out accuracy.

A task is any object with ``vocab_size``, ``seq_len``, ``to_dict()`` and
``sample(batch_size, generator) -> (inputs [B, T], targets [B, T])`` (targets -100 where no
loss is taken). Every step draws a fresh batch; accuracy is measured on a fixed held-out set
drawn from another seed. Synthetic recall tasks are learned after a long plateau and a
sudden transition, and whether the transition comes at all depends on the recipe (heads,
learning rate, steps): Zoology keeps the best of several learning rates (``sweep_lr``).

Shapes: B batch, T sequence length, V vocabulary.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.configbase import Config
from archlab.errors import ConfigError, check
from archlab.eval.common import IGNORE, model_device, progress_bar

HELD_OUT_SEED = 1_000_003  # added to the recipe seed: the held-out set never matches a training batch's seed


class Task(Protocol):
    vocab_size: int
    seq_len: int

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class TrainRecipe(Config):
    _section = "recipe"

    steps: int = 3000  # optimizer steps (one fresh batch each)
    batch_size: int = 64  # sequences per step
    lr: float = 1e-3  # AdamW peak learning rate
    warmup_steps: int = 0  # linear warmup from 0 to lr
    schedule: Literal["constant", "cosine", "wsd"] = "constant"  # after warmup: keep lr, cosine decay to 0, or keep then decay linearly to 0
    decay_fraction: float = 0.2  # wsd: the share of steps, at the end, over which lr falls to 0
    weight_decay: float = 0.0  # AdamW decoupled weight decay on matrices (not norms or biases)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.98  # AdamW second-moment decay (shorter memory than 0.999 suits fresh synthetic batches)
    grad_clip: float | None = 1.0  # clip the global gradient norm; None = no clipping
    eval_every: int = 250  # steps between held-out evaluations
    eval_examples: int = 512  # held-out sequences
    stop_at: float | None = None  # stop early once held-out accuracy reaches this (e.g. 0.99)
    seed: int = 0  # model init and data stream

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_examples"):
            check(getattr(self, name) >= 1, f"recipe.{name}", f"must be >= 1, got {getattr(self, name)}")
        check(self.lr > 0, "recipe.lr", f"must be > 0, got {self.lr}")
        check(self.warmup_steps >= 0, "recipe.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "recipe.beta1", "beta1 and beta2 must be in [0, 1)")
        check(self.weight_decay >= 0, "recipe.weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.grad_clip is None or self.grad_clip > 0, "recipe.grad_clip", "must be > 0 or null")
        check(0 < self.decay_fraction <= 1, "recipe.decay_fraction", f"must be in (0, 1], got {self.decay_fraction}")
        check(self.stop_at is None or 0 < self.stop_at <= 1, "recipe.stop_at", "must be in (0, 1] or null")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "wsd":
            start = self.steps - round(self.decay_fraction * self.steps)  # the first decaying step
            return self.lr if step < start else self.lr * (self.steps - step) / max(1, self.steps - start)
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


@dataclass
class TaskResult:
    accuracy: float  # held-out accuracy at the end
    best_accuracy: float  # best held-out accuracy seen
    steps: int  # steps run (fewer than recipe.steps if stop_at was reached)
    seconds: float  # wall time of training and evaluation
    params: int  # model parameters
    history: list[dict] = field(default_factory=list)  # {step, loss, accuracy, seconds} per evaluation
    task: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)  # the model config trained
    label: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def task_model_config(cfg, task: Task):
    """``cfg`` with the task's vocabulary (the architecture is kept; the weights are new)."""
    from archlab.eval.positions import learned_limit

    out = cfg.replace(vocab_size=task.vocab_size)
    limit = learned_limit(out)
    if limit is not None and limit < task.seq_len:
        raise ConfigError(f"position.max_positions: the learned table holds {limit} positions but the task's "
                          f"sequences have {task.seq_len} tokens; raise position.max_positions")
    return out


@torch.no_grad()
def task_accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 256
                  ) -> tuple[int, int]:
    """(correct, counted): argmax predictions equal to the target at positions whose target is not -100."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = counted = 0
    try:
        for lo in range(0, inputs.shape[0], batch_size):
            x = inputs[lo: lo + batch_size].to(device)
            y = targets[lo: lo + batch_size].to(device)
            mask = y != IGNORE
            pred = model(x).argmax(-1)  # [b, T]
            correct += int((pred.eq(y) & mask).sum())
            counted += int(mask.sum())
    finally:
        model.train(was_training)
    return correct, counted


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_on_task(model_cfg, task: Task, recipe: TrainRecipe | None = None, *, device=None, dtype=None,
                  label: str = "", progress: bool = True,
                  on_eval: Callable[[dict], Any] | None = None) -> TaskResult:
    """Build ``model_cfg`` (vocabulary set to the task's) from scratch, train it on fresh batches
    of ``task`` with ``recipe`` and report held-out accuracy every ``eval_every`` steps."""
    from archlab.model import build

    recipe = recipe or TrainRecipe()
    cfg = task_model_config(model_cfg, task)
    device = torch.device(device) if device is not None else torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build(cfg, device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(recipe.seed)
    held_x, held_y = task.sample(recipe.eval_examples, torch.Generator().manual_seed(recipe.seed + HELD_OUT_SEED))
    opt = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(recipe.beta1, recipe.beta2))
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = progress_bar(recipe.steps, label or "train on task", progress)
    running, n_running = 0.0, 0
    acc = best = 0.0
    step = 0
    model.train()
    try:
        for step in range(1, recipe.steps + 1):
            for group in opt.param_groups:
                group["lr"] = recipe.lr_at(step - 1)
            x, y = task.sample(recipe.batch_size, gen)
            x, y = x.to(device), y.to(device)
            logits = model(x)  # [B, T, V]
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)  # [B*T, V]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            running += float(loss.detach())
            n_running += 1
            bar.update(1)
            if step % recipe.eval_every == 0 or step == recipe.steps:
                c, n = task_accuracy(model, held_x, held_y)
                acc = c / max(1, n)
                best = max(best, acc)
                row = {"step": step, "loss": running / n_running, "accuracy": acc,
                       "seconds": round(time.perf_counter() - t0, 2)}
                history.append(row)
                running, n_running = 0.0, 0
                bar.set_postfix_str(f"loss {row['loss']:.3f} acc {acc:.3f}")
                if on_eval is not None:
                    on_eval(row)
                if recipe.stop_at is not None and acc >= recipe.stop_at:
                    break
    finally:
        bar.close()
    return TaskResult(accuracy=acc, best_accuracy=best, steps=step, seconds=round(time.perf_counter() - t0, 2),
                      params=sum(p.numel() for p in model.parameters()), history=history, task=task.to_dict(),
                      recipe=recipe.to_dict(), model=cfg.to_dict(), label=label)


def sweep_lr(model_cfg, task: Task, recipe: TrainRecipe, lrs: Sequence[float], **kw) -> TaskResult:
    """Train once per learning rate and keep the run with the best held-out accuracy (as Zoology)."""
    if not lrs:
        raise ConfigError("lrs: give at least one learning rate")
    runs = [train_on_task(model_cfg, task, recipe.replace(lr=float(lr)), **kw) for lr in lrs]
    best = max(runs, key=lambda r: r.best_accuracy)
    best.history.append({"sweep": [{"lr": r.recipe["lr"], "best_accuracy": r.best_accuracy} for r in runs]})
    return best

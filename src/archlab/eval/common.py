"""Shared pieces of the evaluations: per-token losses, the evaluated model's device, progress.

Shapes: B batch, T tokens, V vocabulary.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ConfigError

X = TypeVar("X")

IGNORE = -100  # target id that carries no loss (cross_entropy's ignore_index)


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def token_losses(model: nn.Module, window: torch.Tensor) -> torch.Tensor:
    """window [B, T+1] int64 -> per-token cross-entropy [B, T] float32 (nats), no reduction.

    Inputs are ``window[:, :-1]``, targets ``window[:, 1:]``; logits are upcast to float32
    before the softmax so bf16 models are scored at float32 accuracy.
    """
    window = window.to(model_device(model))
    logits = model(window[:, :-1])  # [B, T, V]
    B, T, V = logits.shape
    return F.cross_entropy(logits.float().reshape(B * T, V), window[:, 1:].reshape(B * T),
                           reduction="none").reshape(B, T)  # [B*T] -> [B, T]


def check_positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
    return value


class _Plain:
    """Fallback bar without tqdm: one line to stderr every few seconds."""

    def __init__(self, total: int | None, desc: str):
        self.total, self.desc, self.n, self.last = total, desc, 0, time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last > 5.0:
            self.last = now
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.n}{of}", file=sys.stderr, flush=True)

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


class _Null(_Plain):
    def update(self, n: int = 1) -> None:
        pass


def progress_bar(total: int | None, desc: str, enabled: bool = True) -> Any:
    """An object with ``update(n)``, ``set_postfix_str(s)`` and ``close()`` (tqdm when installed)."""
    if not enabled:
        return _Null(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def with_progress(items: Iterable[X], total: int | None, desc: str, enabled: bool = True) -> Iterator[X]:
    bar = progress_bar(total, desc, enabled)
    try:
        for x in items:
            yield x
            bar.update(1)
    finally:
        bar.close()

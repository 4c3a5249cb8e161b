"""What the trainer reads: any object with the TokenDataset methods below.

``archlab.data.TokenDataset`` is the usual one; ``TokenTensorDataset`` wraps token tensors in
memory (synthetic data for tests and benchmarks) with the same deterministic batches.

Shapes: B batch, T sequence length (a window holds T + 1 tokens), N tokens.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from archlab.errors import ConfigError


@runtime_checkable
class TrainData(Protocol):
    vocab_size: int

    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        """The [B, T+1] int64 windows of optimizer step ``step``: a pure function of its arguments."""
        ...

    def iter_eval_windows(self, seq_len: int, batch_size: int = 16, split: str = "val") -> Iterator[torch.Tensor]:
        """The validation split once, in order, as [b, T+1] int64 batches."""
        ...


class TokenTensorDataset:
    """Token ids in memory as a training set: ``train`` [N] and optional ``val`` [M] int tensors.

    Step ``s`` reads windows at offsets drawn from a generator seeded by (seed, s), so batches
    are reproducible and independent of the steps before (a resumed run reads the same ones).
    """

    def __init__(self, train: torch.Tensor, val: torch.Tensor | None = None, *, vocab_size: int | None = None,
                 tokenizer: Any = None, name: str = "tensor"):
        for label, t in (("train", train), ("val", val)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.dim() != 1 or t.is_floating_point()):
                raise ConfigError(f"{label}: expected a 1-D integer tensor of token ids, got "
                                  f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if train.numel() < 2:
            raise ConfigError(f"train: needs at least 2 tokens, got {train.numel()}")
        self.train = train.long().cpu()
        self.val = (val if val is not None else train).long().cpu()
        top = int(max(self.train.max(), self.val.max())) + 1
        self.vocab_size = int(vocab_size) if vocab_size is not None else top
        if top > self.vocab_size or int(min(self.train.min(), self.val.min())) < 0:
            raise ConfigError(f"vocab_size: token ids must lie in [0, {self.vocab_size}), got ids up to {top - 1}")
        self.tokenizer = tokenizer
        self.name = name

    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
        n = self.train.numel() - seq_len - 1
        if n < 0:
            raise ConfigError(f"seq_len: {seq_len} + 1 tokens do not fit in the {self.train.numel()} training tokens")
        rng = np.random.default_rng([seed, step])
        starts = torch.from_numpy(rng.integers(0, n + 1, size=batch_size))  # [B]
        idx = starts[:, None] + torch.arange(seq_len + 1)  # [B, T+1]
        return self.train[idx]

    def iter_eval_windows(self, seq_len: int, batch_size: int = 16, split: str = "val") -> Iterator[torch.Tensor]:
        toks = self.val if split == "val" else self.train
        n_full = (toks.numel() - 1) // seq_len
        for lo in range(0, n_full, batch_size):
            starts = torch.arange(lo, min(lo + batch_size, n_full)) * seq_len  # [b]
            yield toks[starts[:, None] + torch.arange(seq_len + 1)]  # [b, T+1]

    def describe(self) -> dict:
        return {"name": self.name, "train_tokens": self.train.numel(), "val_tokens": self.val.numel(),
                "vocab_size": self.vocab_size}


def describe_data(ds: Any) -> dict:
    """What a checkpoint records about the data: enough to notice a resume on different data."""
    d = ds.describe() if hasattr(ds, "describe") else {}
    corpus = d.get("corpus", {}) if isinstance(d.get("corpus"), dict) else {}
    tok = d.get("tokenizer", {}) if isinstance(d.get("tokenizer"), dict) else {}
    return {k: v for k, v in {
        "name": corpus.get("name", d.get("name")),
        "fingerprint": corpus.get("fingerprint"),
        "tokenizer": tok.get("spec"),
        "n_tokens": d.get("n_tokens", d.get("train_tokens")),
        "vocab_size": getattr(ds, "vocab_size", None),
    }.items() if v is not None}

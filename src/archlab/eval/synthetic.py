"""Copying and induction: quick diagnostics of in-context retrieval.

Copying: ``x_1..x_n SEP x_1..x_n``; the model must reproduce the sequence after the separator.
Induction (Olsson et al. 2022, "In-context Learning and Induction Heads"): a random sequence
repeated, ``x_1..x_n x_1..x_n``; on the second copy, token ``x_{i+1}`` follows from having
seen ``x_i x_{i+1}`` earlier. Both can be learned from scratch (``train_on_task``) or run
zero-shot on a trained language model (``zero_shot``): a model with induction heads has a
far lower loss on the second copy than on the first (random, unpredictable) one.

Tokens are drawn from ``[token_lo, token_hi)`` so a byte-level model can be probed with
printable characters (32..127). Shapes: B batch, N copied length, T = 2N tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.configbase import Config
from archlab.errors import check
from archlab.eval.common import IGNORE, model_device


def _check_range(section: str, vocab_size: int, lo: int, hi: int | None, n: int) -> None:
    top = vocab_size if hi is None else hi
    check(n >= 2, f"{section}.length", f"must be >= 2, got {n}")
    check(0 <= lo < top <= vocab_size, f"{section}.token_hi",
          f"tokens are drawn from [token_lo, token_hi) inside [0, vocab_size={vocab_size}); got [{lo}, {top})")


@dataclass(frozen=True)
class CopyConfig(Config):
    _section = "copy"

    vocab_size: int = 64  # model vocabulary
    length: int = 16  # tokens to copy (the sequence is 2 * length tokens)
    token_lo: int = 1  # copied tokens are drawn from [token_lo, token_hi)
    token_hi: int | None = None  # None = vocab_size
    separator: int = 0  # id between the sequence and its copy

    def __post_init__(self) -> None:
        _check_range("copy", self.vocab_size, self.token_lo, self.token_hi, self.length)
        check(0 <= self.separator < self.vocab_size, "copy.separator", f"must be in [0, {self.vocab_size})")

    @property
    def seq_len(self) -> int:
        return 2 * self.length

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs ``[x, SEP, x[:-1]]`` [B, 2N]; targets x at the last N positions, -100 before."""
        N = self.length
        x = torch.randint(self.token_lo, self.token_hi or self.vocab_size, (batch_size, N), generator=generator)
        sep = torch.full((batch_size, 1), self.separator, dtype=torch.int64)
        inputs = torch.cat([x, sep, x[:, :-1]], dim=1)  # [B, 2N]
        targets = torch.cat([torch.full((batch_size, N), IGNORE, dtype=torch.int64), x], dim=1)  # [B, 2N]
        return inputs, targets


@dataclass(frozen=True)
class InductionConfig(Config):
    _section = "induction"

    vocab_size: int = 64  # model vocabulary
    length: int = 32  # tokens of the random prefix (the sequence is the prefix twice)
    token_lo: int = 0  # tokens are drawn from [token_lo, token_hi)
    token_hi: int | None = None  # None = vocab_size

    def __post_init__(self) -> None:
        _check_range("induction", self.vocab_size, self.token_lo, self.token_hi, self.length)

    @property
    def seq_len(self) -> int:
        return 2 * self.length

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs ``[x, x]`` [B, 2N]; targets ``x_{i+1}`` on the second copy (positions N..2N-2)."""
        N = self.length
        x = torch.randint(self.token_lo, self.token_hi or self.vocab_size, (batch_size, N), generator=generator)
        inputs = torch.cat([x, x], dim=1)  # [B, 2N]
        targets = torch.full_like(inputs, IGNORE)
        targets[:, N: 2 * N - 1] = x[:, 1:]
        return inputs, targets


@torch.no_grad()
def zero_shot(model: nn.Module, task, *, n_sequences: int = 256, batch_size: int = 64, seed: int = 0) -> dict:
    """Accuracy and mean loss at the task's target positions, on a model trained for something else.

    Also the mean loss on the first half of each sequence (``first_half_loss``): for induction it is
    the loss on unpredictable random tokens, so ``first_half_loss - loss`` measures in-context copying.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs, targets = task.sample(n_sequences, gen)
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = counted = 0
    loss_sum = first_sum = 0.0
    first_n = 0
    N = task.seq_len // 2
    try:
        for lo in range(0, n_sequences, batch_size):
            x, y = inputs[lo: lo + batch_size].to(device), targets[lo: lo + batch_size].to(device)
            logits = model(x).float()  # [b, T, V]
            mask = y != IGNORE
            correct += int((logits.argmax(-1).eq(y) & mask).sum())
            counted += int(mask.sum())
            ce = F.cross_entropy(logits.transpose(1, 2), y.clamp_min(0), reduction="none")  # [b, T]
            loss_sum += float(ce[mask].sum())
            # next-token loss on the first half: predicting x_{i+1} from x_1..x_i (no repeat yet)
            nxt = F.cross_entropy(logits[:, : N - 1].transpose(1, 2), x[:, 1:N], reduction="none")  # [b, N-1]
            first_sum += float(nxt.sum())
            first_n += nxt.numel()
    finally:
        model.train(was_training)
    return {"accuracy": correct / max(1, counted), "loss": loss_sum / max(1, counted),
            "first_half_loss": first_sum / max(1, first_n), "n_sequences": n_sequences, "task": task.to_dict()}

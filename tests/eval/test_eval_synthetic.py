"""Copying and induction generators, zero-shot scoring and training on them."""
from __future__ import annotations

import pytest
import torch

from archlab.errors import ConfigError
from archlab.eval.common import IGNORE
from archlab.eval.recipe import TrainRecipe, train_on_task
from archlab.eval.synthetic import CopyConfig, InductionConfig, zero_shot


def test_copy_layout():
    c = CopyConfig(vocab_size=20, length=5, token_lo=2, token_hi=10, separator=1)
    x, y = c.sample(50, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (50, 10) and c.seq_len == 10
    assert bool((x[:, 5] == 1).all()) and bool((y[:, :5] == IGNORE).all())
    torch.testing.assert_close(y[:, 5:], x[:, :5])  # targets are the sequence itself
    torch.testing.assert_close(x[:, 6:], x[:, :4])  # inputs after the separator are its shifted copy
    assert int(x[:, :5].min()) >= 2 and int(x[:, :5].max()) < 10


def test_induction_layout():
    c = InductionConfig(vocab_size=16, length=6)
    x, y = c.sample(30, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x[:, 6:], x[:, :6])
    mask = y != IGNORE
    assert mask.sum(1).tolist() == [5] * 30 and bool(mask[:, 6:11].all())
    torch.testing.assert_close(y[:, 6:11], x[:, 1:6])  # x_{i+1} follows the repeat of x_i


def test_errors_are_named():
    with pytest.raises(ConfigError, match="copy.token_hi"):
        CopyConfig(vocab_size=8, token_hi=9)
    with pytest.raises(ConfigError, match="induction.length"):
        InductionConfig(length=1)


def test_zero_shot_with_an_induction_oracle(h):
    def induct(prefix):  # the token that followed the last token's earlier occurrence
        last = prefix[-1]
        for i in range(len(prefix) - 2, -1, -1):
            if prefix[i] == last:
                return prefix[i + 1]
        return 0

    r = zero_shot(h.Lookup(64, induct), InductionConfig(vocab_size=64, length=8, token_lo=1), n_sequences=8)
    # a token repeated inside the random prefix misleads the oracle; with 63 symbols and 8 draws it is rare
    assert r["accuracy"] > 0.7 and r["loss"] < r["first_half_loss"]
    assert set(r) >= {"accuracy", "loss", "first_half_loss", "task"}


def test_training_on_copy_runs(h):
    r = train_on_task(h.tiny_cfg(), CopyConfig(vocab_size=16, length=4),
                      TrainRecipe(steps=2, batch_size=4, eval_every=2, eval_examples=4), progress=False)
    assert r.steps == 2 and 0 <= r.accuracy <= 1 and r.task["length"] == 4

"""Tiny models and synthetic token streams shared by the trainer tests (not a test module)."""
from __future__ import annotations

import torch

from archlab import presets
from archlab.train import RunConfig, TokenTensorDataset, TrainConfig


def tiny_model(**over):
    cfg = presets.get("llama-3-debug").replace(d_model=32, **{"attention.heads": 2, "attention.kv_heads": 1,
                                                              "ffn.hidden": 64})
    return cfg.replace(**over) if over else cfg


def tiny_data(vocab: int = 64, n: int = 6000, seed: int = 0) -> TokenTensorDataset:
    """A learnable stream: a repeating pattern with noise, so the loss falls within a few steps."""
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 17 * 3 % vocab
    noise = torch.randint(0, vocab, (n,), generator=g)
    toks = torch.where(torch.rand(n, generator=g) < 0.2, noise, base)
    return TokenTensorDataset(toks[: n * 9 // 10], toks[n * 9 // 10:], vocab_size=vocab)


def tiny_run(model=None, **train) -> RunConfig:
    base = dict(steps=8, batch_size=4, seq_len=16, eval_every=0, eval_batches=2, save_every=0, log_every=100,
                tensorboard=False)
    base.update(train)
    return RunConfig(model=model or tiny_model(), train=TrainConfig(**base))


import pytest  # noqa: E402


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models run faster on one thread, and much faster on a busy shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

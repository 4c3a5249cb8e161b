"""Tiny models, a tiny byte-level dataset and oracle models for the evaluation tests."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import archlab
from archlab.data.corpus import CorpusBuilder
from archlab.data.dataset import TokenDataset
from archlab.data.tokenizer import ByteTokenizer


def tiny_cfg(**over):
    cfg = archlab.ModelConfig(vocab_size=258, d_model=32, n_layers=2).replace(**{"attention.heads": 4})
    return cfg.replace(**over) if over else cfg


def tiny_corpus(n_docs: int = 40, seed: int = 0):
    rng = random.Random(seed)
    b = CorpusBuilder("evaltest")
    for i in range(n_docs):
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "\n"]) for _ in range(rng.randint(20, 120))]
        b.add_text(f"doc{i:03d}", " ".join(words), f"doc{i}")
    return b.finish("evaltest")


@pytest.fixture(scope="session")
def byte_ds(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcache")
    return TokenDataset.build(tiny_corpus(), ByteTokenizer(), cache_dir=d, val_fraction=0.3, progress=False)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return archlab.build(tiny_cfg()).eval()


class Uniform(nn.Module):
    """All logits zero: every token has probability 1/V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, cache=None):
        return torch.zeros(*ids.shape, self.vocab) + 0 * self.dummy


class Lookup(nn.Module):
    """Predicts with a Python function of each row's prefix: ``fn(prefix_ids) -> next id``."""

    def __init__(self, vocab: int, fn):
        super().__init__()
        self.vocab, self.fn = vocab, fn
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids, cache=None):
        B, T = ids.shape
        out = torch.full((B, T, self.vocab), -10.0)
        rows = ids.tolist()
        for b in range(B):
            for t in range(T):
                out[b, t, self.fn(rows[b][: t + 1])] = 10.0
        return out


@pytest.fixture(scope="session")
def h():
    """The helpers above (test files cannot import conftest under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(tiny_cfg=tiny_cfg, tiny_corpus=tiny_corpus, Uniform=Uniform, Lookup=Lookup)

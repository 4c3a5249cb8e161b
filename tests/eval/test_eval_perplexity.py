"""Perplexity: the token count, the exact mean against a direct computation, the bootstrap interval."""
from __future__ import annotations

import math

import numpy as np
import pytest

from archlab.eval.common import token_losses
from archlab.eval.perplexity import bootstrap_ratio_ci, perplexity



def test_uniform_model_has_perplexity_vocab(byte_ds, h):
    r = perplexity(h.Uniform(258), byte_ds, seq_len=32, batch_size=4, progress=False)
    assert r.n_tokens == byte_ds.val.n_tokens - 1
    assert r.loss == pytest.approx(math.log(258), rel=1e-6) and r.perplexity == pytest.approx(258, rel=1e-5)
    lo, hi = r.perplexity_ci
    assert lo == pytest.approx(258, rel=1e-5) and hi == pytest.approx(258, rel=1e-5)  # every document alike
    assert r.n_docs == len(byte_ds.val.lengths) and r.split == "val" and r.seq_len == 32


def test_mean_matches_direct_sum(tiny_model, byte_ds):
    r = perplexity(tiny_model, byte_ds, seq_len=64, batch_size=4, n_bootstrap=200, max_tokens=1000, progress=False)
    total, n = 0.0, 0
    for w in byte_ds.iter_eval_windows(64, 4):
        lo = token_losses(tiny_model, w)
        total += float(lo.double().sum())
        n += lo.numel()
        if n >= 1000:
            break
    assert n == r.n_tokens == 1024 and r.n_docs >= 2 and r.loss == pytest.approx(total / n, rel=1e-9)
    assert r.loss_ci[0] <= r.loss <= r.loss_ci[1] and r.loss_ci[0] < r.loss_ci[1]
    d = r.to_dict()
    assert d["perplexity"] == pytest.approx(math.exp(r.loss)) and "summary" not in d


def test_max_tokens_stops_early(tiny_model, byte_ds):
    r = perplexity(tiny_model, byte_ds, seq_len=16, batch_size=2, max_tokens=40, progress=False)
    assert 40 <= r.n_tokens <= 64


def test_bootstrap_interval_width_follows_document_spread():
    rng = np.random.default_rng(0)
    counts = np.full(200, 100.0)
    same = counts * 2.0
    spread = counts * rng.uniform(1.0, 3.0, 200)
    lo, hi = bootstrap_ratio_ci(same, counts, 500, 0.95, 0)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    lo, hi = bootstrap_ratio_ci(spread, counts, 500, 0.95, 0)
    # the mean of 200 U(1, 3) draws has std 0.577 / sqrt(200) = 0.041: a 95% interval about 0.16 wide
    assert 0.1 < hi - lo < 0.25 and lo < spread.sum() / counts.sum() < hi


def test_bad_arguments_are_named(byte_ds, tiny_model):
    with pytest.raises(ValueError, match="seq_len"):
        perplexity(tiny_model, byte_ds, seq_len=0)
    with pytest.raises(ValueError, match="confidence"):
        perplexity(tiny_model, byte_ds, seq_len=8, confidence=1.5)
    with pytest.raises(ValueError, match="split"):
        perplexity(tiny_model, byte_ds, seq_len=8, split="test")

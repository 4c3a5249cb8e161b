"""Corpus statistics used as baselines: the unigram entropy of a split's tokens."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np

from archlab.data.errors import DataError

if TYPE_CHECKING:
    from archlab.data.dataset import TokenDataset

_CHUNK = 1 << 24  # tokens counted per bincount call, bounding memory on large caches


def token_counts(dataset: "TokenDataset", split: Literal["train", "val", "all"] = "train") -> np.ndarray:
    """``[vocab_size]`` int64 counts of each token id in ``split`` (eos included)."""
    v = dataset.vocab_size
    if split == "all":
        counts = np.zeros(v, dtype=np.int64)
        for lo in range(0, dataset.n_tokens, _CHUNK):
            counts += np.bincount(dataset.tokens[lo: lo + _CHUNK], minlength=v)
        return counts
    if split not in ("train", "val"):
        raise DataError(f"split must be 'train', 'val' or 'all', got {split!r}")
    # the val split is the small one: count it piece by piece, and train as the rest
    val = np.zeros(v, dtype=np.int64)
    for start, length in zip(dataset.val.starts.tolist(), dataset.val.lengths.tolist()):
        for lo in range(start, start + length, _CHUNK):
            val += np.bincount(dataset.tokens[lo: min(lo + _CHUNK, start + length)], minlength=v)
    return val if split == "val" else token_counts(dataset, "all") - val


def unigram_entropy(
    dataset: "TokenDataset",
    split: Literal["train", "val", "all"] = "train",
    unit: Literal["nats", "bits"] = "nats",
) -> float:
    """Entropy of the token frequencies of ``split``: the loss per token of a model that knows
    only how often each token occurs (nats by default, as cross-entropy losses are reported).
    A trained model's validation loss should end well below it."""
    if unit not in ("nats", "bits"):
        raise DataError(f"unit must be 'nats' or 'bits', got {unit!r}")
    counts = token_counts(dataset, split)
    total = counts.sum()
    if total == 0:
        raise DataError(f"the {split} split is empty; no entropy to compute")
    p = counts[counts > 0] / total
    h = float(-(p * np.log(p)).sum())
    return h / math.log(2) if unit == "bits" else h

"""Token caches, the split by document, batch sampling, eval windows and the unigram baseline."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from archlab.errors import ConfigError
from archlab.data import dataset as dataset_mod
from archlab.data.config import DataConfig, prepare_dataset
from archlab.data.corpus import CorpusBuilder
from archlab.data.dataset import TokenDataset, dataset_dir
from archlab.data.errors import DataError
from archlab.data.split import doc_key, split_by_document
from archlab.data.stats import unigram_entropy
from archlab.data.tokenizer import ByteTokenizer


def _corpus(n_docs: int = 60, seed: int = 0, name: str = "synthetic"):
    rng = random.Random(seed)
    b = CorpusBuilder(name)
    for i in range(n_docs):
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "é", "\n"]) for _ in range(rng.randint(5, 80))]
        b.add_text(f"doc{i:03d}", " ".join(words), f"doc{i}")
    return b.finish(name)


@pytest.fixture
def ds(tmp_path):
    return TokenDataset.build(_corpus(), ByteTokenizer(), cache_dir=tmp_path, val_fraction=0.2, progress=False)


def _stream(ds, split):
    seg = ds.segments(split)
    return np.concatenate([ds.tokens[s: s + n] for s, n in zip(seg.starts, seg.lengths)]).astype(np.int64)


# -- the cache -------------------------------------------------------------------------------------
def test_cache_holds_documents_each_followed_by_eos(ds):
    corpus = _corpus()
    expected = np.concatenate([np.array(list(d.encode()) + [257]) for d in corpus.documents])
    assert ds.tokens.dtype == np.uint16 and np.array_equal(np.asarray(ds.tokens), expected)
    assert ds.offsets[0] == 0 and ds.offsets[-1] == ds.n_tokens == len(expected)
    assert ds.n_docs == len(corpus)
    desc = ds.describe()
    assert desc["corpus"]["fingerprint"] == corpus.fingerprint and desc["tokenizer"]["spec"] == "byte"
    assert TokenDataset.open(ds.directory, val_fraction=0.2).describe()["val_tokens"] == ds.val.n_tokens


def test_cache_is_built_once_and_rebuilt_when_incomplete(tmp_path, monkeypatch):
    corpus, tok = _corpus(), ByteTokenizer()
    TokenDataset.build(corpus, tok, cache_dir=tmp_path, progress=False)
    calls = []
    real = dataset_mod.build_token_cache
    monkeypatch.setattr(dataset_mod, "build_token_cache", lambda *a, **k: calls.append(1) or real(*a, **k))
    TokenDataset.build(corpus, tok, cache_dir=tmp_path, progress=False)
    assert calls == []
    d = dataset_dir(corpus, tok, tmp_path)
    (d / "meta.json").unlink()  # an interrupted build: meta.json is written last
    TokenDataset.build(corpus, tok, cache_dir=tmp_path, progress=False)
    assert calls == [1]
    with open(d / "tokens.bin", "ab") as f:  # a file of the wrong size is not trusted
        f.write(b"xx")
    TokenDataset.build(corpus, tok, cache_dir=tmp_path, progress=False)
    assert calls == [1, 1] and not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(DataError, match="not a complete token cache"):
        TokenDataset.open(tmp_path)


def test_cache_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "env"))
    ds = TokenDataset.build(_corpus(10), ByteTokenizer(), val_fraction=0.0, progress=True)
    assert str(ds.directory).startswith(str(tmp_path / "env"))


class _WideTokenizer(ByteTokenizer):
    """Only the protocol's encode (no encode_arrays) and a vocabulary past uint16."""

    spec = "wide"
    encode_arrays = None  # type: ignore[assignment]

    def __init__(self):
        super().__init__()
        self.vocab_size = 70_000
        self.eos_id = 69_999

    @property
    def cache_key(self):
        return "wide"


def test_large_vocabulary_uses_uint32_and_plain_encode(tmp_path):
    ds = TokenDataset.build(_corpus(5), _WideTokenizer(), cache_dir=tmp_path, val_fraction=0.0, progress=False)
    assert ds.tokens.dtype == np.uint32 and ds.tokens[ds.offsets[1] - 1] == 69_999


# -- the split -------------------------------------------------------------------------------------
def test_split_partitions_tokens_and_is_deterministic(ds, tmp_path):
    assert ds.train.n_tokens + ds.val.n_tokens == ds.n_tokens
    assert 0.05 < ds.val.n_tokens / ds.n_tokens < 0.45
    both = np.concatenate([np.arange(s, s + n) for seg in (ds.train, ds.val) for s, n in zip(seg.starts, seg.lengths)])
    assert np.array_equal(np.sort(both), np.arange(ds.n_tokens))
    again = TokenDataset.open(ds.directory, val_fraction=0.2)
    assert np.array_equal(again.val.starts, ds.val.starts)


def test_adding_documents_does_not_move_others():
    rng = np.random.default_rng(0)
    ids = [f"file{i}.py" for i in range(300)]
    lengths = rng.integers(1, 500, size=400)

    def membership(n):
        offsets = np.concatenate([[0], np.cumsum(lengths[:n])])
        _, val = split_by_document(offsets, np.array([doc_key(i) for i in ids[:n]], dtype=np.uint64), 0.1)
        return {ids[int(np.searchsorted(offsets, s, side="right") - 1)] for s in val.starts}

    small, large = membership(200), membership(300)
    assert small and small == {i for i in large if int(i[4:-3]) < 200}


def test_one_long_document_is_split_in_units_and_tiny_corpus_is_an_error():
    offsets = np.array([0, 100_000])
    train, val = split_by_document(offsets, np.array([doc_key("big.txt")], dtype=np.uint64), 0.1, unit_tokens=1000)
    assert train.n_tokens + val.n_tokens == 100_000 and 0 < val.n_tokens < 30_000
    with pytest.raises(DataError, match="too small to split"):
        split_by_document(np.array([0, 10]), np.array([1], dtype=np.uint64), 0.1)
    train, val = split_by_document(np.array([0, 10]), np.array([1], dtype=np.uint64), 0.0)
    assert (train.n_tokens, val.n_tokens) == (10, 0)


# -- training batches ------------------------------------------------------------------------------
def test_batches_are_deterministic_and_resumable(ds):
    first = [b for _, b in zip(range(6), ds.batches(4, 16, seed=7))]
    assert all(b.shape == (4, 17) and b.dtype == torch.int64 for b in first)
    dataset_mod._epoch_order.cache_clear()  # a fresh process: nothing remembered from earlier steps
    resumed = next(ds.batches(4, 16, seed=7, start_step=5))
    assert torch.equal(resumed, first[5]) and torch.equal(ds.batch(2, 4, 16, 7), first[2])
    assert not torch.equal(ds.batch(0, 4, 16, 8), first[0])


def test_batches_are_train_windows_covering_each_epoch_once(ds):
    stream = _stream(ds, "train")
    T, B = 16, 5
    n_windows = (len(stream) - 1) // T
    steps = n_windows // B  # whole steps inside epoch 0
    starts = np.concatenate([ds._train_starts(s, B, T, 3) for s in range(steps)])
    assert len(set(starts.tolist())) == len(starts)  # no window twice within an epoch
    shift = starts.min() % T
    assert set(((starts - shift) // T).tolist()) <= set(range(n_windows)) and np.all((starts - shift) % T == 0)
    for step in (0, steps - 1, steps + 3):  # the last check crosses into epoch 1
        batch = ds.batch(step, B, T, 3).numpy()
        for row, s in zip(batch, ds._train_starts(step, B, T, 3)):
            assert np.array_equal(row, stream[s: s + T + 1])


def test_batch_argument_errors(ds):
    with pytest.raises(DataError, match="seq_len must be an integer >= 1"):
        ds.batch(0, 2, 0, 0)
    with pytest.raises(DataError, match="too few for one window"):
        ds.batch(0, 2, 10 ** 7, 0)


# -- evaluation windows ----------------------------------------------------------------------------
@pytest.mark.parametrize("seq_len", [7, 16, 1000])
def test_eval_windows_cover_the_val_split_exactly_once(ds, seq_len):
    val = _stream(ds, "val")
    batches = list(ds.iter_eval_windows(seq_len, batch_size=3))
    assert all(b.shape[0] <= 3 and b.dtype == torch.int64 for b in batches)
    rows = [r for b in batches for r in b.numpy()]
    assert sum(len(r) - 1 for r in rows) == len(val) - 1  # every token after the first is a target once
    rebuilt = np.concatenate([rows[0]] + [r[1:] for r in rows[1:]])
    assert np.array_equal(rebuilt, val)


def test_eval_without_validation_is_an_error(tmp_path):
    ds = TokenDataset.build(_corpus(), ByteTokenizer(), cache_dir=tmp_path, val_fraction=0.0, progress=False)
    with pytest.raises(DataError, match="nothing to evaluate"):
        next(ds.iter_eval_windows(8))


# -- unigram baseline ------------------------------------------------------------------------------
def test_unigram_entropy_matches_direct_count(ds):
    for split in ("train", "val"):
        stream = _stream(ds, split)
        p = np.bincount(stream) / len(stream)
        p = p[p > 0]
        expected = float(-(p * np.log(p)).sum())
        assert unigram_entropy(ds, split) == pytest.approx(expected, rel=1e-12)
        assert unigram_entropy(ds, split, unit="bits") == pytest.approx(expected / math.log(2), rel=1e-12)


# -- config and one-call preparation ---------------------------------------------------------------
def test_prepare_dataset_from_config(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, d in enumerate(_corpus(30).documents):
        (folder / f"{i:02d}.txt").write_text(d)
    cfg = DataConfig.from_dict({"corpus": f"text:{folder}", "val_fraction": 0.25, "cache_dir": str(tmp_path / "c"),
                                "max_docs": 20})
    ds = prepare_dataset(cfg, progress=False)
    assert ds.n_docs == 20 and ds.val.n_tokens > 0 and ds.describe()["corpus"]["name"] == f"text:{folder}"
    assert json.loads(cfg.to_json())["max_docs"] == 20
    same = prepare_dataset(cfg, progress=False, max_docs=20)
    assert same.directory == ds.directory


@pytest.mark.parametrize("bad, field", [
    ({"val_fraction": 1.0}, "data.val_fraction"),
    ({"corpus": "csv:x.csv"}, "data.corpus"),
    ({"tokenizer": "bpe:12"}, "data.tokenizer"),
    ({"max_docs": 0}, "data.max_docs"),
    ({"decode_errors": "ignore"}, "decode_errors"),
    ({"corpsu": "stdlib"}, "corpsu"),
])
def test_data_config_rejects_bad_values(bad, field):
    with pytest.raises(ConfigError, match=field):
        DataConfig.from_dict(bad)

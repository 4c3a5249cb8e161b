"""Tokenizers: byte-level round trip, BPE training/caching/determinism, tokenizer.json files."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from archlab.errors import ConfigError
from archlab.data.corpus import CorpusBuilder
from archlab.data.errors import DataError
from archlab.data.tokenizer import ByteTokenizer, Tokenizer, get_tokenizer, load_tokenizer, parse_tokenizer_spec

WORDS = "the quick brown fox jumps over lazy dog def return self value import from class".split()


def _corpus(n_docs: int = 40, seed: int = 0):
    import random

    rng = random.Random(seed)
    b = CorpusBuilder("synthetic")
    for i in range(n_docs):
        b.add_text(f"doc{i}", " ".join(rng.choice(WORDS) for _ in range(60)) + f" ünïcode {i}\n", f"doc{i}")
    return b.finish("synthetic")


@given(st.text(max_size=200))
@settings(max_examples=60, deadline=None)
def test_byte_tokenizer_round_trips_any_text(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode([tok.bos_id, *ids, tok.eos_id]) == text  # specials are dropped


def test_byte_tokenizer_shape_and_save_load(tmp_path):
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.bos_id, tok.eos_id, tok.spec) == (258, 256, 257, "byte")
    assert isinstance(tok, Tokenizer)
    tok.save(tmp_path)
    assert isinstance(load_tokenizer(tmp_path), ByteTokenizer)
    assert get_tokenizer("byte").encode("é") == [0xC3, 0xA9]


def test_tokenizer_spec_errors():
    assert parse_tokenizer_spec("bpe:8192") == ("bpe", "8192")
    for bad in ["", "bpe", "bpe:100", "bpe:lots", "sentencepiece:x", "hf:"]:
        with pytest.raises(ConfigError, match="data.tokenizer"):
            parse_tokenizer_spec(bad)
    with pytest.raises(ConfigError, match="pass corpus="):
        get_tokenizer("bpe:300")


@pytest.fixture(scope="module")
def bpe_mod():
    pytest.importorskip("tokenizers", reason="needs the 'bpe' extra (tokenizers)")
    from archlab.data import bpe

    return bpe


def test_bpe_trains_deterministically_and_round_trips(bpe_mod):
    corpus = _corpus()
    a = bpe_mod.BPETokenizer.train(corpus.documents, 320)
    b = bpe_mod.BPETokenizer.train(corpus.documents, 320)
    assert a.cache_key == b.cache_key and a.vocab_size == 320
    assert (a.bos_id, a.eos_id) == (0, 1)
    text = corpus.documents[3]
    ids = a.encode(text)
    assert len(ids) < len(text.encode()) / 2  # merges learned from the corpus compress it
    assert a.decode(ids) == text
    # the special names inside user text stay text
    assert a.eos_id not in a.encode("a <|eos|> b") and a.decode(a.encode("a <|eos|> b")) == "a <|eos|> b"


@given(st.text(max_size=100))
@settings(max_examples=40, deadline=None)
def test_bpe_round_trips_unseen_text(text):
    pytest.importorskip("tokenizers", reason="needs the 'bpe' extra (tokenizers)")
    tok = _trained()
    assert tok.decode(tok.encode(text)) == text


_TRAINED = {}


def _trained():
    if "t" not in _TRAINED:
        from archlab.data.bpe import BPETokenizer

        _TRAINED["t"] = BPETokenizer.train(_corpus().documents, 300)
    return _TRAINED["t"]


def test_get_tokenizer_trains_once_then_loads_from_cache(bpe_mod, tmp_path, monkeypatch):
    corpus = _corpus()
    first = get_tokenizer("bpe:300", corpus, tmp_path, progress=False)
    saved = list((tmp_path / "tokenizers").rglob("tokenizer.json"))
    assert len(saved) == 1 and corpus.fingerprint in str(saved[0])

    def no_training(*a, **k):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(bpe_mod.BPETokenizer, "train", no_training)
    second = get_tokenizer("bpe:300", corpus, tmp_path)
    assert second.cache_key == first.cache_key and second.encode("the fox") == first.encode("the fox")
    assert load_tokenizer(saved[0].parent).cache_key == first.cache_key


def test_hf_tokenizer_file_from_model_folder(bpe_mod, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    tok = _trained()
    (model / "tokenizer.json").write_text(tok._tok.to_str())
    (model / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|eos|>"}, "bos_token": "<|bos|>"}))
    hf = get_tokenizer(f"hf:{model}")
    assert (hf.eos_id, hf.bos_id, hf.vocab_size) == (1, 0, tok.vocab_size)
    assert hf.encode("the quick fox") == tok.encode("the quick fox")
    # a bare tokenizer.json: eos found among common names
    (model / "tokenizer_config.json").unlink()
    assert get_tokenizer(f"hf:{model / 'tokenizer.json'}").eos_id == 1
    hf.save(tmp_path / "copy")
    assert load_tokenizer(tmp_path / "copy").encode("lazy dog") == tok.encode("lazy dog")


def test_hf_tokenizer_file_errors(bpe_mod, tmp_path):
    with pytest.raises(DataError, match="has no tokenizer.json"):
        get_tokenizer(f"hf:{tmp_path}")
    with pytest.raises(DataError, match="no such file"):
        get_tokenizer(f"hf:{tmp_path / 'missing.json'}")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid tokenizer.json"):
        get_tokenizer(f"hf:{tmp_path}")
    with pytest.raises(DataError, match="holds no saved tokenizer"):
        load_tokenizer(tmp_path)

"""Tokenizers: the ``Tokenizer`` protocol, the byte-level default, and ``get_tokenizer(spec)``.

Specs:
- ``byte``: UTF-8 bytes, no training; vocabulary 256 bytes + ``<|bos|>`` (256) + ``<|eos|>`` (257).
- ``bpe:N``: byte-level BPE with vocabulary N trained on the corpus with Hugging Face
  ``tokenizers`` (extra ``bpe``), saved once as ``tokenizer.json`` in the cache, keyed by the
  corpus fingerprint, and copied beside every token cache built with it.
- ``hf:PATH``: any ``tokenizer.json``, or a local model folder holding one (extra ``bpe``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

from archlab.errors import ConfigError
from archlab.data.cache import cache_root, safe_name, write_json
from archlab.data.errors import DataError

if TYPE_CHECKING:
    from archlab.data.corpus import Corpus

META_FILE = "archlab_tokenizer.json"  # which class saved a folder, read by load_tokenizer


@runtime_checkable
class Tokenizer(Protocol):
    """What the data layer, trainer and generator need from a tokenizer."""

    spec: str  # how it was asked for: "byte", "bpe:8192", "hf:PATH"
    vocab_size: int  # embedding rows the model needs (all ids are < vocab_size)
    eos_id: int | None  # appended after every document; None only for an hf file without one
    bos_id: int | None  # start-of-text id where the tokenizer has one

    @property
    def cache_key(self) -> str:
        """A file-name-safe identity: equal keys tokenize identically."""
        ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, directory: str | os.PathLike) -> None: ...

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer": ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: nothing to train, every string round-trips exactly."""

    spec = "byte"
    BOS = 256
    EOS = 257

    def __init__(self) -> None:
        self.vocab_size = 258
        self.bos_id: int | None = self.BOS
        self.eos_id: int | None = self.EOS

    @property
    def cache_key(self) -> str:
        return "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Batch form used to build token caches: one uint8 array per text, no Python loop per byte."""
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Bytes back to text; bos/eos are dropped and invalid UTF-8 becomes U+FFFD."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def save(self, directory: str | os.PathLike) -> None:
        write_json(Path(directory) / META_FILE, {"kind": "byte", "spec": self.spec})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ByteTokenizer":
        return cls()

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def parse_tokenizer_spec(spec: str) -> tuple[str, str]:
    """``(kind, argument)``: ("byte", ""), ("bpe", "8192") or ("hf", PATH)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"data.tokenizer: expected 'byte', 'bpe:VOCAB_SIZE' or 'hf:PATH', got {spec!r}")
    if spec == "byte":
        return "byte", ""
    head, sep, rest = spec.partition(":")
    if head == "bpe" and sep:
        if not rest.isdigit() or not 259 <= int(rest) <= 2**31 - 1:
            raise ConfigError(f"data.tokenizer: {spec!r}: the BPE vocabulary size must be an integer >= 259 "
                              f"(256 bytes + 2 specials + merges), e.g. bpe:8192")
        return "bpe", rest
    if head == "hf" and sep and rest:
        return "hf", rest
    raise ConfigError(f"data.tokenizer: {spec!r} is not accepted; expected 'byte', 'bpe:VOCAB_SIZE' (e.g. bpe:8192) "
                      f"or 'hf:PATH' (a tokenizer.json or a model folder holding one)")


def get_tokenizer(
    spec: str = "byte",
    corpus: "Corpus | None" = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    progress: bool = True,
) -> Tokenizer:
    """The tokenizer named by ``spec``; ``bpe:N`` is trained on ``corpus`` once and cached under
    ``<cache>/tokenizers/<corpus fingerprint>/bpe-N/``."""
    kind, arg = parse_tokenizer_spec(spec)
    if kind == "byte":
        return ByteTokenizer()
    from archlab.data.bpe import BPETokenizer, HFTokenizerFile

    if kind == "hf":
        return HFTokenizerFile.from_path(arg)
    if corpus is None:
        raise ConfigError(f"data.tokenizer: {spec!r} is trained on a corpus; pass corpus= to get_tokenizer")
    directory = cache_root(cache_dir) / "tokenizers" / safe_name(corpus.fingerprint) / f"bpe-{arg}"
    if (directory / META_FILE).exists():
        return BPETokenizer.load(directory)
    tok = BPETokenizer.train(corpus.documents, int(arg), progress=progress)
    tok.save(directory)
    return tok


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """A tokenizer saved by any of the classes here (reads ``archlab_tokenizer.json``)."""
    path = Path(directory) / META_FILE
    if not path.exists():
        raise DataError(f"{str(directory)!r} holds no saved tokenizer ({META_FILE} is missing)")
    kind = json.loads(path.read_text())["kind"]
    if kind == "byte":
        return ByteTokenizer.load(directory)
    from archlab.data.bpe import BPETokenizer, HFTokenizerFile

    if kind == "bpe":
        return BPETokenizer.load(directory)
    if kind == "hf":
        return HFTokenizerFile.load(directory)
    raise DataError(f"{str(path)!r}: unknown tokenizer kind {kind!r}; expected byte, bpe or hf")


def sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()

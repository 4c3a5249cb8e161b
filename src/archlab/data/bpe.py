"""Tokenizers backed by Hugging Face ``tokenizers`` (extra ``bpe``): a BPE trained on the corpus,
and any ``tokenizer.json`` from a local model folder."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from archlab.data.cache import atomic_open, write_json
from archlab.data.errors import DataError, require
from archlab.data.tokenizer import META_FILE, sha256_text

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
# end-of-text names used by common model families, tried in order when tokenizer_config.json is absent
EOS_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "<|im_end|>")
BOS_CANDIDATES = ("<|begin_of_text|>", "<s>", "<bos>", "<|bos|>", "<|startoftext|>")


def _tokenizers():
    return require("tokenizers", "bpe", "BPE and tokenizer.json tokenizers")


class _HFBacked:
    """Shared encode/decode over a ``tokenizers.Tokenizer``."""

    spec: str
    kind: str

    def __init__(self, tok: Any, spec: str, eos_id: int | None, bos_id: int | None):
        # text that happens to contain "<|eos|>" must stay text, never become the special id
        tok.encode_special_tokens = True
        self._tok = tok
        self.spec = spec
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self.eos_id = eos_id
        self.bos_id = bos_id
        self._json = tok.to_str()

    @property
    def cache_key(self) -> str:
        return f"{self.kind}-{self.vocab_size}-{sha256_text(self._json)[:12]}"

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_arrays(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Batch form used to build token caches (the Rust side runs it on all cores)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to text, special tokens dropped."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        with atomic_open(d / "tokenizer.json", "w") as f:
            f.write(self._json)
        # written last: its presence marks a complete folder
        write_json(d / META_FILE, {"kind": self.kind, "spec": self.spec, "eos_id": self.eos_id, "bos_id": self.bos_id,
                                   "vocab_size": self.vocab_size})

    @classmethod
    def load(cls, directory: str | os.PathLike):
        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text())
        tok = _tokenizers().Tokenizer.from_file(str(d / "tokenizer.json"))
        return cls(tok, meta["spec"], meta["eos_id"], meta["bos_id"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, vocab_size={self.vocab_size})"


class BPETokenizer(_HFBacked):
    """Byte-level BPE (GPT-2's pre-tokenizer: no unknown tokens, exact round trip for any text)
    trained on the corpus; ids 0 and 1 are ``<|bos|>`` and ``<|eos|>``."""

    kind = "bpe"

    @classmethod
    def train(cls, documents: Sequence[str], vocab_size: int, *, progress: bool = False) -> "BPETokenizer":
        """Train on ``documents``; the result may have fewer than ``vocab_size`` tokens when the
        corpus has fewer distinct merges. Deterministic for a given corpus."""
        t = _tokenizers()
        tok = t.Tokenizer(t.models.BPE())
        tok.pre_tokenizer = t.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = t.decoders.ByteLevel()
        trainer = t.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[BOS_TOKEN, EOS_TOKEN],
            initial_alphabet=t.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=progress,
        )
        tok.train_from_iterator(documents, trainer=trainer, length=len(documents))
        return cls(tok, f"bpe:{vocab_size}", tok.token_to_id(EOS_TOKEN), tok.token_to_id(BOS_TOKEN))


def _token_name(value: Any) -> str | None:
    if isinstance(value, dict):  # tokenizer_config.json may store {"content": "...", ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


class HFTokenizerFile(_HFBacked):
    """A ``tokenizer.json`` from a local model folder, used as is.

    eos/bos come from ``tokenizer_config.json`` beside it when present, else from common names
    (``<|endoftext|>``, ``</s>``...); ``eos_id`` is None when neither finds one.
    """

    kind = "hf"

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "HFTokenizerFile":
        p = Path(path).expanduser()
        file = p / "tokenizer.json" if p.is_dir() else p
        if not file.exists():
            where = f"the folder {str(p)!r} has no tokenizer.json" if p.is_dir() else f"no such file: {str(p)!r}"
            raise DataError(f"tokenizer 'hf:{path}': {where}; expected a tokenizer.json or a model folder holding one")
        try:
            tok = _tokenizers().Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise DataError(f"tokenizer 'hf:{path}': {str(file)!r} is not a valid tokenizer.json ({e})") from None
        names: dict[str, str | None] = {"eos": None, "bos": None}
        config = file.parent / "tokenizer_config.json"
        if config.exists():
            cfg = json.loads(config.read_text())
            names = {"eos": _token_name(cfg.get("eos_token")), "bos": _token_name(cfg.get("bos_token"))}
        ids = {}
        for which, candidates in (("eos", EOS_CANDIDATES), ("bos", BOS_CANDIDATES)):
            tried = ([names[which]] if names[which] else []) + list(candidates)
            ids[which] = next((tok.token_to_id(n) for n in tried if tok.token_to_id(n) is not None), None)
        return cls(tok, f"hf:{path}", ids["eos"], ids["bos"])

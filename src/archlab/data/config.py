"""The data section of a run's config, and ``prepare_dataset``: spec strings to a TokenDataset."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from archlab.configbase import Config
from archlab.errors import check

if TYPE_CHECKING:
    from archlab.data.dataset import TokenDataset


@dataclass(frozen=True)
class DataConfig(Config):
    _section = "data"

    corpus: str = "stdlib"  # what to train on: stdlib, shakespeare, text:PATH, jsonl:PATH:FIELD, ... (data/loaders.py)
    tokenizer: str = "byte"  # byte (no training), bpe:N (trained on the corpus) or hf:PATH (a tokenizer.json)
    val_fraction: float = 0.05  # share of documents (chosen by hashed id) held out for validation
    max_docs: int | None = None  # cap on documents, for tests and quick runs
    max_bytes: int | None = None  # cap on UTF-8 bytes; the document crossing it is cut
    decode_errors: Literal["replace", "skip"] = "replace"  # bytes that are not UTF-8: U+FFFD, or drop the document
    cache_dir: str | None = None  # token caches; None: $ARCHLAB_CACHE or ~/.cache/archlab

    def __post_init__(self) -> None:
        from archlab.data.loaders import parse_corpus_spec
        from archlab.data.tokenizer import parse_tokenizer_spec

        parse_corpus_spec(self.corpus)
        parse_tokenizer_spec(self.tokenizer)
        check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        check(self.max_docs is None or self.max_docs >= 1, "data.max_docs", f"must be >= 1 or null, got {self.max_docs}")
        check(self.max_bytes is None or self.max_bytes >= 1, "data.max_bytes", f"must be >= 1 or null, got {self.max_bytes}")


def prepare_dataset(cfg: DataConfig | None = None, *, progress: bool = True, **overrides: Any) -> "TokenDataset":
    """Load the corpus, get (or train) the tokenizer and open (or build) the token cache.

    ``overrides`` are DataConfig fields, e.g. ``prepare_dataset(corpus="jsonl:d.jsonl", max_docs=100)``.
    """
    from archlab.data.dataset import TokenDataset
    from archlab.data.loaders import load_corpus
    from archlab.data.tokenizer import get_tokenizer

    cfg = cfg or DataConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    corpus = load_corpus(cfg.corpus, max_docs=cfg.max_docs, max_bytes=cfg.max_bytes, decode_errors=cfg.decode_errors)
    tokenizer = get_tokenizer(cfg.tokenizer, corpus, cfg.cache_dir, progress=progress)
    return TokenDataset.build(corpus, tokenizer, cache_dir=cfg.cache_dir, val_fraction=cfg.val_fraction,
                              progress=progress)

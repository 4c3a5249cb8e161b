"""Token caches: a corpus tokenised once into a memory-mapped array, then read as batches.

Shapes: ``B`` batch, ``T`` sequence length (a window holds ``T + 1`` tokens: inputs are
``[:, :-1]``, targets ``[:, 1:]``), ``N`` tokens in the cache.

Layout of ``<cache>/datasets/<corpus fingerprint>/<tokenizer cache key>/``:
  tokens.bin     all documents' tokens, each followed by eos, as uint16 (vocab <= 65536) or uint32
  offsets.npy    [n_docs + 1] int64, where each document starts in tokens.bin
  doc_keys.npy   [n_docs] uint64, hashes of the document ids (the split reads only these)
  meta.json      format version, corpus description, tokenizer, counts; written last, so a
                 folder without it is an interrupted build and is built again
  the tokenizer  saved beside the tokens, so the folder opens on its own
"""
from __future__ import annotations

import json
import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from archlab.data.cache import atomic_open, cache_root, safe_name, write_json, write_npy
from archlab.data.corpus import Corpus
from archlab.data.errors import DataError
from archlab.data.split import DEFAULT_UNIT_TOKENS, Segments, doc_key, split_by_document
from archlab.data.tokenizer import Tokenizer, load_tokenizer
from archlab.data._progress import progress_bar

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_ENCODE_CHUNK_BYTES = 1 << 22  # documents are encoded in groups of about 4 MB


def dataset_dir(corpus: Corpus, tokenizer: Tokenizer, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the token cache of this corpus and tokenizer lives."""
    return cache_root(cache_dir) / "datasets" / safe_name(corpus.fingerprint) / safe_name(tokenizer.cache_key)


def _encode_groups(corpus: Corpus, tokenizer: Tokenizer) -> Iterator[tuple[list[np.ndarray], int]]:
    """(token arrays, utf-8 bytes) for groups of documents, in order."""
    encode_arrays = getattr(tokenizer, "encode_arrays", None)
    group: list[str] = []
    size = 0
    docs = list(corpus.documents) + [None]
    for doc in docs:
        if doc is not None:
            group.append(doc)
            size += len(doc)
        if group and (doc is None or size >= _ENCODE_CHUNK_BYTES):
            if encode_arrays is not None:
                arrays = encode_arrays(group)
            else:  # a user tokenizer with only the protocol's encode
                arrays = [np.asarray(tokenizer.encode(t), dtype=np.int64) for t in group]
            yield arrays, sum(len(t.encode("utf-8")) for t in group)
            group, size = [], 0


def build_token_cache(corpus: Corpus, tokenizer: Tokenizer, directory: Path, *, progress: bool = True) -> None:
    """Tokenise ``corpus`` into ``directory`` (every file written atomically, meta.json last)."""
    t0 = time.perf_counter()
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    if tokenizer.eos_id is None:
        log.warning("tokenizer %s has no eos token: documents are concatenated without a separator", tokenizer.spec)
    lengths: list[int] = []
    bar = progress_bar(corpus.n_bytes, f"tokenising {corpus.name} ({tokenizer.spec})", progress)
    try:
        with atomic_open(directory / "tokens.bin", "wb") as f:
            for arrays, n_bytes in _encode_groups(corpus, tokenizer):
                for a in arrays:
                    if len(a) and (int(a.max()) >= tokenizer.vocab_size or int(a.min()) < 0):
                        raise DataError(f"tokenizer {tokenizer.spec} produced an id outside [0, {tokenizer.vocab_size})")
                    out = np.concatenate([a.astype(dtype, copy=False), np.asarray(eos, dtype=dtype)])
                    f.write(out.tobytes())
                    lengths.append(len(out))
                bar.update(n_bytes)
    finally:
        bar.close()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    write_npy(directory / "offsets.npy", offsets)
    write_npy(directory / "doc_keys.npy", np.array([doc_key(i) for i in corpus.doc_ids], dtype=np.uint64))
    tokenizer.save(directory)
    seconds = time.perf_counter() - t0
    write_json(directory / "meta.json", {
        "format": FORMAT_VERSION,
        "corpus": corpus.describe(),
        "tokenizer": {"spec": tokenizer.spec, "cache_key": tokenizer.cache_key, "vocab_size": tokenizer.vocab_size,
                      "eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id},
        "dtype": np.dtype(dtype).name,
        "n_tokens": int(offsets[-1]),
        "n_docs": len(lengths),
        "build_seconds": round(seconds, 3),
    })
    log.info("token cache %s: %d tokens from %d documents in %.1f s", directory, offsets[-1], len(lengths), seconds)


def _is_complete(directory: Path) -> bool:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        size = (directory / "tokens.bin").stat().st_size
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT_VERSION and size == meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize


class TokenDataset:
    """A tokenised corpus on disk with a train/validation split by document.

    Build (or reuse) with :meth:`build`; open a folder with :meth:`open`. ``val_fraction`` and
    ``unit_tokens`` only decide the split at open time, so they are not part of the cache key.
    """

    def __init__(self, directory: str | os.PathLike, *, val_fraction: float = 0.05,
                 unit_tokens: int = DEFAULT_UNIT_TOKENS, tokenizer: Tokenizer | None = None):
        self.directory = Path(directory)
        if not _is_complete(self.directory):
            raise DataError(f"{str(self.directory)!r} is not a complete token cache (meta.json or tokens.bin missing "
                            f"or of the wrong size); build it with TokenDataset.build")
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.tokens = np.memmap(self.directory / "tokens.bin", dtype=self.meta["dtype"], mode="r")  # [N]
        self.offsets = np.load(self.directory / "offsets.npy")  # [n_docs + 1]
        self.doc_keys = np.load(self.directory / "doc_keys.npy")  # [n_docs]
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(self.directory)
        self.val_fraction = float(val_fraction)
        self.unit_tokens = int(unit_tokens)
        self.train, self.val = split_by_document(self.offsets, self.doc_keys, self.val_fraction, self.unit_tokens)

    @classmethod
    def build(cls, corpus: Corpus, tokenizer: Tokenizer, *, cache_dir: str | os.PathLike | None = None,
              val_fraction: float = 0.05, unit_tokens: int = DEFAULT_UNIT_TOKENS,
              progress: bool = True) -> "TokenDataset":
        """The cached dataset of ``corpus`` under ``tokenizer``, tokenised now if not cached yet."""
        directory = dataset_dir(corpus, tokenizer, cache_dir)
        if not _is_complete(directory):
            build_token_cache(corpus, tokenizer, directory, progress=progress)
        return cls(directory, val_fraction=val_fraction, unit_tokens=unit_tokens, tokenizer=tokenizer)

    @classmethod
    def open(cls, directory: str | os.PathLike, *, val_fraction: float = 0.05,
             unit_tokens: int = DEFAULT_UNIT_TOKENS) -> "TokenDataset":
        """A token cache folder built earlier (its tokenizer is loaded from the folder)."""
        return cls(directory, val_fraction=val_fraction, unit_tokens=unit_tokens)

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def segments(self, split: str) -> Segments:
        if split not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {split!r}")
        return self.train if split == "train" else self.val

    def describe(self) -> dict:
        """What a run records: corpus name and fingerprint, tokenizer, sizes, split."""
        return {
            **self.meta,
            "val_fraction": self.val_fraction,
            "unit_tokens": self.unit_tokens,
            "train_tokens": self.train.n_tokens,
            "val_tokens": self.val.n_tokens,
            "directory": str(self.directory),
        }

    # -- training batches ---------------------------------------------------------------------
    def batch(self, step: int, batch_size: int, seq_len: int, seed: int) -> "torch.Tensor":
        """The ``[B, T+1]`` int64 batch of ``step``: a pure function of (seed, step, sizes).

        The train stream is cut into ``n = (N-1) // T`` windows of ``T+1`` tokens (neighbours share
        one token), shifted by a random offset per epoch; window ``g = step * B + b`` is the
        ``g % n``-th of epoch ``g // n``'s permutation. Each epoch thus sees every token once
        and step ``k`` never depends on steps before it, so a resumed run continues exactly.
        """
        import torch

        starts = self._train_starts(step, batch_size, seq_len, seed)  # [B]
        positions = starts[:, None] + np.arange(seq_len + 1, dtype=np.int64)  # [B, T+1]
        return torch.from_numpy(self.train.gather(self.tokens, positions).astype(np.int64))

    def batches(self, batch_size: int, seq_len: int, seed: int, start_step: int = 0) -> Iterator["torch.Tensor"]:
        """Endless ``[B, T+1]`` int64 batches for steps ``start_step, start_step + 1, ...``."""
        step = start_step
        while True:
            yield self.batch(step, batch_size, seq_len, seed)
            step += 1

    def _train_starts(self, step: int, batch_size: int, seq_len: int, seed: int) -> np.ndarray:
        for name, v, low in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1), ("step", step, 0), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise DataError(f"{name} must be an integer >= {low}, got {v!r}")
        n_train = self.train.n_tokens
        n_windows = (n_train - 1) // seq_len
        if n_windows < 1:
            raise DataError(f"the train split has {n_train} tokens, too few for one window of seq_len + 1 = "
                            f"{seq_len + 1}; use a shorter seq_len or more data")
        g = step * batch_size + np.arange(batch_size, dtype=np.int64)  # [B] global window indices
        epochs = g // n_windows
        starts = np.empty(batch_size, dtype=np.int64)
        for e in np.unique(epochs):
            perm, shift = _epoch_order(int(seed), int(e), n_windows, n_train - 1 - n_windows * seq_len)
            sel = epochs == e
            starts[sel] = shift + perm[g[sel] % n_windows] * seq_len
        return starts

    # -- evaluation ---------------------------------------------------------------------------
    def iter_eval_windows(self, seq_len: int, batch_size: int = 16, split: str = "val") -> Iterator["torch.Tensor"]:
        """The ``split`` stream once, in order, as ``[b, T+1]`` int64 batches (``b <= batch_size``).

        Consecutive windows share one token, so every token after the first is a target exactly
        once; the tail shorter than ``T`` comes last as a ``[1, r+1]`` batch. Summing per-token
        losses over all batches and dividing by ``n_tokens - 1`` gives the split's mean loss.
        """
        import torch

        seg = self.segments(split)
        if seg.n_tokens < 2:
            raise DataError(f"the {split} split has {seg.n_tokens} tokens; nothing to evaluate "
                            f"(val_fraction={self.val_fraction})")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise DataError(f"seq_len must be an integer >= 1, got {seq_len!r}")
        n_full = (seg.n_tokens - 1) // seq_len
        for lo in range(0, n_full, batch_size):
            starts = np.arange(lo, min(lo + batch_size, n_full), dtype=np.int64) * seq_len  # [b]
            positions = starts[:, None] + np.arange(seq_len + 1, dtype=np.int64)  # [b, T+1]
            yield torch.from_numpy(seg.gather(self.tokens, positions).astype(np.int64))
        rest = seg.n_tokens - 1 - n_full * seq_len
        if rest > 0:
            positions = n_full * seq_len + np.arange(rest + 1, dtype=np.int64)[None, :]  # [1, r+1]
            yield torch.from_numpy(seg.gather(self.tokens, positions).astype(np.int64))

    def __repr__(self) -> str:
        return (f"TokenDataset({self.meta['corpus']['name']!r}, tokenizer={self.tokenizer.spec!r}, "
                f"tokens={self.n_tokens}, train={self.train.n_tokens}, val={self.val.n_tokens})")


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n_windows: int, slack: int) -> tuple[np.ndarray, int]:
    """The window permutation and start shift of one epoch (cached: a batch rarely spans two)."""
    rng = np.random.default_rng([seed, epoch, n_windows])
    shift = int(rng.integers(0, slack + 1))
    perm = rng.permutation(n_windows)
    return perm, shift

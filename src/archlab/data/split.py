"""The deterministic train/validation split by document, and reading a split as one stream.

Shapes: ``S`` segments of a split, ``N`` tokens of the whole cache, ``P`` positions asked for.

Each document's membership comes from a hash of its id, never from its position, so adding
documents leaves every other document where it was. A document longer than ``unit_tokens``
is cut into units of that many tokens, each hashed on its own: a corpus that is one big file
can still be split, and no single document can put a large share of the tokens on one side.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from archlab.data.errors import DataError

DEFAULT_UNIT_TOKENS = 1 << 15  # 32,768: most source files and records fit in one unit
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def doc_key(doc_id: str) -> int:
    """A document's 64-bit key: the first 8 bytes of sha256(id)."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele et al. 2014): spreads nearby inputs over all 64 bits."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True)
class Segments:
    """A split: pieces of the token array read one after the other as a single stream."""

    starts: np.ndarray  # [S] int64, physical start of each piece in the token array
    lengths: np.ndarray  # [S] int64
    cum: np.ndarray  # [S+1] int64, stream offset where each piece begins (cum[-1] = n_tokens)

    @classmethod
    def of(cls, starts: np.ndarray, lengths: np.ndarray) -> "Segments":
        starts = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        cum = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=cum[1:])
        return cls(starts, lengths, cum)

    @property
    def n_tokens(self) -> int:
        return int(self.cum[-1])

    def gather(self, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Tokens at stream ``positions`` (any shape, each in [0, n_tokens))."""
        seg = np.searchsorted(self.cum, positions, side="right") - 1  # same shape as positions
        return tokens[self.starts[seg] + (positions - self.cum[seg])]


def split_by_document(
    offsets: np.ndarray,
    doc_keys: np.ndarray,
    val_fraction: float,
    unit_tokens: int = DEFAULT_UNIT_TOKENS,
) -> tuple[Segments, Segments]:
    """``(train, val)`` segments; ``offsets`` [n_docs+1] bound each document's tokens.

    A unit goes to validation when its hash, read as a number in [0, 1), is below
    ``val_fraction``. If that picks nothing while ``val_fraction > 0`` (a tiny corpus), the unit
    with the smallest hash is taken, so both splits exist whenever there are two units.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if unit_tokens < 1:
        raise DataError(f"unit_tokens must be >= 1, got {unit_tokens!r}")
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)  # [n_docs]
    n_units = np.maximum(1, -(-lengths // unit_tokens))  # [n_docs], ceil division
    doc_of_unit = np.repeat(np.arange(len(lengths)), n_units)  # [U]
    first_unit = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_units, out=first_unit[1:])
    k = np.arange(len(doc_of_unit), dtype=np.int64) - first_unit[doc_of_unit]  # [U] unit index within its doc
    starts = offsets[doc_of_unit] + k * unit_tokens  # [U]
    ends = np.minimum(starts + unit_tokens, offsets[doc_of_unit + 1])  # [U]
    with np.errstate(over="ignore"):
        keys = _mix64(np.asarray(doc_keys, dtype=np.uint64)[doc_of_unit] + k.astype(np.uint64) * _GOLDEN)
    u = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [U] uniform in [0, 1)
    is_val = u < val_fraction
    if val_fraction > 0 and not is_val.any():
        is_val[np.argmin(u)] = True
    if is_val.all():
        raise DataError(
            f"the corpus is too small to split by document: {int(lengths.sum())} tokens in {len(u)} unit(s) "
            f"of up to {unit_tokens} tokens; add documents or use val_fraction=0"
        )
    train = Segments.of(starts[~is_val], (ends - starts)[~is_val])
    val = Segments.of(starts[is_val], (ends - starts)[is_val])
    return train, val

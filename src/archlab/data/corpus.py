"""A corpus: an ordered list of text documents with stable ids, a name and a content fingerprint.

Loaders (see ``loaders.py``) fill a :class:`CorpusBuilder`, which applies the ``max_docs`` and
``max_bytes`` caps, the policy for undecodable bytes, and counts everything it skipped or
repaired, so that a run can report what it actually trained on.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping

from archlab.errors import ConfigError
from archlab.data.errors import DataError

log = logging.getLogger(__name__)

DecodeErrors = Literal["replace", "skip"]
DECODE_ERRORS = ("replace", "skip")


@dataclass(frozen=True)
class Corpus:
    """Documents in a deterministic order.

    ``doc_ids`` are stable names (a relative path, or a hash of the text for records); the
    train/validation split hashes them, so adding documents does not move the others.
    ``fingerprint`` hashes ids and contents in order; caches are keyed by it.
    """

    name: str  # the spec it was loaded from, e.g. "stdlib" or "jsonl:data.jsonl:text"
    documents: tuple[str, ...]  # the texts, in order
    doc_ids: tuple[str, ...]  # one stable id per document
    fingerprint: str  # "<kind>-<16 hex digits of sha256>", e.g. "stdlib-py3.11.7-0123abcd..."
    stats: Mapping[str, int] = field(default_factory=dict)  # documents, bytes, skipped_*, replaced
    meta: Mapping[str, str] = field(default_factory=dict)  # source facts, e.g. python_version

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[str]:
        return iter(self.documents)

    def __getitem__(self, i: int) -> str:
        return self.documents[i]

    @property
    def n_bytes(self) -> int:
        """UTF-8 size of all documents."""
        return int(self.stats.get("bytes", sum(len(d.encode("utf-8")) for d in self.documents)))

    def describe(self) -> dict:
        """What a run records about its data: name, fingerprint, counts and source facts."""
        return {"name": self.name, "fingerprint": self.fingerprint, **dict(self.stats), **dict(self.meta)}


def record_id(text: str) -> str:
    """The id of a record without a name: 24 hex digits of the sha256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def content_hash(doc_ids: tuple[str, ...] | list[str], documents: tuple[str, ...] | list[str]) -> str:
    """sha256 over (id, length, bytes) of every document in order: any change of content,
    order, id or cap changes it."""
    h = hashlib.sha256()
    for doc_id, text in zip(doc_ids, documents):
        data = text.encode("utf-8")
        idb = doc_id.encode("utf-8")
        h.update(len(idb).to_bytes(8, "little"))
        h.update(idb)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class CorpusBuilder:
    """Collects documents for a loader, applying caps and the undecodable-bytes policy.

    ``decode_errors``: ``replace`` keeps a document and puts U+FFFD where bytes are not UTF-8;
    ``skip`` drops such a document. Either way the count is kept in ``stats`` and logged.
    """

    def __init__(
        self,
        name: str,
        *,
        max_docs: int | None = None,
        max_bytes: int | None = None,
        decode_errors: DecodeErrors = "replace",
    ):
        if max_docs is not None and (isinstance(max_docs, bool) or not isinstance(max_docs, int) or max_docs < 1):
            raise ConfigError(f"data.max_docs: must be a positive integer or None, got {max_docs!r}")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1):
            raise ConfigError(f"data.max_bytes: must be a positive integer or None, got {max_bytes!r}")
        if decode_errors not in DECODE_ERRORS:
            raise ConfigError(f"data.decode_errors: {decode_errors!r} is not accepted; choose one of {DECODE_ERRORS}")
        self.name = name
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.decode_errors = decode_errors
        self.documents: list[str] = []
        self.doc_ids: list[str] = []
        self.n_bytes = 0
        self.counts = {"replaced_undecodable": 0, "skipped_undecodable": 0, "skipped_empty": 0,
                       "skipped_binary": 0, "skipped_null": 0, "truncated": 0}
        self.examples: dict[str, str] = {}  # first place each problem was seen, for the log

    @property
    def full(self) -> bool:
        """True once a cap is reached: loaders stop reading."""
        if self.max_docs is not None and len(self.documents) >= self.max_docs:
            return True
        return self.max_bytes is not None and self.n_bytes >= self.max_bytes

    def count(self, what: str, where: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        self.examples.setdefault(what, where)

    def decode(self, data: bytes, where: str) -> str | None:
        """``data`` as UTF-8 (a leading BOM dropped) under the policy; None when skipped."""
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            if self.decode_errors == "skip":
                self.count("skipped_undecodable", where)
                return None
            self.count("replaced_undecodable", where)
            return data.decode("utf-8-sig", errors="replace")

    def add_bytes(self, doc_id: str, data: bytes, where: str) -> None:
        """Decode ``data`` under the policy, then add it."""
        text = self.decode(data, where)
        if text is not None:
            self._add(doc_id, text, where)

    def add_text(self, doc_id: str | None, text: str, where: str) -> None:
        """Add an already decoded string; lone surrogates (possible in JSON) follow the policy.

        ``doc_id=None`` names the document by a hash of its (repaired) text: records have no
        path, and a position would change when rows are added."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            if self.decode_errors == "skip":
                self.count("skipped_undecodable", where)
                return
            self.count("replaced_undecodable", where)
            text = text.encode("utf-8", errors="replace").decode("utf-8")
        self._add(record_id(text) if doc_id is None else doc_id, text, where)

    def _add(self, doc_id: str, text: str, where: str) -> None:
        if self.full:
            return
        if not text:
            self.count("skipped_empty", where)
            return
        data = text.encode("utf-8")
        if self.max_bytes is not None and self.n_bytes + len(data) > self.max_bytes:
            # the document that crosses the cap is cut (at a character boundary) so the cap is exact
            data = data[: self.max_bytes - self.n_bytes]
            text = data.decode("utf-8", errors="ignore")
            data = text.encode("utf-8")
            self.count("truncated", where)
            if not text:
                self.n_bytes = self.max_bytes  # nothing fits: the corpus is full
                return
        self.documents.append(text)
        self.doc_ids.append(doc_id)
        self.n_bytes += len(data)

    def finish(self, kind: str, meta: Mapping[str, str] | None = None, *, source: str = "") -> Corpus:
        """The finished corpus; an empty one is a DataError saying what was skipped."""
        skipped = {k: v for k, v in self.counts.items() if v}
        if not self.documents:
            detail = f" (skipped: {', '.join(f'{k}={v}' for k, v in skipped.items())})" if skipped else ""
            raise DataError(f"corpus {self.name!r}: no documents found{detail}{' in ' + source if source else ''}")
        for what, n in skipped.items():
            # empty files (e.g. bare __init__.py) and the cut at max_bytes are expected, not problems
            level = logging.INFO if what in ("skipped_empty", "truncated") else logging.WARNING
            log.log(level, "corpus %s: %s: %d document(s), first at %s", self.name, what, n, self.examples[what])
        digest = content_hash(self.doc_ids, self.documents)[:16]
        stats = {"documents": len(self.documents), "bytes": self.n_bytes, **self.counts}
        return Corpus(
            name=self.name,
            documents=tuple(self.documents),
            doc_ids=tuple(self.doc_ids),
            fingerprint=f"{kind}-{digest}",
            stats=stats,
            meta=dict(meta or {}),
        )

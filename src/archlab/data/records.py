"""User records: JSON Lines with a text field, and Parquet with a text column.

Each record is one document; its id is a hash of its text, so the train/validation split of
a record does not depend on its position in the file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from archlab.data.corpus import Corpus, CorpusBuilder, DecodeErrors
from archlab.data.errors import DataError, require
from archlab.data.text_files import existing_path, list_text_files


def _files(p: Path, patterns: tuple[str, ...], spec: str) -> list[Path]:
    if p.is_file():
        return [p]
    files = [f for f in list_text_files(p) if any(f.name.endswith(s) for s in patterns)]
    if not files:
        raise DataError(f"corpus {spec!r}: the folder {str(p)!r} holds no {' or '.join(patterns)} files")
    return files


def add_value(builder: CorpusBuilder, value: object, field: str, where: str) -> None:
    if value is None:
        builder.count("skipped_null", where)
    elif isinstance(value, str):
        builder.add_text(None, value, where)
    elif isinstance(value, bytes):  # a binary Parquet column: decoded under the policy
        text = builder.decode(value, where)
        if text is not None:
            builder.add_text(None, text, where)
    else:
        raise DataError(f"{where}: field {field!r} holds a {type(value).__name__}, expected a string (text)")


def load_jsonl(
    path: str | os.PathLike,
    field: str = "text",
    *,
    spec: str | None = None,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
) -> Corpus:
    """One document per line of a ``.jsonl`` file (or every ``.jsonl`` file of a folder, sorted):
    the string under ``field`` of each JSON object. Blank lines are ignored; a null value is
    skipped and counted; a line that is not a JSON object, or lacks the field, is a DataError
    naming the file and line."""
    spec = spec or f"jsonl:{path}:{field}"
    p = existing_path(path, spec)
    builder = CorpusBuilder(spec, max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    for f in _files(p, (".jsonl", ".json"), spec):
        with open(f, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if builder.full:
                    break
                where = f"{f}:{lineno}"
                line = builder.decode(raw, where)
                if line is None or not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); expected one JSON object per line") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{where}: expected a JSON object with a {field!r} field, got a {type(obj).__name__}")
                if field not in obj:
                    raise DataError(f"{where}: no field {field!r}; the record has: {', '.join(map(repr, obj)) or 'no fields'}"
                                    f" (name the field with jsonl:PATH:FIELD)")
                add_value(builder, obj[field], field, where)
    return builder.finish("jsonl", {"path": str(p.resolve()), "field": field}, source=str(p))


def load_parquet(
    path: str | os.PathLike,
    column: str = "text",
    *,
    spec: str | None = None,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
) -> Corpus:
    """One document per row: the string column ``column`` of a Parquet file (or of every
    ``.parquet`` file of a folder, sorted). Needs the ``parquet`` extra (pyarrow)."""
    spec = spec or f"parquet:{path}:{column}"
    p = existing_path(path, spec)
    pq = require("pyarrow.parquet", "parquet", "reading Parquet files")
    builder = CorpusBuilder(spec, max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    for f in _files(p, (".parquet",), spec):
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises its own ArrowInvalid for a file that is not Parquet
            raise DataError(f"{f}: not a readable Parquet file ({e})") from None
        names = pf.schema_arrow.names
        if column not in names:
            raise DataError(f"{f}: no column {column!r}; the file has: {', '.join(map(repr, names))}"
                            f" (name the column with parquet:PATH:COLUMN)")
        row = 0
        for batch in pf.iter_batches(columns=[column], batch_size=4096):
            if builder.full:
                break
            for value in batch.column(0).to_pylist():
                row += 1
                add_value(builder, value, column, f"{f}:row {row}")
    return builder.finish("parquet", {"path": str(p.resolve()), "column": column}, source=str(p))


"""User text: one file (one document) or a folder of files (one document per file)."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from archlab.data.corpus import Corpus, CorpusBuilder, DecodeErrors
from archlab.data.errors import DataError

# a NUL byte in the first block marks a binary file (image, archive, pickle), never text
_SNIFF_BYTES = 8192


def existing_path(path: str | os.PathLike, spec: str) -> Path:
    """``path`` as a Path, or a DataError naming the spec when it does not exist."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"corpus {spec!r}: no such file or folder: {str(p)!r}")
    return p


def list_text_files(root: Path, pattern: str | None = None) -> list[Path]:
    """Files under ``root`` (recursively, hidden files and folders left out), sorted by their
    relative POSIX path; ``pattern`` is an fnmatch pattern on the file name (e.g. ``*.md``)."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or (pattern is not None and not fnmatch.fnmatch(name, pattern)):
                continue
            p = Path(dirpath) / name
            out.append((p.relative_to(root).as_posix(), p))
    return [p for _, p in sorted(out)]


def load_text(
    path: str | os.PathLike,
    *,
    pattern: str | None = None,
    spec: str | None = None,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
) -> Corpus:
    """A text file as one document, or every file of a folder as one document each.

    In a folder, files that look binary (a NUL byte near the start) are skipped and counted.
    """
    spec = spec or f"text:{path}"
    p = existing_path(path, spec)
    builder = CorpusBuilder(spec, max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    if p.is_dir():
        files = list_text_files(p, pattern)
        if not files:
            what = f"matching {pattern!r} " if pattern else ""
            raise DataError(f"corpus {spec!r}: the folder {str(p)!r} holds no files {what}(hidden files are left out)")
        for f in files:
            if builder.full:
                break
            data = f.read_bytes()
            if b"\x00" in data[:_SNIFF_BYTES]:
                builder.count("skipped_binary", str(f))
                continue
            builder.add_bytes(f.relative_to(p).as_posix(), data, str(f))
    else:
        builder.add_bytes(p.name, p.read_bytes(), str(p))
    return builder.finish("text", {"path": str(p.resolve())}, source=str(p))

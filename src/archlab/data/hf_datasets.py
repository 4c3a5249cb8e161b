"""A Hugging Face ``datasets`` dataset: saved on disk (``save_to_disk``) or named in the local cache.

Named datasets are opened with the hub switched offline for the call: archlab never
downloads data; a dataset must already be in ``~/.cache/huggingface/datasets``.
"""
from __future__ import annotations

import contextlib
import re
import os
from pathlib import Path
from typing import Iterator

from archlab.data.corpus import Corpus, CorpusBuilder, DecodeErrors
from archlab.data.errors import DataError, require
from archlab.data.records import add_value


@contextlib.contextmanager
def _offline(datasets_mod) -> Iterator[None]:
    """Switch the flags that ``datasets`` and ``huggingface_hub`` read at call time to offline."""
    targets = [(datasets_mod.config, "HF_HUB_OFFLINE"), (datasets_mod.config, "HF_DATASETS_OFFLINE")]
    try:
        import huggingface_hub.constants as hub_constants

        targets.append((hub_constants, "HF_HUB_OFFLINE"))
    except ImportError:
        pass
    saved = [(mod, name, getattr(mod, name)) for mod, name in targets if hasattr(mod, name)]
    try:
        for mod, name, _ in saved:
            setattr(mod, name, True)
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


_SPLIT = re.compile(r"^([^\[\]]+?)(?:\[(-?\d*)(%?):(-?\d*)(%?)\])?$")


def _parse_split(split: str, spec: str) -> tuple[str, tuple[str, str, str, str] | None]:
    """``train[10:50%]`` -> ("train", ("10", "", "50", "%")): the slice syntax of ``datasets``,
    applied by hand to a saved dataset (``load_from_disk`` takes no split argument)."""
    m = _SPLIT.match(split)
    if m is None:
        raise DataError(f"corpus {spec!r}: split {split!r} is not NAME or NAME[START:STOP] (e.g. train[:10%])")
    name, lo, lo_pct, hi, hi_pct = m.groups()
    return name, (None if "[" not in split else (lo, lo_pct, hi, hi_pct))


def _bound(value: str, pct: str, n: int, default: int) -> int:
    if value == "":
        return default
    v = int(value) * n // 100 if pct else int(value)
    return max(0, min(n, v + n if v < 0 else v))


def _open(name_or_path: str, split: str, spec: str):
    datasets = require("datasets", "datasets", "loading a Hugging Face dataset")
    p = Path(name_or_path).expanduser()
    if p.exists():
        try:
            ds = datasets.load_from_disk(str(p))
        except Exception as e:  # datasets raises FileNotFoundError for a folder it did not save
            raise DataError(f"corpus {spec!r}: {str(p)!r} is not a dataset saved with save_to_disk ({e})") from None
        name, bounds = _parse_split(split, spec)
        if isinstance(ds, datasets.DatasetDict):
            if name not in ds:
                raise DataError(f"corpus {spec!r}: no split {name!r}; the dataset has: {', '.join(map(repr, ds))}"
                                f" (choose with hf:PATH:SPLIT)")
            ds = ds[name]
        if bounds is not None:
            lo, lo_pct, hi, hi_pct = bounds
            n = len(ds)
            start = _bound(lo, lo_pct, n, 0)
            ds = ds.select(range(start, max(start, _bound(hi, hi_pct, n, n))))
        return ds, {"path": str(p.resolve()), "split": split}
    if name_or_path.startswith((".", "/", "~")) or os.sep in name_or_path.replace("/", "", 1):
        raise DataError(f"corpus {spec!r}: no such folder: {str(p)!r}")
    try:
        with _offline(datasets):
            ds = datasets.load_dataset(name_or_path, split=split)
    except Exception as e:  # no network here: any failure means it is not in the local cache
        raise DataError(
            f"corpus {spec!r}: could not open dataset {name_or_path!r} split {split!r} from the local cache "
            f"(archlab does not download data): {type(e).__name__}: {e}. Load it once with datasets and save it "
            f"with dataset.save_to_disk(PATH), then use hf:PATH"
        ) from None
    return ds, {"name": name_or_path, "split": split}


def load_hf(
    name_or_path: str,
    split: str = "train",
    field: str = "text",
    *,
    spec: str | None = None,
    max_docs: int | None = None,
    max_bytes: int | None = None,
    decode_errors: DecodeErrors = "replace",
) -> Corpus:
    """One document per row: the string column ``field`` of the dataset's ``split``."""
    spec = spec or f"hf:{name_or_path}:{split}:{field}"
    ds, meta = _open(name_or_path, split, spec)
    columns = list(ds.column_names)
    if field not in columns:
        raise DataError(f"corpus {spec!r}: no column {field!r}; the dataset has: {', '.join(map(repr, columns))}"
                        f" (name it with hf:NAME_OR_PATH:SPLIT:FIELD)")
    builder = CorpusBuilder(spec, max_docs=max_docs, max_bytes=max_bytes, decode_errors=decode_errors)
    fingerprint = getattr(ds, "_fingerprint", None)
    row = 0
    for batch in ds.select_columns([field]).iter(batch_size=1024):
        if builder.full:
            break
        for value in batch[field]:
            row += 1
            add_value(builder, value, field, f"{spec}:row {row}")
    if fingerprint:
        meta["datasets_fingerprint"] = str(fingerprint)
    return builder.finish("hf", {**meta, "field": field}, source=spec)

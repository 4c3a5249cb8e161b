"""Named errors of the data layer, and the lazy import of optional dependencies."""
from __future__ import annotations

import importlib
from types import ModuleType


class DataError(ValueError):
    """A corpus, file, field or cached dataset is missing, empty or malformed.

    The message names the file (and line or field where known) and what would be accepted.
    """


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``pip install 'archlab[extra]'``.

    Optional packages are imported only when a feature needs them, so that the core installs
    with torch and numpy alone.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{purpose} needs the optional package {module.split('.')[0]!r}, which is not installed; "
            f"install it with: pip install 'archlab[{extra}]'"
        ) from e

"""Lazy public names for a package: ``import archlab`` (and the CLI) start fast because a name's
module is imported only when the name is first used."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, exports: dict[str, str], submodules: frozenset[str] | set[str] = frozenset()
                 ) -> Callable[[str], Any]:
    """A module-level ``__getattr__``: ``exports`` maps a public name to the module defining it,
    ``submodules`` are names of subpackages imported on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__

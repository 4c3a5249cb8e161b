"""Optional dependencies of interop, imported only when a function needs them."""
from __future__ import annotations

from types import ModuleType


class MissingDependencyError(ImportError):
    """An optional package that this feature needs is not installed; the message names the extra."""


def _missing(package: str, what: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"{what} needs the '{package}' package, which is not installed; install it with: pip install 'archlab[hf]'"
    )


def transformers(what: str = "Hugging Face interop") -> ModuleType:
    try:
        import transformers as tf
    except ImportError:
        raise _missing("transformers", what) from None
    return tf


def safetensors_torch(what: str = "reading and writing safetensors weights") -> ModuleType:
    try:
        import safetensors.torch as st
    except ImportError:
        raise _missing("safetensors", what) from None
    return st


def safe_open(what: str = "reading safetensors weights"):
    try:
        from safetensors import safe_open as so
    except ImportError:
        raise _missing("safetensors", what) from None
    return so

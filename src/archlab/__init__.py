"""archlab: the decoder-only transformer as a design space.

The public names are loaded lazily so that `import archlab` and the CLI start fast.
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ConfigError": "archlab.errors",
    "CacheOverflowError": "archlab.errors",
    "ModelConfig": "archlab.config",
    "LayerPlan": "archlab.config",
    "build": "archlab.model",
    "Model": "archlab.model",
    "generate": "archlab.generation",
    "count_params": "archlab.analysis",
    "flops_per_token": "archlab.analysis",
    "cache_bytes_per_token": "archlab.analysis",
    "cache_bytes": "archlab.analysis",
}
_SUBMODULES = {"presets", "analysis", "ops", "interop", "registry", "attention", "position", "cache", "data"}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


__getattr__ = lazy_getattr(__name__, _EXPORTS, _SUBMODULES)

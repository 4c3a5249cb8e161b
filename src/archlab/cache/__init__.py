"""Caches: one small typed object per mixer family, collected in a ModelCache."""
from archlab.cache.base import LayerCache, ModelCache, tensor_bytes
from archlab.cache.kv import KVCache

__all__ = ["LayerCache", "ModelCache", "KVCache", "tensor_bytes"]

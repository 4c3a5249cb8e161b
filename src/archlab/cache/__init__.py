"""Caches: one small typed object per mixer family, collected in a ModelCache."""
from archlab.cache.base import LayerCache, ModelCache, tensor_bytes
from archlab.cache.kv import KVCache
from archlab.cache.latent import LatentCache
from archlab.cache.quantized import QuantizedKVCache, QuantizedSlidingKVCache, QuantizedStore

__all__ = ["LayerCache", "ModelCache", "KVCache", "LatentCache", "QuantizedKVCache", "QuantizedSlidingKVCache", "QuantizedStore",
           "tensor_bytes"]

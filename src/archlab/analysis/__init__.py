"""Analysis from the config alone: parameters, FLOPs per token, cache bytes."""
from archlab.analysis.counts import Params, count_params, flops_per_token
from archlab.analysis.cache import cache_bytes, cache_bytes_per_token, dtype_size

__all__ = ["Params", "count_params", "flops_per_token", "cache_bytes", "cache_bytes_per_token", "dtype_size"]

"""Pieces shared by the Mamba and Mamba-2 mixers: argument checks and the papers' dt initialisation."""
from __future__ import annotations

import math

import torch

from archlab.ssm.cache import SSMCache
from archlab.ssm.config import SSMConfig


def check_input(x: torch.Tensor, d_model: int, cache: SSMCache | None, name: str) -> None:
    """Clear errors for a wrongly shaped input or a cache made for another batch size."""
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{name}: x must be [batch, time, {d_model}], got {list(x.shape)}")
    if cache is not None:
        if not isinstance(cache, SSMCache):
            raise TypeError(f"{name}: cache must be an SSMCache from new_cache(), got {type(cache).__name__}")
        if cache.batch_size != x.shape[0]:
            raise ValueError(
                f"{name}: x has batch size {x.shape[0]} but the cache was created for {cache.batch_size}"
            )


@torch.no_grad()
def init_dt_bias(bias: torch.Tensor, cfg: SSMConfig) -> None:
    """Bias such that softplus(bias) is log-uniform in [dt_min, dt_max] (floored), as in both papers."""
    lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
    dt = torch.exp(torch.rand_like(bias, dtype=torch.float32) * (hi - lo) + lo).clamp(min=cfg.dt_init_floor)
    bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
    bias._no_reinit = True  # type: ignore[attr-defined]  # a model-wide init must not zero it


def mark_no_weight_decay(*params: torch.nn.Parameter) -> None:
    """Tag parameters that the reference implementations exclude from weight decay (A_log, D, dt bias)."""
    for p in params:
        p._no_weight_decay = True  # type: ignore[attr-defined]

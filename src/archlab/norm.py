"""RMSNorm and LayerNorm, and where a block puts them.

Placement kinds (one field, mutually exclusive):
- ``pre``: x + f(norm(x)) -- GPT-2, Llama.
- ``post``: norm(x + f(x)) -- the original Transformer (Vaswani et al. 2017).
- ``output``: x + norm(f(x)) -- norm on each sublayer's output inside the residual (OLMo-2, Swin-v2).
- ``sandwich``: x + norm_out(f(norm_in(x))) -- Gemma-2.
- ``parallel``: x + attn(norm_a(x)) + mlp(norm_m(x)) -- GPT-NeoX (two norms).
- ``parallel_shared``: x + attn(norm(x)) + mlp(norm(x)) -- GPT-J, Falcon (one norm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from archlab.configbase import Config
from archlab.errors import check
from archlab.registry import Registry

NORM: Registry[type[nn.Module]] = Registry("norm.kind")

Placement = Literal["pre", "post", "output", "sandwich", "parallel", "parallel_shared"]


@dataclass(frozen=True)
class NormConfig(Config):
    _section = "norm"
    kind: Literal["rmsnorm", "layernorm"] = "rmsnorm"  # RMSNorm (Zhang & Sennrich 2019) or LayerNorm
    eps: float = 1e-5  # added to the variance for stability
    bias: bool = False  # LayerNorm's additive bias (GPT-2, BLOOM have it)
    unit_offset: bool = False  # weight stored as w, applied as (1 + w) (Gemma)
    placement: Placement = "pre"  # where each block puts its norms, see module docstring
    final_norm: bool = True  # a norm after the last block (pre-norm stacks need it)
    embedding_norm: bool = False  # a norm right after the token embedding (BLOOM)

    def __post_init__(self) -> None:
        check(self.eps > 0, "norm.eps", f"must be > 0, got {self.eps}")
        check(not (self.bias and self.kind == "rmsnorm"), "norm.bias", "RMSNorm has no bias; use kind=layernorm or bias=false")


class _Norm(nn.Module):
    def __init__(self, dim: int, cfg: NormConfig):
        super().__init__()
        self.eps = cfg.eps
        self.unit_offset = cfg.unit_offset
        # unit offset stores the deviation from 1, so it starts at 0
        self.weight = nn.Parameter(torch.zeros(dim) if cfg.unit_offset else torch.ones(dim))

    def scale(self) -> torch.Tensor:
        return self.weight.float() + 1.0 if self.unit_offset else self.weight.float()

    @staticmethod
    def params(dim: int, cfg: NormConfig) -> int:
        return dim * (2 if cfg.bias else 1)


@NORM.register("rmsnorm")
class RMSNorm(_Norm):
    """y = x / sqrt(mean(x^2) + eps) * w, computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.scale()).to(x.dtype)


@NORM.register("layernorm")
class LayerNorm(_Norm):
    """y = (x - mean) / sqrt(var + eps) * w + b, computed in float32."""

    def __init__(self, dim: int, cfg: NormConfig):
        super().__init__(dim, cfg)
        self.bias = nn.Parameter(torch.zeros(dim)) if cfg.bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.float() if self.bias is not None else None
        y = nn.functional.layer_norm(x.float(), (x.shape[-1],), self.scale(), b, self.eps)
        return y.to(x.dtype)


def build_norm(dim: int, cfg: NormConfig) -> nn.Module:
    return NORM.get(cfg.kind)(dim, cfg)


def norm_params(dim: int, cfg: NormConfig) -> int:
    return NORM.get(cfg.kind).params(dim, cfg)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float, unit_offset: bool = False) -> torch.Tensor:
    """Functional RMSNorm in float32 (used by QK-norm); ``unit_offset`` applies the weight as 1 + w."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * (weight.float() + 1.0 if unit_offset else weight.float())
    return y.to(x.dtype)


def blocks_norm_count(placement: Placement) -> int:
    """Norm modules per block for a placement (both sublayers present)."""
    return {"pre": 2, "post": 2, "output": 2, "sandwich": 4, "parallel": 2, "parallel_shared": 1}[placement]

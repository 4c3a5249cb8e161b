"""The two small norms inside SSM mixers (kept here so parameter names match the reference models).

Shapes: B batch, T time, F features, E channels, G groups.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension, computed in float32 (Jamba's dt/B/C norms)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: RMSNorm(y * silu(z)) per group of channels, then a weight.

    The gate is applied before normalising (mamba_ssm's ``norm_before_gate=False``); each of the
    G groups of E / G channels is normalised on its own so tensor-parallel shards stay independent.
    """

    def __init__(self, dim: int, groups: int, eps: float):
        super().__init__()
        self.eps, self.groups = eps, groups
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y, z: [..., E] -> [..., E] in float32 (the caller casts before the output projection)."""
        h = y.float() * F.silu(z.float())
        shape = h.shape
        h = h.reshape(*shape[:-1], self.groups, shape[-1] // self.groups)  # [..., G, E/G]
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.float() * h.reshape(shape)  # [..., G, E/G] -> [..., E]

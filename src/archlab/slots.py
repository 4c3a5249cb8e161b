"""What can fill a block's two slots: the token mixer and the FFN.

A layer plan names a mixer (``attention``, later ``linear``, ``ssm``) and an FFN
(``dense``, ``none``, later ``moe``) per layer. Each name maps to a :class:`Slot`: how to
build the module and how to count it from the config alone (parameters, FLOPs, cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from archlab.registry import Registry

if TYPE_CHECKING:
    from archlab.config import ModelConfig
    from archlab.position.base import PositionEncoding


@dataclass(frozen=True)
class Slot:
    build: Callable[["ModelConfig", int, "PositionEncoding"], nn.Module]
    params: Callable[["ModelConfig"], int]  # parameters of the module
    flops_per_token: Callable[["ModelConfig", int], float]  # forward matmul FLOPs per token at seq_len
    active_params: Callable[["ModelConfig"], int] | None = None  # per token, when not all are used (MoE)
    cache_bytes: Callable[["ModelConfig", int, int, "torch.dtype"], int] | None = None  # (cfg, seq_len, batch, dtype)

    def active(self, cfg: "ModelConfig") -> int:
        return (self.active_params or self.params)(cfg)


MIXERS: Registry[Callable[["ModelConfig"], Slot]] = Registry("plan mixer")
FFNS: Registry[Callable[["ModelConfig"], Slot]] = Registry("plan ffn")


def _class_slot(cls) -> Slot:
    """Attention classes count cache bytes from the element size of the cache dtype."""
    return Slot(
        build=lambda cfg, i, pos: cls(cfg, i, pos),
        params=cls.params,
        flops_per_token=cls.flops_per_token,
        cache_bytes=lambda cfg, seq_len, batch, dtype: cls.cache_bytes(
            cfg, seq_len, batch, torch.empty((), dtype=dtype).element_size()),
    )


@MIXERS.register("attention")
def _attention(cfg: "ModelConfig") -> Slot:
    from archlab.attention import ATTENTION

    return _class_slot(ATTENTION.get(cfg.attention.kind))


@FFNS.register("dense")
def _dense(cfg: "ModelConfig") -> Slot:
    from archlab.ffn import FFN

    cls = FFN.get(cfg.ffn.kind)
    return Slot(
        build=lambda c, i, pos: cls(c.ffn, c.d_model, i),
        params=lambda c: cls.params(c.ffn, c.d_model),
        flops_per_token=lambda c, seq_len: cls.flops_per_token(c.ffn, c.d_model),
    )


def _owning_init(module: nn.Module) -> nn.Module:
    """Mark a component that initialises its own parameters (SSM dt/A, MoE experts), so the
    model's generic init leaves it alone."""
    module.owns_init = True
    return module


@FFNS.register("moe")
def _moe(cfg: "ModelConfig") -> Slot:
    from archlab import moe

    return Slot(
        build=lambda c, i, pos: _owning_init(moe.MoE(c.moe, c.d_model, i)),
        params=lambda c: moe.params(c.moe, c.d_model),
        active_params=lambda c: moe.active_params(c.moe, c.d_model),
        flops_per_token=lambda c, seq_len: moe.flops_per_token(c.moe, c.d_model),
    )


@MIXERS.register("ssm")
def _ssm(cfg: "ModelConfig") -> Slot:
    from archlab import ssm

    return Slot(
        build=lambda c, i, pos: _owning_init(ssm.build_ssm_mixer(c.ssm, c.d_model, i)),
        params=lambda c: ssm.params(c.ssm, c.d_model),
        flops_per_token=lambda c, seq_len: ssm.flops_per_token(c.ssm, c.d_model, seq_len),
        cache_bytes=lambda c, seq_len, batch, dtype: ssm.cache_bytes(c.ssm, c.d_model, seq_len, batch, dtype),
    )


@MIXERS.register("linear")
def _linear(cfg: "ModelConfig") -> Slot:
    from archlab import linear

    return Slot(
        build=lambda c, i, pos: _owning_init(linear.build_mixer(c.linear, c.d_model, i)),
        params=lambda c: linear.params(c.linear, c.d_model),
        flops_per_token=lambda c, seq_len: linear.flops_per_token(c.linear, c.d_model, seq_len),
        cache_bytes=lambda c, seq_len, batch, dtype: linear.cache_bytes(c.linear, c.d_model, seq_len, batch, dtype),
    )


@FFNS.register("none")
def _none(cfg: "ModelConfig") -> Slot:
    return Slot(build=lambda c, i, pos: None, params=lambda c: 0, flops_per_token=lambda c, s: 0.0)

"""Analytic parameter and FLOP counts of the MoE FFN (no weights allocated).

``params`` equals ``sum(p.numel() for p in MoE(cfg, d_model, 0).parameters())``; buffers (the
correction bias) are not parameters.
"""
from __future__ import annotations

from archlab.moe.config import MoEConfig


def _per_expert(cfg: MoEConfig, d_model: int, hidden: int) -> int:
    return (3 if cfg.gated else 2) * d_model * hidden


def _router(cfg: MoEConfig, d_model: int) -> int:
    return 0 if cfg.router == "hash" else cfg.num_experts * d_model


def _always_on(cfg: MoEConfig, d_model: int) -> int:
    shared = _per_expert(cfg, d_model, cfg.shared_hidden_total())
    return _router(cfg, d_model) + shared + (d_model if cfg.shared_gate else 0)


def params(cfg: MoEConfig, d_model: int) -> int:
    """All parameters: router + E routed experts + shared experts + shared gate."""
    return _always_on(cfg, d_model) + cfg.num_experts * _per_expert(cfg, d_model, cfg.expert_hidden)


def active_params(cfg: MoEConfig, d_model: int) -> int:
    """Parameters one token uses: router + shared experts (+ gate) + top_k routed experts."""
    return _always_on(cfg, d_model) + cfg.top_k * _per_expert(cfg, d_model, cfg.expert_hidden)


def flops_per_token(cfg: MoEConfig, d_model: int) -> float:
    """Forward matmul FLOPs per token (2 per multiply-add) of the router, shared experts and gate,
    and the routed experts a token uses: top_k of them (an upper bound when a capacity factor
    drops some), or top_k * capacity_factor on average under expert choice."""
    k = cfg.top_k * (cfg.capacity_factor or 1.0) if cfg.router == "expert_choice" else cfg.top_k
    return 2.0 * (_always_on(cfg, d_model) + k * _per_expert(cfg, d_model, cfg.expert_hidden))

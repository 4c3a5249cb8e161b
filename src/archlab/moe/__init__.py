"""Mixture-of-experts FFN: routers, experts, balancing losses, capacity, statistics, accounting.

``MoE(cfg, d_model, layer_idx)`` is an FFN ([B, T, C] -> [B, T, C]) that exposes ``aux_loss``,
``stats`` and ``update_bias()`` (see ``archlab.moe.layer``).
"""
from archlab.moe.accounting import active_params, flops_per_token, params
from archlab.moe.config import MoEConfig
from archlab.moe.layer import MoE
from archlab.moe.routers import ROUTERS, Router, Routing

__all__ = ["MoE", "MoEConfig", "Router", "Routing", "ROUTERS", "params", "active_params", "flops_per_token"]

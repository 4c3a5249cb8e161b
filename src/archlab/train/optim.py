"""AdamW with decoupled weight decay (Loshchilov & Hutter 2019) on weight matrices only.

Parameter kinds exempt from decay by default (``train.no_decay``): ``norm`` (every 1-D or
scalar parameter that is not a bias: norm gains, per-head scales, SSM ``A_log``/``D``/``dt_bias``),
``bias``, and ``embedding`` (the tables of ``nn.Embedding`` modules and the parameters of position
encodings: learned positions, relative-position biases; a head tied to the embedding is the same
tensor). A parameter marked ``_no_weight_decay = True`` (the Mamba convention) is
never decayed.
"""
from __future__ import annotations

import torch
from torch import nn

from archlab.train.config import TrainConfig


def param_kind(module: nn.Module, name: str, p: torch.Tensor) -> str:
    """'embedding', 'bias', 'norm' or 'matrix' for a parameter owned directly by ``module``."""
    from archlab.position.base import PositionEncoding

    if isinstance(module, (nn.Embedding, PositionEncoding)):  # token tables; learned positions and biases
        return "embedding"
    if p.dim() < 2 and (name == "bias" or name.endswith("_bias")):
        return "bias"
    if p.dim() < 2:
        return "norm"
    return "matrix"


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups ``decay`` and ``no_decay`` (empty ones left out); shared parameters appear once."""
    groups: dict[str, dict] = {
        "decay": {"params": [], "weight_decay": cfg.weight_decay},
        "no_decay": {"params": [], "weight_decay": 0.0},
    }
    seen: set[int] = set()
    for module in model.modules():
        for p_name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            kind = param_kind(module, p_name, p)
            exempt = kind in cfg.no_decay or getattr(p, "_no_weight_decay", False) or cfg.weight_decay == 0
            groups["no_decay" if exempt else "decay"]["params"].append(p)
    return [g for g in groups.values() if g["params"]]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups``; the fused kernel on CUDA, the multi-tensor (foreach) one elsewhere."""
    first = next(model.parameters())
    fused = first.device.type == "cuda"
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             fused=fused or None)

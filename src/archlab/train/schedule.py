"""Learning-rate schedules: a pure function of the step, so a resumed run follows the same curve.

warmup: linear from lr/W (step 0) to lr (step W-1). Then ``cosine`` (Loshchilov & Hutter 2017,
"SGDR") decays to lr * min_lr_ratio at the last step; ``wsd`` (warmup-stable-decay, Hu et al.
2024, "MiniCPM") holds lr and decays linearly over the last ``decay_fraction`` of the steps;
``constant`` holds lr.
"""
from __future__ import annotations

import math

from archlab.train.config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based)."""
    W, S, floor = cfg.warmup, cfg.steps, cfg.min_lr_ratio
    if step < W:
        return (step + 1) / W
    if cfg.schedule == "constant":
        return 1.0
    last = S - 1
    if cfg.schedule == "cosine":
        p = min(1.0, (step - W) / max(1, last - W))  # 0 right after warmup, 1 at the last step
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    n_decay = max(1, round(cfg.decay_fraction * S))
    start = max(W, S - n_decay)  # the decay never eats into warmup
    if step < start:
        return 1.0
    p = min(1.0, (step - start + 1) / max(1, last - start + 1))  # reaches 1 at the last step
    return 1.0 + (floor - 1.0) * p


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.lr * lr_factor(step, cfg)

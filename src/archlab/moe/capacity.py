"""Expert capacity: how many assignments one expert may take, and which ones it drops.

Shapes: N tokens, K experts per token, E experts.
"""
from __future__ import annotations

import math

import torch


def expert_capacity(capacity_factor: float, num_tokens: int, top_k: int, num_experts: int) -> int:
    """ceil(capacity_factor * N * k / E), at most N: the balanced share of the N*k assignments, scaled
    (GShard, Lepikhin et al. 2020; Switch, Fedus et al. 2021)."""
    return min(num_tokens, math.ceil(capacity_factor * num_tokens * top_k / num_experts))


def keep_within_capacity(selected: torch.Tensor, capacity: int | torch.Tensor, num_experts: int,
                         valid: torch.Tensor | None = None) -> torch.Tensor:
    """[N, K] expert ids -> [N, K] bool: which assignments fit within each expert's capacity.

    Priority: every token's first choice before any token's second choice, and within one rank
    earlier tokens first (GShard's order), so a dropped assignment is the least preferred one.
    ``valid`` [N] bool (False = padding): pads take no capacity and are always dropped.
    """
    N, K = selected.shape
    if valid is not None:  # pads go to an extra bucket past the last expert
        selected = selected.masked_fill(~valid[:, None], num_experts)
    flat = selected.t().reshape(-1)  # [K*N] rank-major: all first choices, then all second choices
    e_sorted, order = torch.sort(flat, stable=True)  # stable keeps the priority order inside an expert
    buckets = num_experts + (valid is not None)
    counts = torch.zeros(buckets, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    starts = counts.cumsum(0) - counts  # [E] first sorted slot of each expert
    pos_sorted = torch.arange(flat.numel(), device=flat.device) - starts[e_sorted]  # rank inside its expert
    pos = torch.empty_like(pos_sorted).scatter_(0, order, pos_sorted)  # back to rank-major order
    keep = (pos < capacity).view(K, N).t()  # [N, K]
    return keep if valid is None else keep & valid[:, None]

"""Per-layer routing statistics for logging: detached tensors, no host sync."""
from __future__ import annotations

import torch

from archlab.moe.routers import Routing


@torch.no_grad()
def routing_stats(r: Routing) -> dict[str, torch.Tensor]:
    """load_fraction [E]: share of the assignments each expert was routed (before capacity drops);
    dropped_fraction: see ``Routing``; router_entropy: mean over tokens of the entropy (nats) of the
    router distribution (0 for hash routing); max_over_mean_load: busiest expert's load / mean load."""
    counts = r.counts.float()
    if r.probs is None:
        entropy = counts.new_zeros(())
    elif r.valid is None:
        entropy = torch.special.entr(r.probs).sum(-1).mean()
    else:  # real tokens only
        entropy = (torch.special.entr(r.probs).sum(-1) * r.valid).sum() / r.valid.sum().clamp_min(1)
    return {
        "load_fraction": counts / counts.sum().clamp_min(1.0),
        "dropped_fraction": r.dropped_fraction.detach().float(),
        "router_entropy": entropy.detach(),
        "max_over_mean_load": counts.max() / counts.mean().clamp_min(1e-9),
    }

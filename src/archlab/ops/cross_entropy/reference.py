"""Next-token cross-entropy through the output head, the readable way: full logits, then the loss.

    loss = mean over targets != ignore_index of  logsumexp(z) - z[target],  z = cap * tanh((h W^T + b) / cap)

Shapes: N tokens, C model width, V vocabulary.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def linear_cross_entropy_reference(h: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None, *,
                                   softcap: float | None = None, ignore_index: int = -100) -> Tensor:
    """h [N, C], weight [V, C], targets [N] -> mean loss (float32; float64 for float64 h); materialises [N, V] float32 logits."""
    z = F.linear(h, weight, bias)
    z = z.to(torch.promote_types(z.dtype, torch.float32))  # [N, V]
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return F.cross_entropy(z, targets, ignore_index=ignore_index)

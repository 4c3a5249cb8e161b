"""Cross-cutting features applied after ``build()``: activation checkpointing and compilation.

The model code never checks for them; parameter names (and so checkpoints) do not change.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute each block's activations in the backward pass instead of keeping them
    (Chen et al. 2016); returns the number of blocks wrapped. Cached (generation) calls and
    calls without gradients run the block as is."""
    done: set[int] = set()
    for block in getattr(model, "blocks", []):
        if id(block) in done:  # a block shared by tied layers is wrapped once
            continue
        done.add(id(block))
        inner = block.forward

        def forward(x: torch.Tensor, *, _inner=inner, **kw) -> torch.Tensor:
            if torch.is_grad_enabled() and kw.get("cache") is None:
                return checkpoint(_inner, x, use_reentrant=False, **kw)
            return _inner(x, **kw)

        block.forward = forward
    return len(done)


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` of the (possibly wrapped) model; the original keeps the parameters."""
    return torch.compile(model)

"""Input checks and the expert activation shared by every dispatch path.

Shapes: N tokens, C model width, E experts, I expert hidden width, G = 2 for gated experts
(w_in holds [gate; up] stacked) or 1 for a plain MLP, S (token, expert) assignments.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
    "relu": F.relu,
}


def expert_hidden(h: torch.Tensor, activation: str, gated: bool) -> torch.Tensor:
    """[S, G*I] -> [S, I]: act(gate) * up for gated experts (first I columns are the gate), else act(h)."""
    act = ACTIVATIONS[activation]
    if gated:
        gate, up = h.chunk(2, dim=-1)  # [S, I] each
        return act(gate) * up
    return act(h)


def check_inputs(
    x: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    token_idx: torch.Tensor | None,
    expert_idx: torch.Tensor,
    weight: torch.Tensor,
    activation: str,
    *,
    check_range: bool,
) -> bool:
    """Raise ValueError naming the argument if the shapes disagree; return whether experts are gated.

    ``check_range`` also checks index values, which costs a host sync on an accelerator.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: {activation!r} is not accepted; choose one of {', '.join(ACTIVATIONS)}")
    if x.dim() != 2:
        raise ValueError(f"x: expected [tokens, width], got shape {tuple(x.shape)}")
    if w_in.dim() != 3 or w_out.dim() != 3:
        raise ValueError(f"w_in/w_out: expected 3D [experts, ...], got {tuple(w_in.shape)} and {tuple(w_out.shape)}")
    E, GI, C = w_in.shape
    if C != x.shape[1] or w_out.shape[0] != E or w_out.shape[1] != C:
        raise ValueError(
            f"w_in {tuple(w_in.shape)} must be [E, G*I, C={x.shape[1]}] and w_out {tuple(w_out.shape)} [E, C, I]"
        )
    I = w_out.shape[2]
    if GI not in (I, 2 * I):
        raise ValueError(f"w_in: second dim {GI} must be I={I} (plain MLP) or 2*I={2 * I} (gated experts)")
    if expert_idx.dim() != 1:
        raise ValueError(f"expert_idx: expected 1D [assignments], got shape {tuple(expert_idx.shape)}")
    S = expert_idx.shape[0]
    if token_idx is None and S and (x.shape[0] == 0 or S % x.shape[0]):
        raise ValueError(f"token_idx=None means k assignments per token, but {S} assignments for {x.shape[0]} tokens")
    given = [("token_idx", token_idx)] if token_idx is not None else []
    for name, t in (*given, ("weight", weight)):
        if t.dim() != 1 or t.shape[0] != S:
            raise ValueError(f"{name}: expected 1D of length {S} (one per assignment), got shape {tuple(t.shape)}")
    for name, t in (*given, ("expert_idx", expert_idx)):
        if t.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name}: expected an integer tensor, got {t.dtype}")
    if w_in.dtype != x.dtype or w_out.dtype != x.dtype:
        raise ValueError(f"x, w_in, w_out must share one dtype, got {x.dtype}, {w_in.dtype}, {w_out.dtype}")
    if check_range and S > 0:
        if int(expert_idx.min()) < 0 or int(expert_idx.max()) >= E:
            raise ValueError(f"expert_idx: values must be in [0, {E}), got [{int(expert_idx.min())}, {int(expert_idx.max())}]")
        if token_idx is not None and (int(token_idx.min()) < 0 or int(token_idx.max()) >= x.shape[0]):
            raise ValueError(f"token_idx: values must be in [0, {x.shape[0]})")
    return GI == 2 * I

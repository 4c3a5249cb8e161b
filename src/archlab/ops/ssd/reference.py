"""Mamba-2's state-space recurrence (SSD), written straight from the equations, one token at a time.

Reference: Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality", Section 2 / 7: A is a scalar times the identity per head,
so with the step dt_t[h] (already positive) the recurrence of head h (state [P, N]) is

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T       (x_t [P], B_t [N])
    y_t = h_t C_t                                            (C_t [N])

B and C are shared by the H / G heads of a group ("multi-value" heads, like grouped-query
attention); head h reads group h // (H / G). The D skip connection is left to the caller.

Shapes: B batch, T time, H heads, P head dim, G groups, N state size.
"""
from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state is kept in float32 at least (float64 stays float64) whatever the activations are."""
    return torch.promote_types(dtype, torch.float32)


def heads_from_groups(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[..., G, N] -> [..., H, N]: each group's B or C repeated for its H / G heads."""
    return t.repeat_interleave(heads // t.shape[-2], dim=-2)


def check_shapes(x, dt, A, B, C, initial_state) -> None:
    """A ValueError naming the argument whose shape does not fit x [B, T, H, P] and B [B, T, G, N]."""
    if x.dim() != 4 or B.dim() != 4:
        raise ValueError(f"x must be [B, T, H, P] and B [B, T, G, N]; got x {list(x.shape)}, B {list(B.shape)}")
    (Bsz, T, H, P), (G, N) = x.shape, B.shape[2:]
    if G == 0 or H % G:
        raise ValueError(f"B: its {G} groups must divide the {H} heads of x")
    expected = {"dt": (dt, [Bsz, T, H]), "A": (A, [H]), "B": (B, [Bsz, T, G, N]), "C": (C, [Bsz, T, G, N])}
    if initial_state is not None:
        expected["initial_state"] = (initial_state, [Bsz, H, P, N])
    for name, (t, shape) in expected.items():
        if list(t.shape) != shape:
            raise ValueError(
                f"{name}: expected shape {shape} (from x {list(x.shape)}, B {list(B.shape)}), got {list(t.shape)}"
            )


def ssd_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step per token.

    Args:
        x: [B, T, H, P] inputs.
        dt: [B, T, H] positive step sizes (after bias, softplus and any clamp).
        A: [H] continuous-time decay rate per head (negative for a decaying state).
        B: [B, T, G, N] input matrix per group.
        C: [B, T, G, N] output matrix per group.
        initial_state: [B, H, P, N] or None for zeros.

    Returns:
        y: [B, T, H, P] in x's dtype; final_state: [B, H, P, N] in float32 (float64 for float64 inputs).
    """
    check_shapes(x, dt, A, B, C, initial_state)
    in_dtype, ct = x.dtype, compute_dtype(x.dtype)
    Bsz, T, H, P = x.shape
    N = B.shape[-1]
    x, dt, A = x.to(ct), dt.to(ct), A.to(ct)
    Bh, Ch = heads_from_groups(B.to(ct), H), heads_from_groups(C.to(ct), H)  # [B, T, H, N]
    h = x.new_zeros(Bsz, H, P, N) if initial_state is None else initial_state.to(ct)
    ys = []
    for t in range(T):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # [B, H, 1, 1]
        h = decay * h + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]  # [B, H, P, N]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))  # [B, H, P]
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(Bsz, 0, H, P)
    return y.to(in_dtype), h

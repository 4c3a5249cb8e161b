"""Selective state-space scan of Mamba-1, written straight from the recurrence.

Reference: Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
Algorithm 2 and equations (2a), (2b), (4): per channel e and state n, with the step dt_t[e]
already made input-dependent and positive (softplus) by the caller,

    Abar_t[e, n] = exp(dt_t[e] * A[e, n])              (zero-order hold for A)
    Bbar_t[e, n] = dt_t[e] * B_t[n]                     (the simplified, Euler discretisation of B)
    h_t[e, n]    = Abar_t[e, n] * h_{t-1}[e, n] + Bbar_t[e, n] * x_t[e]
    y_t[e]       = sum_n C_t[n] * h_t[e, n]

The D skip connection and the output gate are elementwise and left to the caller.

Shapes: B batch, T time, E channels (d_inner), N state size.
"""
from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The state is kept in float32 at least (float64 stays float64) whatever the activations are."""
    return torch.promote_types(dtype, torch.float32)


def check_shapes(x, dt, A, B, C, initial_state) -> None:
    """A ValueError naming the argument whose shape does not fit x [B, T, E] and A [E, N]."""
    if x.dim() != 3 or A.dim() != 2:
        raise ValueError(f"x must be [B, T, E] and A [E, N]; got x {list(x.shape)}, A {list(A.shape)}")
    (Bsz, T, E), N = x.shape, A.shape[1]
    expected = {"dt": (dt, [Bsz, T, E]), "A": (A, [E, N]), "B": (B, [Bsz, T, N]), "C": (C, [Bsz, T, N])}
    if initial_state is not None:
        expected["initial_state"] = (initial_state, [Bsz, E, N])
    for name, (t, shape) in expected.items():
        if list(t.shape) != shape:
            raise ValueError(
                f"{name}: expected shape {shape} (from x {list(x.shape)}, A {list(A.shape)}), got {list(t.shape)}"
            )


def selective_scan_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step per token.

    Args:
        x: [B, T, E] inputs.
        dt: [B, T, E] positive step sizes (after bias and softplus).
        A: [E, N] continuous-time diagonal state matrix (negative for a decaying state).
        B: [B, T, N] input-dependent input matrix.
        C: [B, T, N] input-dependent output matrix.
        initial_state: [B, E, N] state before the first token, or None for zeros.

    Returns:
        y: [B, T, E] in x's dtype; final_state: [B, E, N] in float32 (float64 for float64 inputs).
    """
    check_shapes(x, dt, A, B, C, initial_state)
    in_dtype, ct = x.dtype, compute_dtype(x.dtype)
    Bsz, T, E = x.shape
    N = A.shape[1]
    x, dt, A, B, C = x.to(ct), dt.to(ct), A.to(ct), B.to(ct), C.to(ct)
    h = x.new_zeros(Bsz, E, N) if initial_state is None else initial_state.to(ct)
    ys = []
    for t in range(T):
        dA = torch.exp(dt[:, t, :, None] * A)  # [B, E, N]
        dBx = (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]  # [B, E, N]
        h = dA * h + dBx
        ys.append((h * C[:, t, None, :]).sum(-1))  # [B, E]
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(Bsz, 0, E)
    return y.to(in_dtype), h

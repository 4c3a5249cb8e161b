"""Mixture-of-experts FFN, fast path: sort assignments by expert, one grouped matmul per layer.

Shapes: N tokens, C model width, E experts, I expert hidden width, G = 2 (gated) or 1,
S (token, expert) assignments, K assignments per token (token-major layout), M the largest number
of assignments of one expert.

Same function and signature as ``reference.expert_ffn``. The assignments are sorted by expert so
each expert's rows are contiguous; the two expert matmuls then run as one grouped GEMM each
(``torch._grouped_mm``, the jagged-M kernel used for MoE) and the results are added back to their
tokens, scaled by the routing weights. When ``token_idx`` is None (token choice without drops:
K rows per token, token-major) the gather and the sum back run as permutations plus a sum over K,
so neither direction needs an atomic scatter-add. Backends:

- ``grouped_mm``: ``torch.nn.functional.grouped_mm`` / ``torch._grouped_mm``. On CUDA it needs
  bfloat16 and a Hopper GPU (sm90; torch >= 2.9 also runs it on sm80+). On the CPU (torch >= 2.9)
  it takes float32/bfloat16/float16 with 16-byte-aligned rows (C and I times the element size a
  multiple of 16 bytes). Never float64.
- ``bmm``: pad every expert to M rows and run ``torch.bmm`` over [E, M, *]: any dtype and device,
  but it costs a host sync (M is data-dependent) and E*M - S wasted rows.
- ``auto``: ``grouped_mm`` where supported for these tensors, else ``bmm``; the pick is logged once.
"""
from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F

from archlab.ops.moe_dispatch.common import check_inputs, expert_hidden

log = logging.getLogger("archlab.moe")

Backend = Literal["auto", "grouped_mm", "bmm"]
_logged: set[tuple[str, str, str]] = set()


def _grouped_mm_fn():
    return getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


def grouped_mm_support(x: torch.Tensor, *weights: torch.Tensor) -> str | None:
    """None if the grouped-matmul kernel can run on these tensors, else the reason it cannot."""
    if _grouped_mm_fn() is None:
        return f"torch {torch.__version__} has no torch._grouped_mm"
    new_torch = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 9)
    if x.device.type == "cuda":
        if x.dtype != torch.bfloat16:
            return f"on CUDA grouped_mm needs bfloat16, got {x.dtype}"
        major, minor = torch.cuda.get_device_capability(x.device)
        if not (major == 9 or (new_torch and major >= 8)):
            return f"grouped_mm needs an sm90 GPU (sm80+ with torch >= 2.9), got sm{major}{minor}"
        return None
    if x.device.type == "cpu":
        if not new_torch:
            return f"torch {torch.__version__} has no CPU kernel for grouped_mm (needs >= 2.9)"
        if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
            return f"on the CPU grouped_mm takes float32/bfloat16/float16, got {x.dtype}"
        for t in (x, *weights):
            # the CPU kernel asks for 16-byte-aligned row strides (C and I) and base pointers
            if (t.shape[-1] * t.element_size()) % 16 or t.data_ptr() % 16:
                return f"grouped_mm needs rows of a multiple of 16 bytes, got shape {tuple(t.shape)} in {t.dtype}"
        return None
    return f"grouped_mm is not wired for device type {x.device.type!r}"


def resolve_backend(backend: Backend, x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> str:
    """The backend to run: an explicit one is checked (ValueError if unsupported); auto picks and logs once."""
    if backend not in ("auto", "grouped_mm", "bmm"):
        raise ValueError(f"backend: {backend!r} is not accepted; choose one of 'auto', 'grouped_mm', 'bmm'")
    reason = grouped_mm_support(x, w_in, w_out) if backend != "bmm" else None
    if backend == "grouped_mm" and reason is not None:
        raise ValueError(f"backend='grouped_mm' cannot run here: {reason}; use backend='bmm' or 'auto'")
    if backend != "auto":
        return backend
    pick = "grouped_mm" if reason is None else "bmm"
    key = (x.device.type, str(x.dtype), pick)
    if key not in _logged:
        _logged.add(key)
        log.info("moe dispatch auto: %s on %s %s%s", pick, x.device.type, x.dtype, f" ({reason})" if reason else "")
    return pick


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous: the grouped-matmul backward
    rejects the stride-0 gradients that e.g. ``.sum()`` produces."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.contiguous()


class _GatherTokens(torch.autograd.Function):
    """x[src] for a token-major layout (every token read exactly K times, src = order // K): the
    backward is a gather by the inverse permutation and a sum over K, not an atomic scatter-add
    (the two bfloat16 scatter-adds took 4.5 ms of a 16 ms OLMoE-shape forward+backward on an H200)."""

    @staticmethod
    def forward(ctx, x, src, inv, K):  # type: ignore[override]
        ctx.save_for_backward(inv)
        ctx.K = K
        return x.index_select(0, src)  # [S, C]

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (inv,) = ctx.saved_tensors
        S, C = g.shape
        return g.index_select(0, inv).view(S // ctx.K, ctx.K, C).sum(1), None, None, None  # [N, C]


class _SumToTokens(torch.autograd.Function):
    """The dual of _GatherTokens: put rows back in token-major order and sum each token's K rows."""

    @staticmethod
    def forward(ctx, y, inv, src, K):  # type: ignore[override]
        ctx.save_for_backward(src)
        S, C = y.shape
        return y.index_select(0, inv).view(S // K, K, C).sum(1)  # [N, C]

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (src,) = ctx.saved_tensors
        return g.index_select(0, src), None, None, None  # [S, C]


def _gmm(a: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """[S, D_in] rows grouped by ``offs``, times each group's [D_out, D_in].T from w [E, D_out, D_in] -> [S, D_out]."""
    return _ContiguousGrad.apply(_grouped_mm_fn()(a, w.transpose(1, 2), offs=offs))


def _experts_grouped_mm(xs, w_in, w_out, e_sorted, w_sorted, activation, gated):
    E = w_in.shape[0]
    # end offset of each expert's rows; searchsorted on the sorted ids needs no host sync
    offs = torch.searchsorted(e_sorted, torch.arange(1, E + 1, device=e_sorted.device), out_int32=True)  # [E]
    h = expert_hidden(_gmm(xs, w_in, offs), activation, gated)  # [S, I]
    # scaling the narrower [S, I] hidden instead of the [S, C] output moves fewer bytes
    h = h * w_sorted[:, None].to(h.dtype)
    return _gmm(h, w_out, offs)  # [S, C]


def _experts_bmm(xs, w_in, w_out, e_sorted, w_sorted, activation, gated):
    E, S, C = w_in.shape[0], xs.shape[0], xs.shape[1]
    counts = torch.zeros(E, dtype=torch.long, device=xs.device).scatter_add_(0, e_sorted, torch.ones_like(e_sorted))
    M = int(counts.max())  # host sync: the padded size is data-dependent
    starts = counts.cumsum(0) - counts  # [E] first sorted row of each expert
    slot = e_sorted * M + (torch.arange(S, device=xs.device) - starts[e_sorted])  # [S] row in the padded buffer
    xp = xs.new_zeros(E * M, C).index_copy(0, slot, xs).view(E, M, C)  # [E, M, C], padding rows are 0
    h = expert_hidden(torch.bmm(xp, w_in.transpose(1, 2)), activation, gated)  # [E, M, I]
    wp = w_sorted.new_zeros(E * M).index_copy(0, slot, w_sorted).view(E, M, 1)  # [E, M, 1]
    h = h * wp.to(h.dtype)
    y = torch.bmm(h, w_out.transpose(1, 2))  # [E, M, C]
    return y.reshape(E * M, C).index_select(0, slot)  # [S, C]


def expert_ffn(
    x: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    token_idx: torch.Tensor | None,
    expert_idx: torch.Tensor,
    weight: torch.Tensor,
    *,
    activation: str = "silu",
    backend: Backend = "auto",
) -> torch.Tensor:
    """Same contract as ``reference.expert_ffn``; ``backend`` picks the grouped kernel (module docstring).

    With ``token_idx=None`` (token-major, k per token) the rows are gathered and summed back as
    permutations: no atomics, deterministic, the sum over a token's k rows accumulated in float32.
    With explicit ``token_idx`` the sum is an ``index_add`` in x's dtype (on CUDA with atomics, so
    the order of the additions, and with it the last bits in bfloat16, can vary between runs).
    Index values are checked on the CPU only: on an accelerator the check would cost a host sync.
    """
    gated = check_inputs(
        x, w_in, w_out, token_idx, expert_idx, weight, activation, check_range=x.device.type == "cpu"
    )
    N, C = x.shape
    S = expert_idx.numel()
    if S == 0:
        return x.new_zeros(N, C)
    pick = resolve_backend(backend, x, w_in, w_out)
    run = _experts_grouped_mm if pick == "grouped_mm" else _experts_bmm
    e_sorted, order = torch.sort(expert_idx.long(), stable=True)  # [S] each expert's assignments contiguous
    if token_idx is None:
        K = S // N
        inv = torch.empty_like(order).scatter_(0, order, torch.arange(S, device=order.device))  # [S]
        src = order // K  # [S] the token of each sorted row
        xs = _GatherTokens.apply(x, src, inv, K)  # [S, C]
        y = run(xs, w_in, w_out, e_sorted, weight[order], activation, gated)  # [S, C]
        return _SumToTokens.apply(y, inv, src, K)
    tok = token_idx.long()[order]  # [S]
    xs = x.index_select(0, tok)  # [S, C]
    y = run(xs, w_in, w_out, e_sorted, weight[order], activation, gated)  # [S, C]
    return x.new_zeros(N, C).index_add_(0, tok, y.to(x.dtype))

"""Helpers shared by the linear-attention ops (linear_attn, simple_gla, gla, delta_rule).

Shape legend: B batch, H heads, T time, Dk key/query head dim, Dv value head dim,
N number of chunks, C chunk size, L group size of the chunk-state scan.

Every op has one signature across its forms:
  ``form="parallel"``        the quadratic reference (masked kernel matrix), in ``reference.py``;
  ``form="chunk"``           intra-chunk quadratic, inter-chunk state passing, in ``chunk.py``;
  ``form="chunk_compiled"``  the same function through ``torch.compile(fullgraph=True)``;
  ``form="recurrent"``       one token at a time, the decoding form, in ``recurrent.py``;
  ``form="triton"``          (linear_attn, gla) chunked Triton kernels, in ``triton_chunk.py``.
Low-precision inputs are computed in float32 (float64 stays float64); outputs come back in
the dtype of ``v`` and final states in the compute dtype.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger("archlab.linear")

FORMS = ("parallel", "chunk", "chunk_compiled", "recurrent")
TRITON_FORMS = FORMS + ("triton",)  # ops with Triton kernels (linear_attn, gla): triton_chunk.py


def check_form(form: str, forms: tuple[str, ...] = FORMS) -> None:
    if form not in forms:
        raise ValueError(f"form: got {form!r}; accepted: {', '.join(forms)}")


TRITON_CHUNK_SIZES = (16, 32, 64, 128)


@functools.lru_cache(maxsize=None)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def auto_triton(configured: str, picked: str, chunk_size: int, x: Tensor, what: str = "linear attention") -> str:
    """A mixer's form="auto" on CUDA: the Triton kernels in place of the compiled chunk form
    when triton is installed and takes this chunk size and dtype (logged once, naming ``what``);
    else ``picked``."""
    if configured != "auto" or picked != "chunk_compiled" or x.device.type != "cuda" or not triton_installed():
        return picked
    if chunk_size not in TRITON_CHUNK_SIZES or x.dtype == torch.float64:
        return picked
    _log_once(f"{what}: auto picked triton on cuda")
    return "triton"


@functools.lru_cache(maxsize=None)
def _log_once(message: str) -> None:
    log.info(message)


def load_triton_chunk():
    """The Triton form's module; a clear error when triton is not installed."""
    try:
        from . import triton_chunk
    except ImportError as exc:
        raise ImportError(f"form='triton' needs the triton package (shipped with CUDA builds of torch): {exc}") from exc
    return triton_chunk


def check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: got {chunk_size!r}; accepted: a positive int")


def compute_dtype(*xs: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 are upcast)."""
    return torch.float64 if any(x is not None and x.dtype == torch.float64 for x in xs) else torch.float32


def accumulate_dtype(x: Tensor) -> torch.dtype:
    """The dtype states and sums are kept in: float64 for float64 inputs, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def mm_dtype_for(form: str, *xs: Tensor | None) -> torch.dtype | None:
    """Matmul operand dtype of a form. "chunk_compiled" keeps bf16/fp16 inputs as tensor-core
    operands (fp32 accumulation; states, gates and chunk-to-chunk sums stay float32, the
    precision flash-linear-attention uses); every other form computes in float32/64."""
    if form != "chunk_compiled":
        return None
    low = [x.dtype for x in xs if x is not None and x.dtype in (torch.bfloat16, torch.float16)]
    return low[0] if low and len(low) == sum(x is not None for x in xs) else None


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> tuple[int, int, int, int, int]:
    """Validate the [B, H, T, D] layout; returns (B, H, T, Dk, Dv)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a tensor of shape [B, H, T, D]; got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor; got {x.dtype}")
    if q.shape != k.shape:
        raise ValueError(f"q, k: shapes must match [B, H, T, Dk]; got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v: expected [B, H, T, Dv] with B, H, T = {tuple(q.shape[:3])}; got {tuple(v.shape)}")
    B, H, T, Dk = q.shape
    if T < 1:
        raise ValueError("q, k, v: the time dimension T (dim 2) must be at least 1")
    return B, H, T, Dk, v.shape[-1]


def check_shape(x: Tensor | None, shape: tuple[int, ...], name: str, layout: str) -> None:
    if x is None:
        return
    if not isinstance(x, Tensor) or tuple(x.shape) != tuple(shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected shape {layout} = {tuple(shape)}; got {got}")


def default_scale(scale: float | None, dk: int) -> float:
    return dk ** -0.5 if scale is None else float(scale)


def pad_time(x: Tensor, chunk_size: int, dim: int = 2) -> Tensor:
    """Zero-pad dim ``dim`` (time) up to a multiple of chunk_size.

    Zero keys/values/gates/betas add nothing to the state (a zero log-gate is a decay of 1),
    so the final state is unchanged and the padded outputs are simply dropped.
    """
    T = x.shape[dim]
    pad = (-T) % chunk_size
    if pad == 0:
        return x
    widths = [0, 0] * (x.dim() - 1 - dim) + [0, pad]
    return F.pad(x, widths)


def causal_mask(n: int, device: torch.device, diagonal: int = 0) -> Tensor:
    """[n, n] bool, True where key j <= query i + diagonal."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril(diagonal)


def masked_exp_diff(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """exp(a - b) where mask, else 0; the masked exponent is set to -inf *before* exp so the
    (possibly huge) upper-triangle differences never overflow and give no NaN gradients."""
    return torch.exp(torch.where(mask, a - b, torch.full_like(a - b, -math.inf)))


def _direct_scan(a: Tensor | None, x: Tensor, s0: Tensor | None) -> tuple[Tensor, Tensor]:
    """States entering each step and the final state of h_n = exp(a_n) * h_{n-1} + x_n.

    a: [..., N, K'] log decays (K' = 1 scalar or Dk per key row); x: [..., N, Dk, Dv].
    The N x N decay matrix keeps every exponent <= 0 (stable); cost O(N^2 Dk Dv).
    """
    N = x.shape[-3]
    A = torch.cumsum(a, dim=-2)  # [..., N, K'] inclusive
    A_excl = A - a
    mask = causal_mask(N, x.device, diagonal=-1)  # strictly earlier steps m < n
    # [..., N(n), N(m), K']
    dec = masked_exp_diff(A_excl.unsqueeze(-2), A.unsqueeze(-3), mask.unsqueeze(-1))
    if a.shape[-1] == 1:
        xs = x.flatten(-2)  # [..., N, Dk*Dv]
        h_before = (dec.squeeze(-1) @ xs).view_as(x)
        last = torch.exp(A[..., -1:, :] - A).squeeze(-1)  # [..., N]
        h_final = (last.unsqueeze(-2) @ xs).squeeze(-2).view(x.shape[:-3] + x.shape[-2:])
    else:
        h_before = torch.einsum("...nmk,...mkv->...nkv", dec, x)
        last = torch.exp(A[..., -1:, :] - A)  # [..., N, Dk]
        h_final = torch.einsum("...mk,...mkv->...kv", last, x)
    if s0 is not None:
        h_before = h_before + torch.exp(A_excl).unsqueeze(-1) * s0.unsqueeze(-3)
        h_final = h_final + torch.exp(A[..., -1, :]).unsqueeze(-1) * s0
    return h_before, h_final


def state_scan(a: Tensor | None, x: Tensor, s0: Tensor | None, group: int = 32) -> tuple[Tensor, Tensor]:
    """Inter-chunk state passing without a Python loop over chunks (so torch.compile sees a
    fixed, small graph): h_n = exp(a_n) * h_{n-1} + x_n, h_{-1} = s0.

    a: [B, H, N, K'] or None (no decay); x: [B, H, N, Dk, Dv]; s0: [B, H, Dk, Dv] or None.
    Returns (states entering each chunk [B, H, N, Dk, Dv], final state [B, H, Dk, Dv]).
    Long scans are blocked into groups of ``group`` steps and the group totals are scanned
    recursively (depth log_group N), keeping the decay matrices small.
    """
    if a is None:
        h_after = torch.cumsum(x, dim=-3)
        if s0 is not None:
            h_after = h_after + s0.unsqueeze(-3)
        return h_after - x, h_after[..., -1, :, :]
    N = x.shape[-3]
    if N <= group:
        return _direct_scan(a, x, s0)
    G = -(-N // group)
    a_p = pad_time(a, group, dim=a.dim() - 2)  # zero log-decay: padded steps keep the state
    x_p = pad_time(x, group, dim=x.dim() - 3)
    a_g = a_p.unflatten(-2, (G, group))  # [..., G, L, K']
    x_g = x_p.unflatten(-3, (G, group))  # [..., G, L, Dk, Dv]
    local_before, local_final = _direct_scan(a_g, x_g, None)
    A_g = torch.cumsum(a_g, dim=-2)
    g_before, h_final = state_scan(A_g[..., -1, :], local_final, s0, group)  # [..., G, Dk, Dv]
    # state entering step l of group g = local part + decayed state entering the group
    h_before = local_before + torch.exp(A_g - a_g).unsqueeze(-1) * g_before.unsqueeze(-3)
    return h_before.flatten(-4, -3)[..., :N, :, :], h_final


@functools.lru_cache(maxsize=None)
def compiled(fn: Callable) -> Callable:
    """torch.compile(fn, fullgraph=True, dynamic=False), built once per function: fullgraph
    makes any data-dependent Python control flow an error instead of a silent graph break.
    Static shapes (one compile per input shape) because dynamic-shape kernels measured 2x
    slower for GLA on an H200 (49.8 against 23.9 ms fwd+bwd at B4 H16 T8k D128)."""
    return torch.compile(fn, fullgraph=True, dynamic=False)

"""Building blocks shared by the linear-attention mixers: short conv, per-head output norm,
rotary rotation, and the choice of op form.

Shapes: B batch, T time, H heads, D head width, Ch channels, K conv kernel size.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.ops.short_conv import short_conv

log = logging.getLogger("archlab.linear")
_LOGGED: set[tuple[str, str]] = set()


def upcast(x: Tensor) -> Tensor:
    """float32 for low-precision tensors (gates, norms, softmax); float64 stays float64."""
    return x if x.dtype == torch.float64 else x.float()


def choose_form(form: str, n_new: int, has_cache: bool, device: torch.device) -> str:
    """The op form a mixer runs: the configured one, or for "auto" the recurrent form for a
    one-token cached step, chunk_compiled on CUDA and chunk elsewhere (logged once)."""
    if form != "auto":
        return form
    if has_cache and n_new == 1:
        return "recurrent"
    pick = "chunk_compiled" if device.type == "cuda" else "chunk"
    if (device.type, pick) not in _LOGGED:
        _LOGGED.add((device.type, pick))
        log.info("linear attention: form=auto picked %s on %s", pick, device.type)
    return pick


class ShortConv(nn.Module):
    """Causal depthwise conv with SiLU over the concatenated q/k/v projections (one weight
    row per channel, so this equals separate q, k and v convs)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, kernel).uniform_(-kernel ** -0.5, kernel ** -0.5))

    def forward(self, x: Tensor, state: Tensor | None, form: str) -> tuple[Tensor, Tensor | None]:
        """x: [B, T, Ch]; state: [B, Ch, K-1] or None -> y [B, T, Ch], new state."""
        conv_form = {"parallel": "parallel", "recurrent": "recurrent"}.get(form, "conv1d")
        return short_conv(x, self.weight.to(x.dtype), None, activation="silu", initial_state=state,
                          output_final_state=state is not None, form=conv_form)


class HeadNorm(nn.Module):
    """Per-head output norm: "rms" (RMSNorm with one weight of width Dv shared by the heads,
    as GLA/DeltaNet) or "layer" (mean-and-variance norm per head without affine: RetNet's
    GroupNorm with one group per head)."""

    def __init__(self, kind: str, dv: int, eps: float):
        super().__init__()
        self.kind, self.eps = kind, eps
        self.weight = nn.Parameter(torch.ones(dv)) if kind == "rms" else None

    def forward(self, o: Tensor) -> Tensor:
        """o: [B, H, T, Dv]."""
        if self.kind == "none":
            return o
        of = upcast(o)
        if self.kind == "layer":
            return F.layer_norm(of, of.shape[-1:], eps=self.eps).to(o.dtype)
        out = of * torch.rsqrt(of.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight.to(of.dtype)).to(o.dtype)


def drop_pads(t: Tensor, mask: Tensor | None) -> Tensor:
    """``t`` [B, H, T, ...] with the left-padding tokens zeroed (mask [B, T], True = real), so
    they write nothing into a state that starts at zero (decays of a zero state stay zero)."""
    if mask is None:
        return t
    m = mask[:, None, :]  # [B, 1, T]
    return t * m.view(*m.shape, *([1] * (t.dim() - 3))).to(t.dtype)


def head_norm_params(kind: str, dv: int) -> int:
    return dv if kind == "rms" else 0


def rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate pairs (x_i, x_{i+D/2}) by angle pos * base^(-2i/D) (RoPE, Su et al. 2021; RetNet's
    xPos rotation without its scaling). x: [B, H, T, D] (D even), positions: [B, T]."""
    D = x.shape[-1]
    half = D // 2
    inv = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / D)  # [D/2]
    ang = positions.to(torch.float32)[:, None, :, None] * inv  # [B, 1, T, D/2]
    cos, sin = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out if D == 2 * half else torch.cat([out, x[..., 2 * half:]], dim=-1)


def window_attention(q: Tensor, k: Tensor, v: Tensor, ring_k: Tensor, ring_v: Tensor, seen: int,
                     start: Tensor | None = None) -> Tensor:
    """Causal sliding-window softmax attention over the last W positions (itself included).

    q, k, v: [B, H, T, D] for positions seen .. seen+T-1; ring_k, ring_v: [B, H, W, D] the
    earlier keys/values, slot s holding the latest position p < seen with p % W == s.
    Queries are processed in blocks of W: block i sees the ring (as block -1) or block i-1,
    and itself, so the cost is O(T W), not O(T^2).
    ``start`` [B] (left padding): row b's real tokens begin at position start[b]; its real
    queries see no earlier key, its pads only pads.
    """
    B, H, T, D = q.shape
    W = ring_k.shape[2]
    dev = q.device
    n = -(-T // W)
    Tp = n * W
    pad = Tp - T
    # padded tokens get the next positions and see only themselves: no empty softmax row
    q_pos = seen + torch.arange(Tp, device=dev)  # [Tp]
    s = torch.arange(W, device=dev)
    slot_pos = seen - 1 - torch.remainder(seen - 1 - s, W)  # [W]
    slot_ok = slot_pos >= 0
    keys = torch.cat([ring_k, F.pad(k, (0, 0, 0, pad))], dim=2)  # [B, H, W + Tp, D]
    vals = torch.cat([ring_v, F.pad(v, (0, 0, 0, pad))], dim=2)
    k_pos = torch.cat([slot_pos, q_pos])  # [W + Tp]
    k_ok = torch.cat([slot_ok, torch.ones(Tp, dtype=torch.bool, device=dev)])
    kb = keys.unfold(2, 2 * W, W).transpose(-1, -2)  # [B, H, n, 2W, D]
    vb = vals.unfold(2, 2 * W, W).transpose(-1, -2)  # [B, H, n, 2W, D]
    kpb = k_pos.unfold(0, 2 * W, W)  # [n, 2W]
    kokb = k_ok.unfold(0, 2 * W, W)
    qb = F.pad(q, (0, 0, 0, pad)).unflatten(2, (n, W))  # [B, H, n, W, D]
    qpb = q_pos.view(n, W)
    diff = qpb.unsqueeze(-1) - kpb.unsqueeze(-2)  # [n, W, 2W]
    allowed = kokb.unsqueeze(-2) & (diff >= 0) & (diff < W)
    scores = (qb @ kb.transpose(-1, -2)) * D ** -0.5  # [B, H, n, W, 2W]
    if start is not None:
        real_k = kpb >= start[:, None, None]  # [B, n, 2W]
        real_q = qpb >= start[:, None, None]  # [B, n, W]
        allowed = (allowed & (real_k[:, :, None, :] == real_q[..., None]))[:, None]  # [B, 1, n, W, 2W]
    scores = scores.masked_fill(~allowed, -math.inf)
    o = torch.softmax(upcast(scores), dim=-1).to(q.dtype) @ vb  # [B, H, n, W, D]
    return o.flatten(2, 3)[:, :, :T]


def write_ring(ring_k: Tensor, ring_v: Tensor, k: Tensor, v: Tensor, seen: int) -> None:
    """Store the last min(T, W) keys/values of this call in their slots (pos % W)."""
    W, T = ring_k.shape[2], k.shape[2]
    m = min(T, W)
    slots = torch.remainder(torch.arange(seen + T - m, seen + T, device=k.device), W)
    ring_k.index_copy_(2, slots, k[:, :, T - m:].detach().to(ring_k.dtype))
    ring_v.index_copy_(2, slots, v[:, :, T - m:].detach().to(ring_v.dtype))

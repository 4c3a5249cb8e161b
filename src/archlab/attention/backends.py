"""Attention backends behind one signature.

``attend(q, k, v, *, q_pos, k_pos, scale, bias, window, softcap)``:
  q [B, H, T, D], k/v [B, Hkv, S, D(v)], q_pos [B, T], k_pos [B, S] (absolute positions),
  bias [B or 1, H, T, S] or None (ALiBi, T5). A query at position p sees keys at positions
  k <= p, and with a window W only those with p - k < W. Returns [B, H, T, Dv].

The eager path is the reference: every mask, bias and soft-cap, written out in float32.
SDPA is PyTorch's fused kernel; it takes masks and additive biases but no soft-capping.
Shapes: B batch, H query heads, Hkv key/value heads, G = H / Hkv, T queries, S keys, D head dim.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from archlab.registry import Registry

log = logging.getLogger("archlab.attention")
BACKENDS: Registry = Registry("attention.backend")
_logged: set[str] = set()


def visibility(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None) -> torch.Tensor:
    """Boolean [B, 1, T, S]: may the query at q_pos see the key at k_pos (causal, windowed)."""
    diff = q_pos[:, :, None] - k_pos[:, None, :]  # [B, T, S]
    ok = diff >= 0
    if window is not None:
        ok = ok & (diff < window)
    return ok[:, None]


@BACKENDS.register("eager")
def eager_attention(q, k, v, *, q_pos, k_pos, scale, bias=None, window=None, softcap=None):
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    ct = torch.promote_types(q.dtype, torch.float32)  # at least float32 for the reference
    qg = q.to(ct).view(B, Hkv, H // Hkv, T, D)  # [B, Hkv, G, T, D]: query heads grouped by kv head
    s = torch.einsum("bkgtd,bksd->bkgts", qg, k.to(ct)) * scale  # [B, Hkv, G, T, S]
    s = s.reshape(B, H, T, -1)  # [B, H, T, S]
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        s = s + bias.to(ct)
    s = s.masked_fill(~visibility(q_pos, k_pos, window), float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a query with no visible key outputs zeros
    pg = p.view(B, Hkv, H // Hkv, T, -1)  # [B, Hkv, G, T, S]
    o = torch.einsum("bkgts,bksd->bkgtd", pg, v.to(ct))  # [B, Hkv, G, T, Dv]
    return o.reshape(B, H, T, -1).to(q.dtype)


@BACKENDS.register("sdpa")
def sdpa_attention(q, k, v, *, q_pos, k_pos, scale, bias=None, window=None, softcap=None):
    if softcap is not None:
        raise ValueError("attention.backend: sdpa cannot apply logit soft-capping; use eager")
    T, S = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if bias is None and window is None and T == S and _aligned(q_pos, k_pos):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    mask = visibility(q_pos, k_pos, window)  # [B, 1, T, S]
    if bias is not None:
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf")) + bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


def _aligned(q_pos: torch.Tensor, k_pos: torch.Tensor) -> bool:
    """Queries and keys are the same positions, so the plain causal mask is right."""
    if torch.compiler.is_compiling():
        return True  # callers under compile pass aligned positions for T == S (no cache)
    return bool(torch.equal(q_pos, k_pos))


def pick_backend(requested: str, *, softcap: float | None, device: torch.device) -> str:
    """Resolve ``auto``; logs the pick once per reason."""
    if requested != "auto":
        return requested
    pick, why = ("eager", "soft-capping needs the eager path") if softcap is not None else ("sdpa", "fused kernel")
    key = f"{pick}:{why}"
    if key not in _logged:
        _logged.add(key)
        log.info("attention backend auto -> %s (%s)", pick, why)
    return pick

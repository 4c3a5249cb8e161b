"""Attention backends behind one signature.

``attend(q, k, v, *, q_pos, k_pos, scale, bias, mask, softcap, position)``:
  q [B, H, T, D], k/v [B, Hkv, S, D(v)], q_pos [B, T], k_pos [B, S] (absolute positions),
  bias [B or 1, H, T, S] or None (ALiBi, T5), mask a :class:`MaskSpec` (causal, window,
  sinks, block-sparse). Returns [B, H, T, Dv].

- eager: the reference. Every mask, bias and soft-cap, written out in float32 (or wider).
- sdpa: PyTorch's fused kernel; takes masks and additive biases, no soft-capping.
- flex: ``torch.nn.attention.flex_attention`` (CUDA), compiled, with the mask as a block mask
  (masked tiles skipped, no T x S matrix) and biases/soft-capping as a score modifier.

Shapes: B batch, H query heads, Hkv key/value heads, G = H / Hkv, T queries, S keys, D head dim.
"""
from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from archlab.attention.masks import MaskSpec
from archlab.registry import Registry

log = logging.getLogger("archlab.attention")
BACKENDS: Registry = Registry("attention.backend")
_logged: set[str] = set()
CAUSAL = MaskSpec()


def visibility(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean [B, 1, T, S] for a causal (optionally windowed) mask."""
    return MaskSpec(window=window).visibility(q_pos, k_pos)


@BACKENDS.register("eager")
def eager_attention(q, k, v, *, q_pos, k_pos, scale, bias=None, mask: MaskSpec = CAUSAL, softcap=None, position=None):
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
    s = s.masked_fill(~mask.visibility(q_pos, k_pos), float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a query with no visible key outputs zeros
    pg = p.view(B, Hkv, H // Hkv, T, -1)  # [B, Hkv, G, T, S]
    o = torch.einsum("bkgts,bksd->bkgtd", pg, v.to(ct))  # [B, Hkv, G, T, Dv]
    return o.reshape(B, H, T, -1).to(q.dtype)


@BACKENDS.register("sdpa")
def sdpa_attention(q, k, v, *, q_pos, k_pos, scale, bias=None, mask: MaskSpec = CAUSAL, softcap=None, position=None):
    if softcap is not None:
        raise ValueError("attention.backend: sdpa cannot apply logit soft-capping; use eager or flex")
    T, S = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if bias is None and mask.is_causal_only and T == S and _aligned(q_pos, k_pos):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    vis = mask.visibility(q_pos, k_pos)  # [B, 1, T, S]
    if bias is not None:
        vis = torch.zeros(vis.shape, dtype=q.dtype, device=q.device).masked_fill(~vis, float("-inf")) + bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=vis, scale=scale, enable_gqa=gqa)


def _aligned(q_pos: torch.Tensor, k_pos: torch.Tensor) -> bool:
    """Queries and keys are the same positions, so the plain causal mask is right.

    Without a cache attention passes the same tensor for both (no check needed); otherwise
    compare, except where a host sync is not allowed (compile, graph capture): use the mask."""
    if q_pos is k_pos:
        return True
    if torch.compiler.is_compiling() or (q_pos.is_cuda and torch.cuda.is_current_stream_capturing()):
        return False
    return bool(torch.equal(q_pos, k_pos))


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=64)
def _block_mask(mask: MaskSpec, offset: int, T: int, S: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return mask.allowed(q_idx + offset, kv_idx)

    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=T, KV_LEN=S, device=device)


@BACKENDS.register("flex")
def flex_attention_backend(q, k, v, *, q_pos, k_pos, scale, bias=None, mask: MaskSpec = CAUSAL, softcap=None, position=None):
    """flex_attention over contiguous positions: keys 0..S-1, queries S-T..S-1 (no ring buffer)."""
    if q.device.type != "cuda":
        raise ValueError("attention.backend: flex needs a CUDA device; use sdpa or eager on the CPU")
    if mask.padded:
        raise ValueError("attention.backend: flex takes no left-padded batches (its block mask assumes every row "
                         "starts at position 0); use sdpa or eager, or batch prompts of equal length")
    T, S = q.shape[2], k.shape[2]
    offset = S - T
    score_mod = None
    pos_mod = position.score_mod(offset) if position is not None and bias is not None else None
    if bias is not None and pos_mod is None:
        raise ValueError("attention.backend: flex needs a score_mod from the position encoding for its bias")
    if pos_mod is not None or softcap is not None:
        def score_mod(score, b, h, q_idx, kv_idx):
            if softcap is not None:
                score = softcap * torch.tanh(score / softcap)
            if pos_mod is not None:
                score = pos_mod(score, b, h, q_idx, kv_idx)
            return score

    block_mask = _block_mask(mask, offset, T, S, str(q.device))
    fn = _compiled_flex()
    return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])


def pick_backend(requested: str, *, softcap: float | None, mask: MaskSpec, device: torch.device, cached: bool,
                 flex_bias_ok: bool = True) -> str:
    """Resolve ``auto``; logs the pick once per reason.

    auto: flex on CUDA for soft-capping or a sparse/windowed pattern over a whole sequence
    (no T x S matrix); eager for soft-capping elsewhere; SDPA otherwise.
    """
    if requested != "auto":
        return requested
    cuda = device.type == "cuda"
    if cuda and not cached and flex_bias_ok and not mask.padded and (softcap is not None or not mask.is_causal_only):
        pick, why = "flex", "pattern or soft-capping on CUDA"
    elif softcap is not None:
        pick, why = "eager", "soft-capping needs the eager path here"
    else:
        pick, why = "sdpa", "fused kernel"
    key = f"{pick}:{why}"
    if key not in _logged:
        _logged.add(key)
        log.info("attention backend auto -> %s (%s)", pick, why)
    return pick

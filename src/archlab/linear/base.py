"""Shared skeleton of the linear-attention token mixers.

x [B, T, C] -> q/k/v projections -> optional short conv -> heads [B, H, T, D] -> the kind's
mixing op (``_mix``) -> per-head output norm -> optional swish output gate -> output projection.
Shapes: B batch, T time, C d_model, H heads, Dk q/k width, Dv value width, Df feature width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import HeadNorm, ShortConv, choose_form
from .cache import LinearAttentionCache, state_dtype
from .config import LinearAttentionConfig
from .dims import dims


class LinearMixerBase(nn.Module):
    """Implements the mixer contract: ``Mixer(cfg, d_model, layer_idx)``,
    ``forward(x, *, positions, cache=None)`` and ``new_cache(batch_size, max_len, dtype, device)``."""

    uses_normalizer = False  # whether the state carries the normaliser z [B, H, Df]

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__()
        self.cfg, self.d_model, self.layer_idx = cfg, d_model, layer_idx
        self.dims = d = dims(cfg, d_model)
        H = d.heads
        self.q_proj = nn.Linear(d_model, d.k_heads * d.qk, bias=False)
        self.k_proj = nn.Linear(d_model, d.k_heads * d.qk, bias=False)
        self.v_proj = nn.Linear(d_model, H * d.v, bias=False)
        self.conv = ShortConv(d.conv_channels, d.conv) if d.conv else None
        self.norm = HeadNorm(str(cfg.resolved("output_norm")), d.v, cfg.norm_eps)
        self.g_proj = nn.Linear(d_model, H * d.v, bias=False) if cfg.resolved("output_gate") == "swish" else None
        self.o_proj = nn.Linear(H * d.v, d_model, bias=False)

    # ---- cache
    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> LinearAttentionCache:
        d, sd = self.dims, state_dtype(dtype)
        return LinearAttentionCache(
            state=torch.zeros(batch_size, d.heads, d.feat, d.v, dtype=sd, device=device),
            normalizer=torch.zeros(batch_size, d.heads, d.feat, dtype=sd, device=device) if self.uses_normalizer else None,
            conv=torch.zeros(batch_size, d.conv_channels, d.conv - 1, dtype=dtype, device=device) if d.conv else None,
            window_k=None, window_v=None, max_len=max_len,
        )

    def state_in(self, cache: LinearAttentionCache | None):
        if cache is None:
            return None
        return (cache.state, cache.normalizer) if self.uses_normalizer else cache.state

    def state_out(self, cache: LinearAttentionCache | None, final) -> None:
        if cache is None:
            return
        if self.uses_normalizer:
            cache.state.copy_(final[0])
            cache.normalizer.copy_(final[1])
        else:
            cache.state.copy_(final)

    # ---- forward
    def heads(self, x: Tensor, width: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, -1, width).transpose(1, 2)  # [B, H, T, width]

    def forward(self, x: Tensor, *, positions: Tensor | None = None, cache: LinearAttentionCache | None = None,
                mask: Tensor | None = None) -> Tensor:
        """``mask`` [B, T] (True = real token) marks left padding: pads enter neither the short
        conv (zero inputs, as an empty window) nor the state (``_mix`` zeroes their writes)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x: expected [B, T, {self.d_model}]; got {tuple(x.shape)}")
        B, T, _ = x.shape
        start = 0
        if cache is not None:
            cache.check_room(T)
            start = cache.seen
        if positions is None:
            positions = torch.arange(start, start + T, device=x.device).expand(B, T)
        form = choose_form(self.cfg.form, T, cache is not None, x.device)
        d = self.dims
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.conv is not None:
            qkv = torch.cat([q, k, v], dim=-1)
            if mask is not None:
                qkv = qkv * mask[..., None].to(qkv.dtype)
            qkv, st = self.conv(qkv, None if cache is None else cache.conv, form)
            if cache is not None:
                cache.conv.copy_(st)
            q, k, v = qkv.split([d.k_heads * d.qk, d.k_heads * d.qk, d.heads * d.v], dim=-1)
        q, k = self.heads(q, d.qk), self.heads(k, d.qk)  # [B, Hk, T, Dk]
        if d.k_heads != d.heads:  # each q/k head serves H / Hk consecutive value heads
            q, k = (t.repeat_interleave(d.heads // d.k_heads, dim=1) for t in (q, k))  # [B, H, T, Dk]
        pad = {} if mask is None else {"mask": mask}
        o = self._mix(x, q, k, self.heads(v, d.v), positions, cache, form, **pad)
        if cache is not None:
            cache.seen += T
        o = self.norm(o).transpose(1, 2).reshape(B, T, d.heads * d.v)  # [B, T, H*Dv]
        if self.g_proj is not None:
            o = o * F.silu(self.g_proj(x))
        return self.o_proj(o)

    def _mix(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, positions: Tensor,
             cache: LinearAttentionCache | None, form: str, mask: Tensor | None = None) -> Tensor:
        """q, k: [B, H, T, Dk], v: [B, H, T, Dv] -> o [B, H, T, Dv]; updates the cache state.
        ``mask`` [B, T] (left padding): the pads' writes to the state must be zero."""
        raise NotImplementedError

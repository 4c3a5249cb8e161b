"""Softmax attention (Vaswani et al. 2017) with grouped key/value heads (Ainslie et al. 2023).

MHA (kv_heads = heads), GQA (1 < kv_heads < heads) and MQA (kv_heads = 1) are one module.
Shapes: B batch, T new tokens, S keys, C model width, H query heads, Hkv kv heads, D head dim.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from archlab.attention.backends import BACKENDS, pick_backend
from archlab.attention.masks import padded_spec
from archlab.attention.registry import ATTENTION
from archlab.cache.kv import KVCache
from archlab.cache.sliding import SlidingKVCache
from archlab.cache.quantized import quantized_kv_bytes, quantized_kv_cache
from archlab.norm import rms_norm
from archlab.packing import PackedMixin

if TYPE_CHECKING:
    from archlab.attention.config import AttentionConfig
    from archlab.config import ModelConfig
    from archlab.position.base import PositionEncoding


@ATTENTION.register("softmax")
class SoftmaxAttention(PackedMixin, nn.Module):
    def __init__(self, cfg: "ModelConfig", layer_idx: int, position: "PositionEncoding"):
        super().__init__()
        a = cfg.attention
        C, H, Hkv, D = cfg.d_model, a.heads, a.n_kv, a.dim(cfg.d_model)
        self.cfg, self.layer_idx, self.position = a, layer_idx, position
        self.H, self.Hkv, self.D = H, Hkv, D
        from archlab.position.rope_scaling import yarn_softmax_scale_multiplier

        # YaRN with mscale_all_dim (DeepSeek) also rescales the softmax, rotated dims or not
        self.scale = (a.scale if a.scale is not None else D**-0.5) * yarn_softmax_scale_multiplier(cfg.position)
        self.mask = a.mask
        self.q_proj = nn.Linear(C, H * D, bias=a.qkv_bias)
        self.k_proj = nn.Linear(C, Hkv * D, bias=a.qkv_bias)
        self.v_proj = nn.Linear(C, Hkv * D, bias=a.qkv_bias)
        self.o_proj = nn.Linear(H * D, C, bias=a.out_bias)
        self.norm_eps = cfg.norm.eps
        init = torch.zeros if a.qk_norm_unit_offset else torch.ones  # a unit-offset weight stores w - 1
        if a.qk_norm == "head":
            self.q_norm = nn.Parameter(init(D))
            self.k_norm = nn.Parameter(init(D))
        elif a.qk_norm == "full":
            self.q_norm = nn.Parameter(init(H * D))
            self.k_norm = nn.Parameter(init(Hkv * D))
        else:
            self.q_norm = self.k_norm = None
        # gated attention: o * sigmoid(x W_g), one gate per channel or per head
        self.g_proj = nn.Linear(C, gate_width(a, H, D), bias=a.qkv_bias) if a.output_gate != "none" else None

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache: KVCache | SlidingKVCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` [B, T] (True = real token) marks a left-padded batch; the pads' negative
        positions (and the cache's) already say which keys to hide."""
        q, k, v = self._project(x)  # one matmul once packed (decoding), else three
        o = self.attend_projected(q, k, v, positions=positions, cache=cache, mask=mask)  # [B, T, H, D]
        B, T = o.shape[:2]
        if self.g_proj is not None:
            o = o * torch.sigmoid(self.g_proj(x)).view(B, T, self.H, -1)  # gate [B, T, H, D or 1]
        return self.o_proj(o.reshape(B, T, self.H * self.D))  # [B, T, H*D] -> [B, T, C]

    def attend_projected(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, positions: torch.Tensor,
                         cache: KVCache | SlidingKVCache | None = None, mask: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """Everything between the q/k/v projections ([B, T, H*D], [B, T, Hkv*D] x 2) and the output
        gate and projection: QK-norm, position, cache, attention. Returns [B, T, H, D]."""
        B, T = q.shape[:2]
        off = self.cfg.qk_norm_unit_offset
        if self.cfg.qk_norm == "full":
            q, k = rms_norm(q, self.q_norm, self.norm_eps, off), rms_norm(k, self.k_norm, self.norm_eps, off)
        q = q.view(B, T, self.H, self.D).transpose(1, 2)  # [B, H, T, D]
        k = k.view(B, T, self.Hkv, self.D).transpose(1, 2)  # [B, Hkv, T, D]
        v = v.view(B, T, self.Hkv, self.D).transpose(1, 2)  # [B, Hkv, T, D]
        if self.cfg.qk_norm == "head":
            q, k = rms_norm(q, self.q_norm, self.norm_eps, off), rms_norm(k, self.k_norm, self.norm_eps, off)
        q, k = self.position.rotate(q, k, positions)
        if cache is not None:
            k, v, k_pos = cache.update(k, v, positions)
        else:
            k_pos = positions
        bias = self.position.bias(positions, k_pos)
        spec = padded_spec(self.mask, mask, cache)
        backend = pick_backend(self.cfg.backend, softcap=self.cfg.softcap, mask=spec, device=q.device,
                               cached=cache is not None, flex_bias_ok=bias is None or self.position.score_mod(0) is not None)
        o = BACKENDS.get(backend)(
            q, k, v, q_pos=positions, k_pos=k_pos, scale=self.scale, bias=bias, mask=spec,
            softcap=self.cfg.softcap, position=self.position,
        )
        return o.transpose(1, 2)  # [B, T, H, D]

    def _packed_layers(self) -> list[nn.Linear]:
        return [self.q_proj, self.k_proj, self.v_proj]

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype, device=None) -> KVCache | SlidingKVCache:
        """A ring buffer of window (+ sink) slots for windowed layers, else a full cache."""
        if self.cfg.cache_dtype != "auto":
            return quantized_kv_cache(self.cfg.cache_dtype, batch_size, self.Hkv, max_len, self.D, window=self.cfg.window,
                                      sinks=self.cfg.sinks, dtype=dtype, device=device)
        if self.cfg.window is not None:
            return SlidingKVCache(batch_size, self.Hkv, max_len, self.D, window=self.cfg.window, sinks=self.cfg.sinks,
                                  dtype=dtype, device=device)
        return KVCache(batch_size, self.Hkv, max_len, self.D, dtype=dtype, device=device)

    # -- analytic accounting (no weights allocated) --
    @staticmethod
    def params(cfg: "ModelConfig") -> int:
        a, C = cfg.attention, cfg.d_model
        H, Hkv, D = a.heads, a.n_kv, a.dim(C)
        n = C * (H + 2 * Hkv) * D + H * D * C
        n += (H + 2 * Hkv) * D if a.qkv_bias else 0
        n += C if a.out_bias else 0
        n += {"none": 0, "head": 2 * D, "full": (H + Hkv) * D}[a.qk_norm]
        if a.output_gate != "none":
            n += (C + (1 if a.qkv_bias else 0)) * gate_width(a, H, D)
        return n

    @staticmethod
    def flops_per_token(cfg: "ModelConfig", seq_len: int) -> float:
        a, C = cfg.attention, cfg.d_model
        H, Hkv, D = a.heads, a.n_kv, a.dim(C)
        proj = 2.0 * (C * (H + 2 * Hkv) * D + H * D * C)
        proj += 2.0 * C * gate_width(a, H, D) if a.output_gate != "none" else 0.0
        # QK^T and PV: 2 * 2 * H * D per visible key
        return proj + 4.0 * H * D * a.mask.mean_keys(seq_len)

    @staticmethod
    def cache_bytes(cfg: "ModelConfig", seq_len: int, batch_size: int, elem: int) -> int:
        a = cfg.attention
        if a.cache_dtype != "auto":
            return quantized_kv_bytes(batch_size, a.n_kv, seq_len, a.dim(cfg.d_model), window=a.window, sinks=a.sinks)
        if a.window is not None:
            return SlidingKVCache.bytes_for(batch_size, a.n_kv, seq_len, a.dim(cfg.d_model), None, elem,
                                            window=a.window, sinks=a.sinks)
        return KVCache.bytes_for(batch_size, a.n_kv, seq_len, a.dim(cfg.d_model), None, elem)


def gate_width(a: "AttentionConfig", H: int, D: int) -> int:
    """Output-gate channels: one per output channel (elementwise) or one per head (headwise)."""
    return H * D if a.output_gate_shape == "elementwise" else H

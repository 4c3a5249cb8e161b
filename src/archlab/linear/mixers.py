"""The linear-attention token mixers, one class per ``LinearAttentionConfig.kind``.

Shapes: B batch, T time, C d_model, H heads, Dk q/k width, Dv value width, Df feature width,
W window.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.ops.delta_rule import delta_rule, gated_delta_rule, l2norm
from archlab.ops.gla import gla
from archlab.ops.linear_attn import linear_attn
from archlab.ops.linear_attn.common import auto_triton
from archlab.ops.simple_gla import retention, retention_log_decay

from .base import LinearMixerBase
from .blocks import drop_pads, rotary, upcast, window_attention, write_ring
from .cache import LinearAttentionCache
from .config import LinearAttentionConfig
from .feature_maps import Taylor, build_feature_map


class FeatureMapLinearAttention(LinearMixerBase):
    """Linear attention with a feature map phi (kind="linear"): o_i = sum_j phi(q_i).phi(k_j) v_j,
    divided by sum_j phi(q_i).phi(k_j) when ``normalize``. The feature maps carry their own
    scaling, so the op's scale is 1 with the normaliser and Df^-0.5 without."""

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        self.uses_normalizer = cfg.normalize
        self.feature_map = build_feature_map(cfg.feature_map, self.dims.heads, self.dims.qk, cfg.normalize)

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        qf, kf = self.feature_map(q, positions, "q"), drop_pads(self.feature_map(k, positions, "k"), mask)
        o, final = linear_attn(
            qf, kf, v, normalize=self.cfg.normalize, scale=1.0 if self.cfg.normalize else self.dims.feat ** -0.5,
            eps=self.cfg.eps, initial_state=self.state_in(cache), output_final_state=cache is not None,
            form=auto_triton(self.cfg.form, form, self.cfg.chunk_size, v), chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        return o


class Retention(LinearMixerBase):
    """Multi-scale retention (RetNet, Sun et al. 2023): rotated q/k, fixed per-head decay
    gamma_h = 1 - 2^(-5-h), group norm per head, swish gate."""

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        self.register_buffer("log_decay", retention_log_decay(cfg.heads), persistent=False)  # [H]

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        o, final = retention(
            rotary(q, positions), drop_pads(rotary(k, positions), mask), v, self.log_decay, scale=self.dims.qk ** -0.5,
            initial_state=self.state_in(cache), output_final_state=cache is not None,
            form=auto_triton(self.cfg.form, form, self.cfg.chunk_size, v), chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        return o


class GatedLinearAttention(LinearMixerBase):
    """GLA (Yang et al. 2024): a data-dependent decay per key channel from a low-rank
    projection, log gate = logsigmoid(x W1 W2 + b) / gate_normalizer; RMSNorm and swish gate."""

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        d = self.dims
        self.gk_proj = nn.Sequential(nn.Linear(d_model, cfg.gate_low_rank, bias=False),
                                     nn.Linear(cfg.gate_low_rank, d.heads * d.qk, bias=True))

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        g = F.logsigmoid(upcast(self.gk_proj(x))) / self.cfg.gate_normalizer  # [B, T, H*Dk]
        o, final = gla(
            q, drop_pads(k, mask), v, self.heads(g, self.dims.qk), scale=self.dims.qk ** -0.5,
            initial_state=self.state_in(cache), output_final_state=cache is not None,
            form=auto_triton(self.cfg.form, form, self.cfg.chunk_size, v), chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        return o


class DeltaNet(LinearMixerBase):
    """DeltaNet (Yang et al. 2024): delta-rule state update, beta = sigmoid(x W_b), SiLU short
    conv on q/k/v (SiLU on q/k without conv), L2-normalised q and k, RMSNorm output."""

    gated = False

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        self.b_proj = nn.Linear(d_model, cfg.heads, bias=False)

    def _qk(self, q, k):
        if self.conv is None:
            q, k = F.silu(q), F.silu(k)
        return l2norm(upcast(q)).to(q.dtype), l2norm(upcast(k)).to(k.dtype)

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        q, k = self._qk(q, k)
        beta = drop_pads(torch.sigmoid(upcast(self.b_proj(x))).transpose(1, 2), mask)  # [B, H, T]: pads write nothing
        o, final = delta_rule(
            q, k, v, beta, scale=self.dims.qk ** -0.5, initial_state=self.state_in(cache),
            output_final_state=cache is not None, form=form, chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        return o


class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet (Yang et al. 2025): the delta rule with a Mamba-2 style decay
    alpha_t = exp(-exp(A_log) softplus(x W_a + dt_bias)), short convs, L2-norm q/k and a
    gated RMSNorm output (norm(o) * silu(x W_g))."""

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        H = cfg.heads
        self.a_proj = nn.Linear(d_model, H, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(0.1))).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt at init

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        q, k = self._qk(q, k)
        beta = drop_pads(torch.sigmoid(upcast(self.b_proj(x))).transpose(1, 2), mask)  # [B, H, T]: pads write nothing
        a = upcast(self.a_proj(x))
        g = -torch.exp(self.A_log.to(a.dtype)) * F.softplus(a + self.dt_bias.to(a.dtype))  # [B, T, H]
        o, final = gated_delta_rule(
            q, k, v, g.transpose(1, 2), beta, scale=self.dims.qk ** -0.5, initial_state=self.state_in(cache),
            output_final_state=cache is not None, form=form, chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        return o


class Based(LinearMixerBase):
    """Based (Arora et al. 2024) in one layer: Taylor-feature linear attention (global, fixed
    state) plus sliding-window softmax attention over the last ``window`` tokens (exact local
    recall; its decode cache is a ring buffer of W slots). The two branch outputs are added."""

    def __init__(self, cfg: LinearAttentionConfig, d_model: int, layer_idx: int):
        super().__init__(cfg, d_model, layer_idx)
        self.uses_normalizer = cfg.normalize
        d = self.dims
        self.feature_map = Taylor(d.qk)
        self.wq = nn.Linear(d_model, d.heads * d.v, bias=False)
        self.wk = nn.Linear(d_model, d.heads * d.v, bias=False)
        self.wv = nn.Linear(d_model, d.heads * d.v, bias=False)

    def new_cache(self, batch_size, max_len, dtype=torch.float32, device=None) -> LinearAttentionCache:
        cache = super().new_cache(batch_size, max_len, dtype, device)
        shape = (batch_size, self.dims.heads, self.cfg.window, self.dims.v)
        cache.window_k = torch.zeros(shape, dtype=dtype, device=device)
        cache.window_v = torch.zeros(shape, dtype=dtype, device=device)
        return cache

    def _mix(self, x, q, k, v, positions, cache, form, mask=None):
        qf, kf = self.feature_map(q, positions, "q"), drop_pads(self.feature_map(k, positions, "k"), mask)
        o, final = linear_attn(
            qf, kf, v, normalize=self.cfg.normalize, scale=1.0 if self.cfg.normalize else self.dims.feat ** -0.5,
            eps=self.cfg.eps, initial_state=self.state_in(cache), output_final_state=cache is not None,
            form=auto_triton(self.cfg.form, form, self.cfg.chunk_size, v), chunk_size=self.cfg.chunk_size,
        )
        self.state_out(cache, final)
        d = self.dims
        sq = rotary(self.heads(self.wq(x), d.v), positions)
        sk = rotary(self.heads(self.wk(x), d.v), positions)
        sv = self.heads(self.wv(x), d.v)
        # left padding: the first real token of each row (ring slots and pads before it are hidden)
        start = (~mask).sum(-1) if mask is not None else None if cache is None else cache.offsets
        if cache is None:
            ring = sk.new_zeros(x.shape[0], d.heads, self.cfg.window, d.v)
            return o + window_attention(sq, sk, sv, ring, ring, 0, start)
        o_local = window_attention(sq, sk, sv, cache.window_k.to(sk.dtype), cache.window_v.to(sv.dtype), cache.seen,
                                   start)
        write_ring(cache.window_k, cache.window_v, sk, sv, cache.seen)
        return o + o_local


MIXERS: dict[str, type[LinearMixerBase]] = {
    "linear": FeatureMapLinearAttention,
    "retention": Retention,
    "gla": GatedLinearAttention,
    "deltanet": DeltaNet,
    "gated_deltanet": GatedDeltaNet,
    "based": Based,
}


def build_mixer(cfg: LinearAttentionConfig, d_model: int, layer_idx: int = 0) -> LinearMixerBase:
    """The mixer for ``cfg.kind`` (the core's registry can wrap ``MIXERS``)."""
    return MIXERS[cfg.kind](cfg, d_model, layer_idx)



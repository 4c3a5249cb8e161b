"""Analytic accounting of the linear-attention mixers (no weights allocated).

params          == sum(p.numel() for p in mixer.parameters())
flops_per_token  forward FLOPs per token (2 per multiply-add) of the projections, the short
                 conv, the learned/random feature maps and the recurrent-form state work
                 (update + read-out: 4 Df Dv per head, 6 Dk Dv for the delta rule; + 2 Df for
                 the normaliser), plus Based's window attention over its average causal span.
                 Elementwise work (gates, norms, exp) is not counted. The chunkwise training
                 form does more (intra-chunk quadratic part) for the same result.
cache_bytes     == new_cache(...).nbytes(): fixed, independent of seq_len.
"""
from __future__ import annotations

import torch

from .cache import state_dtype
from .config import LinearAttentionConfig
from .dims import dims
from .feature_maps import feature_map_params


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def uses_normalizer(cfg: LinearAttentionConfig) -> bool:
    return cfg.kind in ("linear", "based") and cfg.normalize


def params(cfg: LinearAttentionConfig, d_model: int) -> int:
    d = dims(cfg, d_model)
    H, C = d.heads, d_model
    n = C * (2 * d.k_heads * d.qk + H * d.v) + H * d.v * C  # q, k, v, o projections
    n += d.conv_channels * d.conv
    n += d.v if cfg.resolved("output_norm") == "rms" else 0
    n += C * H * d.v if cfg.resolved("output_gate") == "swish" else 0
    if cfg.kind == "linear":
        n += feature_map_params(cfg.feature_map.kind, H, d.qk)
    elif cfg.kind == "gla":
        n += C * cfg.gate_low_rank + cfg.gate_low_rank * H * d.qk + H * d.qk
    elif cfg.kind == "deltanet":
        n += C * H
    elif cfg.kind == "gated_deltanet":
        n += 2 * C * H + 2 * H  # b_proj, a_proj, A_log, dt_bias
    elif cfg.kind == "based":
        n += 3 * C * H * d.v  # window-attention q, k, v
    return n


def flops_per_token(cfg: LinearAttentionConfig, d_model: int, seq_len: int) -> float:
    d = dims(cfg, d_model)
    H, C = d.heads, d_model
    f = 2.0 * (C * (2 * d.k_heads * d.qk + H * d.v) + H * d.v * C)
    f += 2.0 * d.conv_channels * d.conv
    if cfg.resolved("output_gate") == "swish":
        f += 2.0 * C * H * d.v
    per_head = (6 if cfg.kind in ("deltanet", "gated_deltanet") else 4) * d.feat * d.v
    per_head += 2 * d.feat if uses_normalizer(cfg) else 0
    f += H * per_head
    if cfg.kind == "linear":
        if cfg.feature_map.kind == "hedgehog":
            f += 2.0 * 2 * H * d.qk * d.qk
        elif cfg.feature_map.kind == "performer":
            f += 2.0 * 2 * H * d.qk * cfg.feature_map.performer_features
    elif cfg.kind == "gla":
        f += 2.0 * (C * cfg.gate_low_rank + cfg.gate_low_rank * H * d.qk)
    elif cfg.kind == "deltanet":
        f += 2.0 * C * H
    elif cfg.kind == "gated_deltanet":
        f += 2.0 * 2 * C * H
    elif cfg.kind == "based":
        W, T = cfg.window, max(int(seq_len), 1)
        span = (min(T, W) * (min(T, W) + 1) / 2 + max(T - W, 0) * W) / T  # mean keys seen
        f += 2.0 * 3 * C * H * d.v + H * 4.0 * span * d.v
    return f


def cache_bytes(cfg: LinearAttentionConfig, d_model: int, seq_len: int, batch_size: int,
                dtype: torch.dtype = torch.float32) -> int:
    d = dims(cfg, d_model)
    s, m = _itemsize(state_dtype(dtype)), _itemsize(dtype)
    n = batch_size * d.heads * d.feat * d.v * s
    n += batch_size * d.heads * d.feat * s if uses_normalizer(cfg) else 0
    n += batch_size * d.conv_channels * (d.conv - 1) * m if d.conv else 0
    n += 2 * batch_size * d.heads * cfg.window * d.v * m if cfg.kind == "based" else 0
    return n

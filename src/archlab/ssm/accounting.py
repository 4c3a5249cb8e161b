"""Analytic sizes of an SSM mixer from its config alone (no weights allocated).

- ``params`` equals ``sum(p.numel() for p in mixer.parameters())``.
- ``flops_per_token`` counts forward multiply-adds (2 FLOPs each) of the projections, the depthwise
  convolution and the recurrence in its recurrent form: per token the state of E x N numbers is
  written once (decay plus dt x B^T) and read once (by C), 2 * E * N multiply-adds -- the analogue
  of attention's QK^T and PV. It does not depend on ``seq_len`` (kept for the common signature);
  the chunked training form of Mamba-2 does a little more (its intra-chunk quadratic part).
- ``cache_bytes`` equals ``SSMCache.nbytes()`` of a filled cache: a fixed K-1 convolution inputs
  plus the SSM state per sequence, whatever the sequence length.
"""
from __future__ import annotations

import torch

from archlab.ssm.config import SSMConfig


def params(cfg: SSMConfig, d_model: int) -> int:
    d = cfg.dims(d_model)
    E, N, K, C = d.d_inner, d.d_state, d.d_conv, d_model
    n = C * d.in_proj_dim + E * C  # in_proj, out_proj
    n += (d.in_proj_dim + C) if cfg.proj_bias else 0
    n += d.conv_dim * K + (d.conv_dim if cfg.conv_bias else 0)
    if cfg.kind == "mamba":
        R = d.dt_rank
        n += E * (R + 2 * N)  # x_proj
        n += R * E + E  # dt_proj with its bias
        n += E * N + E  # A_log, D
        n += (R + 2 * N) if cfg.dt_bc_norm else 0
    else:
        n += 3 * d.heads  # dt_bias, A_log, D
        n += E  # gated norm weight
    return n


def flops_per_token(cfg: SSMConfig, d_model: int, seq_len: int) -> float:
    if seq_len < 1:
        raise ValueError(f"seq_len: must be a positive integer, got {seq_len}")
    d = cfg.dims(d_model)
    E, N, C = d.d_inner, d.d_state, d_model
    macs = C * d.in_proj_dim + E * C + d.conv_dim * d.d_conv + 2 * E * N
    if cfg.kind == "mamba":
        macs += E * (d.dt_rank + 2 * N) + d.dt_rank * E  # x_proj, dt_proj
    return 2.0 * macs


def state_elements(cfg: SSMConfig, d_model: int) -> int:
    """Numbers held per sequence: K-1 convolution inputs and the SSM state."""
    d = cfg.dims(d_model)
    return (d.d_conv - 1) * d.conv_dim + d.d_inner * d.d_state


def cache_bytes(cfg: SSMConfig, d_model: int, seq_len: int, batch_size: int, dtype: torch.dtype | int) -> int:
    """Bytes of the decode state of ``batch_size`` sequences (``dtype``: a torch dtype or bytes per element)."""
    elem = dtype if isinstance(dtype, int) else dtype.itemsize
    return batch_size * state_elements(cfg, d_model) * elem

"""Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs", the SSD layer).

x -> in_proj -> (z, xBC, dt); xBC -> causal depthwise conv -> SiLU -> (x, B, C);
dt = softplus(dt + dt_bias) (optionally clamped); y = ssd(x, dt, A = -exp(A_log) per head, B, C)
+ D * x; y = RMSNorm(y * SiLU(z)) per group; out_proj.

Parameter names and shapes are those of transformers' Mamba2Mixer. Shapes: B batch, T time,
C model width, E channels (d_inner), H heads, P head dim, G groups, N state size, K conv width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.ops.causal_conv1d import causal_conv1d
from archlab.ops.linear_attn.common import auto_triton
from archlab.ops.ssd import ssd_chunked, ssd_reference, ssd_step, ssd_triton
from archlab.ssm.cache import SSMCache
from archlab.ssm.common import check_input, init_dt_bias, mark_no_weight_decay
from archlab.ssm.config import SSMConfig
from archlab.ssm.norms import GatedRMSNorm


class Mamba2Mixer(nn.Module):
    def __init__(self, cfg: SSMConfig, d_model: int, layer_idx: int):
        super().__init__()
        if cfg.kind != "mamba2":
            raise ValueError(f"ssm.kind: Mamba2Mixer needs kind='mamba2', got {cfg.kind!r}; use MambaMixer")
        d = cfg.dims(d_model)
        self.cfg, self.d_model, self.layer_idx, self.dims = cfg, d_model, layer_idx, d
        E, H = d.d_inner, d.heads
        self.in_proj = nn.Linear(d_model, d.in_proj_dim, bias=cfg.proj_bias)
        # an nn.Conv1d only as the holder of weight [Cc, 1, K] and bias [Cc] (the reference layout)
        self.conv1d = nn.Conv1d(d.conv_dim, d.conv_dim, d.d_conv, groups=d.conv_dim, bias=cfg.conv_bias)
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.A_log = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(H))
        self.norm = GatedRMSNorm(E, d.groups, cfg.norm_eps)
        self.out_proj = nn.Linear(E, d_model, bias=cfg.proj_bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """mamba_ssm's init of the SSM-specific parameters (A uniform in [1, 16], D = 1, dt range)."""
        self.A_log.copy_(torch.log(torch.empty_like(self.A_log).uniform_(1, 16)))
        self.D.fill_(1.0)
        init_dt_bias(self.dt_bias, self.cfg)
        mark_no_weight_decay(self.A_log, self.D, self.dt_bias)

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor | None = None,
                cache: SSMCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; with a cache, continue from its state and update it in place.

        ``positions`` is accepted for the common mixer interface; a recurrence does not need it.
        ``mask`` [B, T] (True = real token) marks left padding: pads enter neither the conv
        window (zero inputs, as an empty window) nor the state (dt = 0 leaves it unchanged).
        """
        check_input(x, self.d_model, cache, "Mamba2Mixer")
        Bsz, T, _ = x.shape
        d = self.dims
        E, H, P, G, N = d.d_inner, d.heads, d.head_dim, d.groups, d.d_state
        z, xBC, dt = self.in_proj(x).split([E, d.conv_dim, H], dim=-1)
        if mask is not None:
            xBC = xBC * mask[..., None].to(xBC.dtype)
        xBC, conv_state = causal_conv1d(
            xBC, self.conv1d.weight[:, 0], self.conv1d.bias, None if cache is None else cache.conv_state
        )
        xs, B, C = F.silu(xBC).split([E, G * N, G * N], dim=-1)
        xs = xs.reshape(Bsz, T, H, P)  # [B, T, E] -> [B, T, H, P]
        B, C = B.reshape(Bsz, T, G, N), C.reshape(Bsz, T, G, N)  # [B, T, G*N] -> [B, T, G, N]
        dt = F.softplus(dt.float() + self.dt_bias.float())  # [B, T, H]
        if self.cfg.dt_limit is not None:
            dt = dt.clamp(*self.cfg.dt_limit)
        if mask is not None:
            dt = dt * mask[..., None]
        A = -torch.exp(self.A_log.float())  # [H]
        if cache is not None and T == 1:
            y = ssd_step(cache.ssm_state, xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])[:, None]
        else:
            h0 = None if cache is None else cache.ssm_state.clone()  # clone: the cache is overwritten below
            backend = self._backend(xs)
            if backend == "reference":
                y, h = ssd_reference(xs, dt, A, B, C, h0)
            elif backend == "triton":
                y, h = ssd_triton(xs, dt, A, B, C, h0, chunk_size=self.cfg.chunk)
            else:
                y, h = ssd_chunked(xs, dt, A, B, C, h0, chunk_size=self.cfg.chunk)
            if cache is not None:
                cache.ssm_state.copy_(h.detach())
        if cache is not None:
            cache.conv_state.copy_(conv_state.detach())
            cache.length += T
        y = y.float() + xs.float() * self.D.float()[:, None]  # [B, T, H, P]
        y = self.norm(y.reshape(Bsz, T, E), z)  # [B, T, H, P] -> [B, T, E]
        return self.out_proj(y.to(x.dtype))

    def _backend(self, x: torch.Tensor) -> str:
        """ssm.backend, with auto resolved for this input (see SSMConfig.backend)."""
        if self.cfg.backend != "auto":
            return self.cfg.backend
        picked = auto_triton("auto", "chunk_compiled", self.cfg.chunk, x, what="mamba2 SSD")
        return "triton" if picked == "triton" else "chunked"

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype,
                  device: torch.device | str | None = None) -> SSMCache:
        d = self.dims
        return SSMCache.zeros(
            batch_size, (d.d_conv - 1, d.conv_dim), (d.heads, d.head_dim, d.d_state), max_len, dtype, device
        )

"""Mamba mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces").

x -> in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> x_proj -> (dt, B, C) (input-dependent);
dt -> dt_proj -> softplus; y = selective_scan(x, dt, A = -exp(A_log), B, C) + D * x; y *= SiLU(z);
out_proj. With ``dt_bc_norm`` (Jamba), dt, B and C pass an RMSNorm each after x_proj.

Parameter names and shapes are those of transformers' MambaMixer / JambaMambaMixer, so weights
map one to one. Shapes: B batch, T time, C model width, E channels (d_inner), N state size,
R dt rank, K convolution width.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.ops.causal_conv1d import causal_conv1d
from archlab.ops.selective_scan import selective_scan_chunked, selective_scan_reference, selective_scan_step
from archlab.ssm.cache import SSMCache
from archlab.ssm.common import check_input, init_dt_bias, mark_no_weight_decay
from archlab.ssm.config import SSMConfig
from archlab.ssm.norms import RMSNorm


class MambaMixer(nn.Module):
    def __init__(self, cfg: SSMConfig, d_model: int, layer_idx: int):
        super().__init__()
        if cfg.kind != "mamba":
            raise ValueError(f"ssm.kind: MambaMixer needs kind='mamba', got {cfg.kind!r}; use Mamba2Mixer")
        d = cfg.dims(d_model)
        self.cfg, self.d_model, self.layer_idx, self.dims = cfg, d_model, layer_idx, d
        E, N, R = d.d_inner, d.d_state, d.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * E, bias=cfg.proj_bias)
        # an nn.Conv1d only as the holder of weight [E, 1, K] and bias [E] (the reference layout)
        self.conv1d = nn.Conv1d(E, E, d.d_conv, groups=E, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, d_model, bias=cfg.proj_bias)
        if cfg.dt_bc_norm:
            self.dt_layernorm = RMSNorm(R, cfg.norm_eps)
            self.b_layernorm = RMSNorm(N, cfg.norm_eps)
            self.c_layernorm = RMSNorm(N, cfg.norm_eps)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The paper's init of the SSM-specific parameters (A = 1..N per channel, D = 1, dt range)."""
        E, N, R = self.dims.d_inner, self.dims.d_state, self.dims.dt_rank
        self.A_log.copy_(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).expand(E, N))
        self.D.fill_(1.0)
        nn.init.uniform_(self.dt_proj.weight, -(R**-0.5), R**-0.5)
        init_dt_bias(self.dt_proj.bias, self.cfg)
        mark_no_weight_decay(self.A_log, self.D)

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor | None = None,
                cache: SSMCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, C] -> [B, T, C]; with a cache, continue from its state and update it in place.

        ``positions`` is accepted for the common mixer interface; a recurrence does not need it.
        ``mask`` [B, T] (True = real token) marks left padding: pads enter neither the conv
        window (zero inputs, as an empty window) nor the state (dt = 0 leaves it unchanged).
        """
        check_input(x, self.d_model, cache, "MambaMixer")
        Bsz, T, _ = x.shape
        N, R = self.dims.d_state, self.dims.dt_rank
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, T, E] each
        if mask is not None:
            xs = xs * mask[..., None].to(xs.dtype)
        xs, conv_state = causal_conv1d(
            xs, self.conv1d.weight[:, 0], self.conv1d.bias, None if cache is None else cache.conv_state
        )
        xs = F.silu(xs)
        dt, B, C = self.x_proj(xs).split([R, N, N], dim=-1)  # [B, T, R], [B, T, N], [B, T, N]
        if self.cfg.dt_bc_norm:
            dt, B, C = self.dt_layernorm(dt), self.b_layernorm(B), self.c_layernorm(C)
        # bias and softplus in float32: dt near zero is where low precision hurts
        dt = F.softplus(F.linear(dt, self.dt_proj.weight).float() + self.dt_proj.bias.float())  # [B, T, E]
        if mask is not None:
            dt = dt * mask[..., None]
        A = -torch.exp(self.A_log.float())  # [E, N]
        if cache is not None and T == 1:
            y = selective_scan_step(cache.ssm_state, xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])[:, None]
        else:
            h0 = None if cache is None else cache.ssm_state.clone()  # clone: the cache is overwritten below
            if self.cfg.backend == "reference":
                y, h = selective_scan_reference(xs, dt, A, B, C, h0)
            else:
                y, h = selective_scan_chunked(xs, dt, A, B, C, h0, chunk_size=self.cfg.chunk)
            if cache is not None:
                cache.ssm_state.copy_(h.detach())
        if cache is not None:
            cache.conv_state.copy_(conv_state.detach())
            cache.length += T
        y = (y.float() + xs.float() * self.D.float()) * F.silu(z.float())
        return self.out_proj(y.to(x.dtype))

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype,
                  device: torch.device | str | None = None) -> SSMCache:
        d = self.dims
        return SSMCache.zeros(batch_size, (d.d_conv - 1, d.conv_dim), (d.d_inner, d.d_state), max_len, dtype, device)

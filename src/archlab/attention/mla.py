"""Multi-head latent attention, MLA (DeepSeek-AI 2024, "DeepSeek-V2", section 2.1.2-2.1.3;
also DeepSeek-V3). Parameter names and shapes follow transformers' DeepseekV2/V3Attention.

For each token x (width C), with H heads, latent width R, head dims Dn (no position),
Dr (RoPE) and Dv (value):
  q = W_UQ RMSNorm(W_DQ x)  or  q = W_Q x        q_a_proj/q_a_layernorm/q_b_proj or q_proj; H x (Dn + Dr)
  [c ; k_r] = W_DKV x, c = RMSNorm(c)              kv_a_proj_with_mqa, kv_a_layernorm; R + Dr
  q_r, k_r = RoPE(q_r), RoPE(k_r)                  k_r: one key shared by every head ("decoupled RoPE")
  [k_n,h ; v_h] = W_UKV,h c                        kv_b_proj; Dn + Dv per head
  o_h = sum_s softmax_s(scale * (q_n,h . k_n,h,s + q_r,h . k_r,s)) v_h,s ;   y = W_O [o_1 ... o_H]
scale = 1/sqrt(Dn + Dr), times YaRN's mscale^2 when DeepSeek-style YaRN is on
(``position.yarn_softmax_scale_multiplier``). The cache holds c and k_r: R + Dr per token.

Two ways to attend to the cached tokens (``attention.mla.path``), equal up to rounding:
- naive: expand every cached latent to per-head keys and values with kv_b_proj, then
  ordinary attention (H x (Dn + Dv) values per cached token, recomputed each call).
- absorbed: q_n,h . (W_UK,h c) = (W_UK,h^T q_n,h) . c and sum_s p_s W_UV,h c_s =
  W_UV,h sum_s p_s c_s, so W_UK folds into the query and W_UV into the output: attention
  becomes multi-query attention with one key/value head over the cache rows themselves
  (keys [c ; k_r], values c). No per-head key or value of a cached token is ever formed.
``auto`` uses the absorbed path for one-token decode steps with a cache and the naive one
otherwise (prefill: expanding S latents once is cheaper than per-query latent products).
The absorbed path folds the H heads into the query axis (one head, H x T queries), so no
kernel broadcasts the latent to H heads either (SDPA's math path would copy it).

Matching transformers: DeepSeek checkpoints expect RoPE on interleaved pairs, i.e.
``position.interleaved=True`` (V2 rotates pairs as complex numbers; V3 rotates the same pairs
and writes them de-interleaved, which permutes the rope dims of q and k alike and leaves every
score unchanged). ``attention.qkv_bias`` is transformers' ``attention_bias`` on q_a_proj and
kv_a_proj_with_mqa, ``attention.out_bias`` the one on o_proj. Logit biases (ALiBi, T5) and
soft-capping work on both paths; sliding windows are refused by the config (full latent cache).

Shapes: B batch, T new tokens, S keys, C model width, H heads, R kv_lora_rank,
Dn/Dr/Dv nope/rope/value head dims, Q q_lora_rank.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from archlab.attention.backends import BACKENDS, pick_backend
from archlab.attention.masks import padded_spec
from archlab.attention.registry import ATTENTION
from archlab.cache.latent import LatentCache
from archlab.norm import NormConfig, RMSNorm
from archlab.position.rope_scaling import yarn_softmax_scale_multiplier

if TYPE_CHECKING:
    from archlab.config import ModelConfig
    from archlab.position.base import PositionEncoding


def mla_scale(cfg: "ModelConfig") -> float:
    a, m = cfg.attention, cfg.attention.mla
    if a.scale is not None:
        return a.scale  # an explicit scale is final
    return m.qk_head_dim ** -0.5 * yarn_softmax_scale_multiplier(cfg.position)


@ATTENTION.register("mla")
class MultiHeadLatentAttention(nn.Module):
    def __init__(self, cfg: "ModelConfig", layer_idx: int, position: "PositionEncoding"):
        super().__init__()
        a, m, C = cfg.attention, cfg.attention.mla, cfg.d_model
        H, R, Dn, Dr, Dv = a.heads, m.kv_lora_rank, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim
        self.cfg, self.mla, self.layer_idx, self.position = a, m, layer_idx, position
        self.H, self.R, self.Dn, self.Dr, self.Dv = H, R, Dn, Dr, Dv
        self.scale = mla_scale(cfg)
        self.mask = a.mask
        latent_norm = NormConfig(kind="rmsnorm", eps=m.norm_eps)
        if m.q_lora_rank is None:
            self.q_proj = nn.Linear(C, H * (Dn + Dr), bias=False)
            self.q_a_proj = self.q_a_layernorm = self.q_b_proj = None
        else:
            self.q_proj = None
            self.q_a_proj = nn.Linear(C, m.q_lora_rank, bias=a.qkv_bias)
            self.q_a_layernorm = RMSNorm(m.q_lora_rank, latent_norm)
            self.q_b_proj = nn.Linear(m.q_lora_rank, H * (Dn + Dr), bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(C, R + Dr, bias=a.qkv_bias)
        self.kv_a_layernorm = RMSNorm(R, latent_norm)
        self.kv_b_proj = nn.Linear(R, H * (Dn + Dv), bias=False)
        self.o_proj = nn.Linear(H * Dv, C, bias=a.out_bias)

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache: LatentCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` [B, T] (True = real token) marks a left-padded batch; the pads' negative
        positions (and the cache's) already say which keys to hide."""
        B, T, _ = x.shape
        H, R, Dn, Dr = self.H, self.R, self.Dn, self.Dr
        if self.q_proj is not None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(B, T, H, Dn + Dr).transpose(1, 2)  # [B, H, T, Dn + Dr]
        q_nope, q_rope = q.split([Dn, Dr], dim=-1)
        c, k_rope = self.kv_a_proj_with_mqa(x).split([R, Dr], dim=-1)  # [B, T, R], [B, T, Dr]
        c = self.kv_a_layernorm(c)
        q_rope, k_rope = self.position.rotate(q_rope, k_rope[:, None], positions)  # k_rope [B, 1, T, Dr]: one head
        latent = torch.cat([c[:, None], k_rope], dim=-1)  # [B, 1, T, R + Dr]: what the cache keeps
        if cache is not None:
            latent, k_pos = cache.update(latent, positions)  # [B, 1, S, R + Dr]
        else:
            k_pos = positions
        path = self.mla.path
        absorbed = path == "absorbed" or (path == "auto" and cache is not None and T == 1)
        bias = self.position.bias(positions, k_pos)  # [B or 1, H, T, S] or None
        spec = padded_spec(self.mask, mask, cache)
        backend = pick_backend(self.cfg.backend, softcap=self.cfg.softcap, mask=spec, device=x.device,
                               cached=cache is not None, flex_bias_ok=bias is None or self.position.score_mod(0) is not None)
        attend = self._absorbed if absorbed else self._naive
        o = attend(q_nope, q_rope, latent, positions, k_pos, bias, backend, spec)  # [B, H, T, Dv]
        return self.o_proj(o.transpose(1, 2).reshape(B, T, H * self.Dv))  # [B, T, H*Dv] -> [B, T, C]

    def _attend(self, backend: str, q, k, v, q_pos, k_pos, bias, spec) -> torch.Tensor:
        return BACKENDS.get(backend)(q, k, v, q_pos=q_pos, k_pos=k_pos, scale=self.scale, bias=bias, mask=spec,
                                     softcap=self.cfg.softcap, position=self.position)

    def _naive(self, q_nope, q_rope, latent, q_pos, k_pos, bias, backend: str, spec) -> torch.Tensor:
        """Expand the latent of every key to per-head K/V, then ordinary attention."""
        B, H, Dn, Dr = q_nope.shape[0], self.H, self.Dn, self.Dr
        c, k_rope = latent[:, 0].split([self.R, Dr], dim=-1)  # [B, S, R], [B, S, Dr]
        S = c.shape[1]
        kv = self.kv_b_proj(c).view(B, S, H, Dn + self.Dv).transpose(1, 2)  # [B, H, S, Dn + Dv]
        k_nope, v = kv.split([Dn, self.Dv], dim=-1)
        k = torch.cat([k_nope, k_rope[:, None].expand(B, H, S, Dr)], dim=-1)  # [B, H, S, Dn + Dr]
        q = torch.cat([q_nope, q_rope], dim=-1)  # [B, H, T, Dn + Dr]
        return self._attend(backend, q, k, v, q_pos, k_pos, bias, spec)

    def _absorbed(self, q_nope, q_rope, latent, q_pos, k_pos, bias, backend: str, spec) -> torch.Tensor:
        """Fold W_UK into the query and W_UV into the output; attend over the latent rows."""
        B, H, T, _ = q_nope.shape
        w = self.kv_b_proj.weight.view(H, self.Dn + self.Dv, self.R)  # [H, Dn + Dv, R]: kv_b_proj's rows by head
        w_uk, w_uv = w.split([self.Dn, self.Dv], dim=1)  # [H, Dn, R], [H, Dv, R]
        q_lat = torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk)  # [B, H, T, R]
        q = torch.cat([q_lat, q_rope], dim=-1)  # [B, H, T, R + Dr]
        k, v = latent, latent[..., :self.R]  # [B, 1, S, R + Dr], [B, 1, S, R]: the cache rows, one KV head
        if backend == "flex":  # flex's block mask assumes T queries: keep the heads, let it broadcast the KV head
            o_lat = self._attend(backend, q, k, v, q_pos, k_pos, bias, spec)
        else:
            # fold the heads into the query axis: a single-head attention over H*T queries, so no
            # kernel ever broadcasts the latent to H heads (SDPA's math path would copy it)
            qf = q.reshape(B, 1, H * T, -1)  # [B, 1, H*T, R + Dr]
            bf = None
            if bias is not None:
                S = bias.shape[-1]
                bf = bias.expand(bias.shape[0], H, T, S).reshape(bias.shape[0], 1, H * T, S)  # [B or 1, 1, H*T, S]
            o_lat = self._attend(backend, qf, k, v, q_pos.repeat(1, H), k_pos, bf, spec).view(B, H, T, self.R)  # [B, H, T, R]
        return torch.einsum("bhtr,hdr->bhtd", o_lat, w_uv)  # [B, H, T, Dv]

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype, device=None) -> LatentCache:
        return LatentCache(batch_size, max_len, self.R, self.Dr, dtype=dtype, device=device, quant=self.cfg.cache_dtype)

    # -- analytic accounting (no weights allocated) --
    @staticmethod
    def params(cfg: "ModelConfig") -> int:
        a, m, C = cfg.attention, cfg.attention.mla, cfg.d_model
        H, R = a.heads, m.kv_lora_rank
        if m.q_lora_rank is None:
            n = C * H * m.qk_head_dim
        else:
            Q = m.q_lora_rank
            n = C * Q + (Q if a.qkv_bias else 0) + Q + Q * H * m.qk_head_dim
        n += C * m.cache_width + (m.cache_width if a.qkv_bias else 0) + R  # kv_a_proj_with_mqa + kv_a_layernorm
        n += R * H * (m.qk_nope_head_dim + m.v_head_dim)  # kv_b_proj
        n += H * m.v_head_dim * C + (C if a.out_bias else 0)  # o_proj
        return n

    @staticmethod
    def flops_per_token(cfg: "ModelConfig", seq_len: int) -> float:
        """Forward FLOPs of the naive path (training and prefill): projections, kv_b_proj once
        per token, then scores over Dn + Dr and values over Dv per visible key."""
        a, m, C = cfg.attention, cfg.attention.mla, cfg.d_model
        H, R = a.heads, m.kv_lora_rank
        q = C * H * m.qk_head_dim if m.q_lora_rank is None else m.q_lora_rank * (C + H * m.qk_head_dim)
        proj = q + C * m.cache_width + R * H * (m.qk_nope_head_dim + m.v_head_dim) + H * m.v_head_dim * C
        return 2.0 * proj + 2.0 * H * (m.qk_head_dim + m.v_head_dim) * a.mask.mean_keys(seq_len)

    @staticmethod
    def cache_bytes(cfg: "ModelConfig", seq_len: int, batch_size: int, elem: int) -> int:
        a, m = cfg.attention, cfg.attention.mla
        return LatentCache.bytes_for(batch_size, seq_len, m.kv_lora_rank, m.qk_rope_head_dim, elem, a.cache_dtype)

"""Rotary position embedding (Su et al. 2021, "RoFormer").

Each pair of dims (x_{2i}, x_{2i+1}) -- or (x_i, x_{i+D/2}) in the half-split layout of
Llama/GPT-NeoX -- is rotated by angle ``pos * inv_freq[i]`` with
``inv_freq[i] = theta^(-2i / D_rot)``. Only the first ``D_rot = rotary_fraction * D``
dims rotate (GPT-NeoX partial rotary); the rest pass through.

Context extension (``position.scaling``) only changes ``inv_freq`` and the attention factor
that multiplies cos/sin (see ``rope_scaling``); both are non-persistent, so switching the
scaling kind never changes ``state_dict`` keys. For the length-dependent kinds (dynamic NTK,
LongRoPE ``by_length``) the frequencies are recomputed on every call from the current length
``max(positions) + 1`` of each row (rows of a left-padded batch differ): a KV cache keeps each key as rotated when it was written, so once the
length passes the trained context, keys cached earlier carry the frequencies of a shorter
length and cached decoding no longer equals one full forward. transformers does the same
(its rotary module recomputes from ``max(position_ids) + 1``; its cache keeps old keys).
One difference: transformers also keeps the largest length seen across calls until a call
is shorter than the trained context; here each call depends only on its own positions, so
within one generation (lengths only grow) both agree.

Shapes: B batch, H heads, T tokens, D head dim, R = D_rot / 2 frequencies.
"""
from __future__ import annotations

import torch

from archlab.errors import ConfigError
from archlab.position.base import POSITION, PositionEncoding
from archlab.position.config import PositionConfig
from archlab.position.rope_scaling import depends_on_length, longrope_factors, scaled_inv_freq


def rotary_dim(cfg: PositionConfig, head_dim: int) -> int:
    d = int(head_dim * cfg.rotary_fraction)
    return d - d % 2


def rope_inv_freq(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [R] (float64) and the attention factor applied to cos/sin.

    ``position.scaling`` selects the context-extension formula; ``seq_len`` (current length)
    matters only to the length-dependent kinds.
    """
    return scaled_inv_freq(cfg, rot_dim, seq_len)


@torch.library.custom_op("archlab::rope_cos_sin", mutates_args=())
def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attn_factor: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, T, R] of the angles positions [B, T] x inv_freq [R] (or [B, 1, R]), from
    float64 angles, times ``attn_factor``, in ``dtype``.

    An opaque op on purpose: torch.compile would otherwise inline the float64 cos/sin into the
    rotation kernel of q and k and recompute them for every head and element (measured on an
    H200: the rotation kernels took 9.9 ms of a 116.7 ms training step of a 1.1B model; with this op
    the step is 8 ms shorter); here they are made once per call."""
    ang = positions.to(torch.float64)[..., None] * inv_freq
    return (ang.cos() * attn_factor).to(dtype), (ang.sin() * attn_factor).to(dtype)


@rope_cos_sin.register_fake
def _rope_cos_sin_shape(positions, inv_freq, attn_factor, dtype):
    shape = torch.broadcast_shapes((*positions.shape, 1), inv_freq.shape)
    return positions.new_empty(shape, dtype=dtype), positions.new_empty(shape, dtype=dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate the first 2R dims of x [B, H, T, D] by angles with cos/sin [B, 1, T, R]."""
    r2 = cos.shape[-1] * 2
    rot, rest = x[..., :r2], x[..., r2:]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]  # adjacent pairs (GPT-J)
        out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)  # [B, H, T, 2R]
    else:
        x1, x2 = rot.chunk(2, dim=-1)  # two halves (Llama, NeoX)
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out


@POSITION.register("rope")
class RoPE(PositionEncoding):
    """Rotates q and k; ``inv_freq`` (non-persistent) and ``attn_factor`` come from the scaling."""

    @classmethod
    def check_sizes(cls, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int) -> None:
        rot = rotary_dim(cfg, head_dim)
        if rot < 2:
            raise ConfigError(f"position.rotary_fraction: leaves {rot} rotary dims of head_dim {head_dim}; need at least 2")
        if cfg.scaling.kind == "longrope":
            longrope_factors(cfg, rot)  # one factor per rotary frequency

    def __init__(self, cfg: PositionConfig, *, n_heads: int, head_dim: int, d_model: int):
        super().__init__(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)
        self.check_sizes(cfg, n_heads=n_heads, head_dim=head_dim, d_model=d_model)
        self.rot_dim = rotary_dim(cfg, head_dim)
        inv_freq, attn_factor = rope_inv_freq(cfg, self.rot_dim)
        # float64 buffer: angles of large positions lose accuracy in float32 before cos/sin
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attn_factor = attn_factor
        self.length_dependent = depends_on_length(cfg)
        self.switch_len = None
        if cfg.scaling.kind == "longrope" and self.length_dependent:
            # by_length: both sets precomputed; each call picks one on the device, no host sync
            long_cfg = cfg.replace(**{"scaling.longrope_select": "long"})
            self.register_buffer("long_inv_freq", rope_inv_freq(long_cfg, self.rot_dim)[0], persistent=False)
            self.switch_len = cfg.original_max_positions

    def current_inv_freq(self, positions: torch.Tensor) -> torch.Tensor:
        """Float64 frequencies for this call: [R], or [B, R] when length-dependent (each row's
        length: the rows of a left-padded batch differ)."""
        if not self.length_dependent:
            return self.inv_freq.to(positions.device)
        seq_len = positions.amax(-1) + 1  # [B]: no host sync
        if self.switch_len is not None:
            return torch.where(seq_len[:, None] > self.switch_len, self.long_inv_freq, self.inv_freq)  # [B, R]
        inv_freq, _ = rope_inv_freq(self.cfg, self.rot_dim, seq_len)
        return inv_freq

    def angles(self, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] -> cos, sin [B, 1, T, R] in ``dtype``, times the attention factor."""
        inv_freq = self.current_inv_freq(positions)
        if inv_freq.dim() == 2:
            inv_freq = inv_freq[:, None]  # [B, 1, R]: one set per row
        if positions.shape[-1] <= 16:  # decoding: a compiled step fuses these few angles into the rotation
            ang = positions.to(torch.float64)[..., None] * inv_freq  # [B, T, R]
            cos, sin = (ang.cos() * self.attn_factor).to(dtype), (ang.sin() * self.attn_factor).to(dtype)
        else:
            cos, sin = rope_cos_sin(positions, inv_freq, float(self.attn_factor), dtype)  # [B, T, R]
        return cos[:, None], sin[:, None]

    def rotate(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rot_dim == 0 or positions.numel() == 0:
            return q, k
        # rotate in float32 at least (bf16 rotations drift); float64 inputs stay float64
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        cos, sin = self.angles(positions, work)
        qr = apply_rotary(q.to(work), cos, sin, self.cfg.interleaved).to(q.dtype)
        kr = apply_rotary(k.to(work), cos, sin, self.cfg.interleaved).to(k.dtype)
        return qr, kr

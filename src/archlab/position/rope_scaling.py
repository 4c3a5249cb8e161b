"""RoPE context extension: each scaling kind maps the trained frequencies to new ones.

All functions return ``(inv_freq [R] float64, attention_factor)``. The attention factor
multiplies cos and sin, hence both q and k, so the logits of the rotated dims scale by its
square -- the "attention temperature" of YaRN (Peng et al. 2023, eq. 22: sqrt(1/t) =
0.1 ln s + 1) is applied this way, as transformers does, and attention needs no hook.
Nothing here holds parameters: a trained model can switch scaling kind and keep its
``state_dict``.

Kinds (R = D_rot / 2 frequencies, theta_i = base^(-2i / D_rot), s = factor, L = original
trained context):
- linear (Chen et al. 2023, position interpolation): theta_i / s.
- ntk (bloc97 2023, "NTK-aware"): base' = base * s^(D_rot / (D_rot - 2)).
- dynamic (emozilla 2023): ntk with s' = max(1, s * l / L - (s - 1)) for current length l.
- yarn (Peng et al. 2023): theta_i / s for dims with few rotations over L, theta_i kept for
  dims with many, a linear ramp in between; attention factor 0.1 ln s + 1.
- llama3 (Meta 2024, Llama 3.1): wavelengths above L / low_freq_factor divided by s, below
  L / high_freq_factor kept, smooth interpolation in between.
- longrope (Ding et al. 2024): theta_i / lambda_i with per-frequency factors lambda;
  attention factor sqrt(1 + ln s / ln L).

Shapes: R rotary frequencies (half the rotated dims).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from archlab.errors import ConfigError
from archlab.position.config import PositionConfig, RopeScalingConfig

InvFreq = tuple[torch.Tensor, float]


def base_inv_freq(base: float | torch.Tensor, rot_dim: int) -> torch.Tensor:
    """theta_i = base^(-2i / D_rot) for i < R, float64 [R] (or [..., R] for a tensor base)."""
    device = base.device if isinstance(base, torch.Tensor) else None  # built in place: no host copy per call
    exponent = torch.arange(0, rot_dim, 2, dtype=torch.float64, device=device) / rot_dim  # [R]
    if isinstance(base, torch.Tensor):
        return base.to(torch.float64)[..., None] ** (-exponent)
    return base ** (-exponent)


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature sqrt(1/t) = 0.1 * mscale * ln(s) + 1 (1 for s <= 1)."""
    if scale <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def yarn_attention_factor(s: RopeScalingConfig) -> float:
    """The cos/sin multiplier of YaRN: explicit, DeepSeek's ratio, or the paper's default."""
    if s.attention_factor is not None:
        return s.attention_factor
    if s.mscale and s.mscale_all_dim:
        # DeepSeek-V2/V3: with mscale == mscale_all_dim this is 1 and the temperature lives
        # entirely in the softmax scale (yarn_softmax_scale_multiplier)
        return yarn_get_mscale(s.factor, s.mscale) / yarn_get_mscale(s.factor, s.mscale_all_dim)
    return yarn_get_mscale(s.factor)


def yarn_softmax_scale_multiplier(cfg: PositionConfig | RopeScalingConfig) -> float:
    """Factor for attention's softmax scale (1/sqrt(d_head)) under DeepSeek-style YaRN.

    DeepSeek-V2/V3 multiply the softmax scale by ``yarn_get_mscale(factor, mscale_all_dim)^2``
    on top of the cos/sin attention factor (transformers' ``yarn_apply_mscale``): this
    temperature covers all of q.k, including the non-rotated (MLA "nope") dims, which a
    cos/sin multiplier cannot reach. Returns 1.0 for every other configuration.
    Attention multiplies its own scale by this; the position module never applies it.
    """
    s = cfg.scaling if isinstance(cfg, PositionConfig) else cfg
    if s.kind != "yarn" or not s.mscale_all_dim:
        return 1.0
    return yarn_get_mscale(s.factor, s.mscale_all_dim) ** 2


def _original(cfg: PositionConfig) -> int:
    orig = cfg.original_max_positions
    if orig is None:  # PositionConfig validation already requires it for these kinds
        raise ConfigError(f"position.scaling.original_max_positions: required by scaling kind {cfg.scaling.kind!r}")
    return orig


def _none(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    return base_inv_freq(cfg.theta, rot_dim), 1.0


def _linear(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    # dividing frequencies by s is the same as dividing positions by s (interpolation)
    return base_inv_freq(cfg.theta, rot_dim) / cfg.scaling.factor, 1.0


def ntk_base(theta: float, factor: float | torch.Tensor, rot_dim: int) -> float | torch.Tensor:
    """NTK-aware base: stretches the lowest frequency by ``factor``, keeps the highest."""
    if rot_dim <= 2:  # one frequency: the exponent D/(D-2) is undefined; scale it like linear
        return theta * factor
    return theta * factor ** (rot_dim / (rot_dim - 2))


def _ntk(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    return base_inv_freq(ntk_base(cfg.theta, cfg.scaling.factor, rot_dim), rot_dim), 1.0


def _dynamic(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    """Without ``seq_len`` (at build time) the trained frequencies, as transformers at init."""
    if seq_len is None:
        return base_inv_freq(cfg.theta, rot_dim), 1.0
    s, orig = cfg.scaling.factor, _original(cfg)
    # effective factor 1 up to the trained length L, then growing by s per further L tokens
    eff = (s * seq_len.to(torch.float64) / orig - (s - 1)).clamp(min=1.0)
    return base_inv_freq(ntk_base(cfg.theta, eff, rot_dim), rot_dim), 1.0


def yarn_correction_dim(n_rotations: float, rot_dim: int, base: float, original: int) -> float:
    """The (fractional) dim index i whose wavelength fits ``n_rotations`` times in ``original``.

    From L / lambda_i = n with lambda_i = 2 pi base^(2i / D): i = D ln(L / (2 pi n)) / (2 ln base).
    """
    return rot_dim * math.log(original / (n_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_ramp(cfg: PositionConfig, rot_dim: int) -> torch.Tensor:
    """gamma_i in [0, 1] per frequency [R]: 0 = interpolate (theta_i / s), 1 = keep theta_i.

    Linear in the dim index between the dims where the rotation count r = L / lambda equals
    beta_fast and beta_slow, as in the authors' code and transformers (the paper's eq. 18
    writes the ramp linear in r; both agree outside the ramp).
    """
    s = cfg.scaling
    orig = _original(cfg)
    low = yarn_correction_dim(s.beta_fast, rot_dim, cfg.theta, orig)
    high = yarn_correction_dim(s.beta_slow, rot_dim, cfg.theta, orig)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rot_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero: a step instead of a ramp
    idx = torch.arange(rot_dim // 2, dtype=torch.float64)
    interp_weight = ((idx - low) / (high - low)).clamp(0.0, 1.0)  # 0 at high frequencies
    return 1.0 - interp_weight


def _yarn(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    extrap = base_inv_freq(cfg.theta, rot_dim)
    interp = extrap / cfg.scaling.factor
    keep = yarn_ramp(cfg, rot_dim)
    return interp * (1.0 - keep) + extrap * keep, yarn_attention_factor(cfg.scaling)


def _llama3(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    s = cfg.scaling
    orig = _original(cfg)
    inv = base_inv_freq(cfg.theta, rot_dim)
    wavelen = 2 * math.pi / inv
    low_freq_wavelen = orig / s.low_freq_factor  # longer than this: interpolate fully
    high_freq_wavelen = orig / s.high_freq_factor  # shorter than this: keep
    smooth = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    medium = (1 - smooth) * inv / s.factor + smooth * inv
    out = torch.where(wavelen > low_freq_wavelen, inv / s.factor, medium)
    out = torch.where(wavelen < high_freq_wavelen, inv, out)
    return out, 1.0


def longrope_attention_factor(cfg: PositionConfig) -> float:
    s = cfg.scaling
    if s.attention_factor is not None:
        return s.attention_factor
    if s.factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(s.factor) / math.log(_original(cfg)))


def longrope_factors(cfg: PositionConfig, rot_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(short, long) per-frequency divisors [R] float64, checked against the rotary width."""
    s = cfg.scaling
    r = rot_dim // 2
    for name in ("short_factor", "long_factor"):
        n = len(getattr(s, name))
        if n != r:
            raise ConfigError(
                f"position.scaling.{name}: needs one entry per rotary frequency, {r} "
                f"(head_dim * rotary_fraction / 2), got {n}"
            )
    return torch.tensor(s.short_factor, dtype=torch.float64), torch.tensor(s.long_factor, dtype=torch.float64)


def _longrope(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None) -> InvFreq:
    """Fixed long/short set, or by_length: short while seq_len <= L, long beyond (Phi-3)."""
    short, long = longrope_factors(cfg, rot_dim)
    inv = base_inv_freq(cfg.theta, rot_dim)
    select = cfg.scaling.longrope_select
    if select == "long":
        ext = long
    elif select == "short" or seq_len is None:
        ext = short
    else:
        use_long = seq_len.to(torch.float64) > _original(cfg)
        ext = torch.where(use_long, long.to(use_long.device), short.to(use_long.device))
    return inv.to(ext.device) / ext, longrope_attention_factor(cfg)


SCALING_FUNCTIONS: dict[str, Callable[[PositionConfig, int, torch.Tensor | None], InvFreq]] = {
    "none": _none,
    "linear": _linear,
    "ntk": _ntk,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "longrope": _longrope,
}


def depends_on_length(cfg: PositionConfig) -> bool:
    """True when the frequencies follow the current length (recomputed each call)."""
    s = cfg.scaling
    return s.kind == "dynamic" or (s.kind == "longrope" and s.longrope_select == "by_length")


def scaled_inv_freq(cfg: PositionConfig, rot_dim: int, seq_len: torch.Tensor | None = None) -> InvFreq:
    """Inverse frequencies [R] float64 and the cos/sin attention factor for ``cfg.scaling``.

    ``seq_len`` (a 0-d tensor, the current length = largest position + 1) is read only by
    the length-dependent kinds (dynamic, longrope by_length); None means build time.
    """
    if rot_dim == 0:
        return torch.zeros(0, dtype=torch.float64), 1.0
    return SCALING_FUNCTIONS[cfg.scaling.kind](cfg, rot_dim, seq_len)

"""State-space mixer config: Mamba (selective scan) and Mamba-2 (SSD) are one section, ``kind``.

Sizes that depend on the model width (d_inner, heads, dt rank) come from :meth:`SSMConfig.dims`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from archlab.configbase import Config
from archlab.errors import ConfigError, check

# chunk lengths that measured fastest on the CPU (benchmarks/ssm_cpu.py); results never depend on them
DEFAULT_CHUNK = {"mamba": 16, "mamba2": 64}


@dataclass(frozen=True)
class SSMDims:
    """Derived sizes of one SSM mixer at a given d_model."""

    d_inner: int  # E: expanded channels
    d_state: int  # N
    d_conv: int  # K: convolution width
    dt_rank: int  # mamba: rank of the dt projection (0 for mamba2)
    heads: int  # mamba2: H (0 for mamba)
    head_dim: int  # mamba2: P (0 for mamba)
    groups: int  # mamba2: G, groups sharing B and C (0 for mamba)
    conv_dim: int  # channels through the convolution: E (mamba) or E + 2GN (mamba2)
    in_proj_dim: int  # output width of in_proj: 2E (mamba) or 2E + 2GN + H (mamba2)


@dataclass(frozen=True)
class SSMConfig(Config):
    _section = "ssm"
    kind: Literal["mamba", "mamba2"] = "mamba"  # selective scan (Gu & Dao 2023) or SSD (Dao & Gu 2024)
    d_state: int = 16  # N: state size per channel (mamba) or per head channel (mamba2; 128 in Mamba-2 models)
    d_conv: int = 4  # width of the causal depthwise convolution before the SSM
    expand: int = 2  # d_inner = expand * d_model
    dt_rank: int | None = None  # mamba only: rank of the low-rank dt projection; None = ceil(d_model / 16)
    dt_bc_norm: bool = False  # mamba only: RMSNorm on dt, B and C after x_proj (Jamba)
    head_dim: int | None = None  # mamba2 only: channels per head P; None = 64
    n_groups: int | None = None  # mamba2 only: groups sharing B/C (and the gated norm's groups); None = 1
    dt_limit: tuple[float, ...] | None = None  # mamba2 only: clamp dt into [lo, hi] after softplus; None = no clamp
    conv_bias: bool = True  # bias in the depthwise convolution (both reference models have it)
    proj_bias: bool = False  # biases in in_proj and out_proj
    norm_eps: float = 1e-5  # eps of the gated RMSNorm (mamba2) and of the dt/B/C norms (Jamba uses 1e-6)
    dt_min: float = 0.001  # initial dt is log-uniform in [dt_min, dt_max] (the papers' init)
    dt_max: float = 0.1  # upper end of the initial dt range
    dt_init_floor: float = 1e-4  # lower bound on the initial dt
    chunk_size: int | None = None  # tokens per chunk of the fast scan; None = 16 (mamba) / 64 (mamba2); speed only
    # the chunked fast form (PyTorch), the token loop (for checks), or mamba2's SSD in Triton kernels
    # (CUDA; chunk_size 16, 32, 64 or 128). auto: triton for mamba2 on CUDA tensors when triton is
    # installed and takes the chunk size and dtype (not float64), else chunked
    backend: Literal["auto", "chunked", "reference", "triton"] = "auto"

    def __post_init__(self) -> None:
        for name in ("d_state", "d_conv", "expand"):
            v = getattr(self, name)
            check(v > 0, f"ssm.{name}", f"must be a positive integer, got {v}")
        for name in ("dt_rank", "head_dim", "n_groups", "chunk_size"):
            v = getattr(self, name)
            check(v is None or v > 0, f"ssm.{name}", f"must be a positive integer or null, got {v}")
        check(self.norm_eps > 0, "ssm.norm_eps", f"must be > 0, got {self.norm_eps}")
        check(
            0 < self.dt_init_floor and 0 < self.dt_min <= self.dt_max,
            "ssm.dt_min",
            f"need 0 < dt_min <= dt_max and dt_init_floor > 0, got dt_min={self.dt_min}, "
            f"dt_max={self.dt_max}, dt_init_floor={self.dt_init_floor}",
        )
        if self.dt_limit is not None:
            ok = len(self.dt_limit) == 2 and 0 <= self.dt_limit[0] < self.dt_limit[1]
            check(ok, "ssm.dt_limit", f"must be [lo, hi] with 0 <= lo < hi, or null; got {list(self.dt_limit)}")
        # a field of the other kind would be silently ignored: reject it instead
        other = {"mamba": ("head_dim", "n_groups", "dt_limit"), "mamba2": ("dt_rank",)}[self.kind]
        for name in other:
            check(
                getattr(self, name) is None, f"ssm.{name}",
                f"is not used by kind={self.kind!r}; leave it null (it belongs to the other kind)",
            )
        check(not (self.kind == "mamba2" and self.dt_bc_norm), "ssm.dt_bc_norm", "is only used by kind='mamba'")
        if self.backend == "triton":
            check(self.kind == "mamba2", "ssm.backend", "'triton' is for kind='mamba2'; accepted for mamba: chunked, reference")
            check(self.chunk in (16, 32, 64, 128), "ssm.chunk_size",
                  f"backend 'triton' takes 16, 32, 64 or 128, got {self.chunk}")

    @property
    def chunk(self) -> int:
        """Chunk length of the fast scan."""
        return self.chunk_size or DEFAULT_CHUNK[self.kind]

    def dims(self, d_model: int) -> SSMDims:
        """Sizes at this model width; raises ConfigError when heads or groups do not divide."""
        if not isinstance(d_model, int) or d_model <= 0:
            raise ConfigError(f"d_model: must be a positive integer, got {d_model!r}")
        E, N, K = self.expand * d_model, self.d_state, self.d_conv
        if self.kind == "mamba":
            R = self.dt_rank or math.ceil(d_model / 16)
            return SSMDims(E, N, K, R, 0, 0, 0, E, 2 * E)
        P, G = self.head_dim or 64, self.n_groups or 1
        check(
            E % P == 0, "ssm.head_dim",
            f"head_dim ({P}) must divide d_inner = expand * d_model = {E}; "
            f"accepted: {', '.join(str(p) for p in range(1, min(E, 256) + 1) if E % p == 0)}",
        )
        H = E // P
        check(
            H % G == 0, "ssm.n_groups",
            f"n_groups ({G}) must divide the number of heads ({H}); "
            f"accepted: {', '.join(str(g) for g in range(1, H + 1) if H % g == 0)}",
        )
        conv_dim = E + 2 * G * N
        return SSMDims(E, N, K, 0, H, P, G, conv_dim, E + conv_dim + H)

"""Shape of multi-head latent attention (DeepSeek-V2, DeepSeek-AI 2024; DeepSeek-V3, 2024).

Keys and values of all heads are reconstructed from one low-rank latent per token
(``kv_lora_rank`` wide); position enters through a separate RoPE key of ``qk_rope_head_dim``
dims shared by all heads. The cache holds only the latent and that key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archlab.configbase import Config
from archlab.errors import check

MLAPath = Literal["auto", "naive", "absorbed"]


@dataclass(frozen=True)
class MLAConfig(Config):
    _section = "attention.mla"
    kv_lora_rank: int = 512  # width of the joint key/value latent the cache holds (V2/V3: 512)
    q_lora_rank: int | None = None  # low-rank query through a normed bottleneck (V3: 1536); None = one q_proj (V2-Lite)
    qk_nope_head_dim: int = 128  # per-head query/key dims reconstructed from the latent (no position)
    qk_rope_head_dim: int = 64  # rotated dims: per-head query part, one key part shared by all heads
    v_head_dim: int = 128  # per-head value width
    norm_eps: float = 1e-6  # eps of q_a_layernorm and kv_a_layernorm (transformers fixes them at 1e-6)
    path: MLAPath = "auto"  # naive: expand the latent to per-head K/V; absorbed: attend in latent space; auto: absorbed for one-token steps

    def __post_init__(self) -> None:
        for name in ("kv_lora_rank", "qk_nope_head_dim", "v_head_dim"):
            check(getattr(self, name) > 0, f"attention.mla.{name}", f"must be a positive integer, got {getattr(self, name)}")
        check(self.q_lora_rank is None or self.q_lora_rank > 0, "attention.mla.q_lora_rank",
              f"must be a positive integer or null (full-rank query), got {self.q_lora_rank}")
        check(self.qk_rope_head_dim > 0 and self.qk_rope_head_dim % 2 == 0, "attention.mla.qk_rope_head_dim",
              f"must be a positive even integer (RoPE rotates pairs), got {self.qk_rope_head_dim}")
        check(self.norm_eps > 0, "attention.mla.norm_eps", f"must be > 0, got {self.norm_eps}")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def cache_width(self) -> int:
        """Values cached per token and layer: the latent and the shared RoPE key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

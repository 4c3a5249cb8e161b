"""Softmax-attention config: MHA, GQA and MQA are one component (``kv_heads``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archlab.attention.mla_config import MLAConfig
from archlab.configbase import Config
from archlab.errors import check

Backend = Literal["auto", "eager", "sdpa", "flex"]
CacheDtype = Literal["auto", "int8", "fp8"]


@dataclass(frozen=True)
class AttentionConfig(Config):
    _section = "attention"
    kind: Literal["softmax", "mla"] = "softmax"  # the attention family (registered in attention.ATTENTION)
    heads: int = 8  # query heads
    kv_heads: int | None = None  # key/value heads: None = heads (MHA), 1 = MQA, between = GQA
    head_dim: int | None = None  # per-head width; None = d_model // heads
    qkv_bias: bool = False  # biases on the q/k/v projections (GPT-2, Qwen2)
    out_bias: bool = False  # bias on the output projection (GPT-2)
    qk_norm: Literal["none", "head", "full"] = "none"  # RMSNorm on q and k: per head (Qwen3) or whole projection (OLMo-2)
    qk_norm_unit_offset: bool = False  # QK-norm weights stored as w, applied as 1 + w (zero-centred: Qwen3-Next)
    output_gate: Literal["none", "sigmoid"] = "none"  # attention output * sigmoid(x W_g) before o_proj (gated attention, Qwen3-Next)
    output_gate_shape: Literal["elementwise", "headwise"] = "elementwise"  # one gate per output channel (Qwen3-Next) or one per head
    softcap: float | None = None  # logits -> cap * tanh(logits / cap) (Gemma-2)
    scale: float | None = None  # logit scale; None = 1/sqrt(head_dim)
    window: int | None = None  # sliding window: each query sees the last `window` keys (itself included)
    sinks: int = 0  # with a window: the first `sinks` tokens stay visible forever (StreamingLLM)
    sparse_block: int | None = None  # block-sparse: a query sees its own and the previous block of keys (Longformer/BigBird local)
    global_tokens: int = 0  # with sparse_block: the first tokens every query sees (BigBird/Longformer global)
    backend: Backend = "auto"  # eager reference, PyTorch SDPA, flex_attention (CUDA), or auto (logs its pick once)
    mla: MLAConfig | None = None  # latent attention shape (kind=mla)
    cache_dtype: CacheDtype = "auto"  # store K/V (or the MLA latent) quantized, dequantized on read; auto = the model's dtype

    def __post_init__(self) -> None:
        check(self.heads > 0, "attention.heads", f"must be a positive integer, got {self.heads}")
        check(self.kv_heads is None or self.kv_heads > 0, "attention.kv_heads", f"must be a positive integer or null, got {self.kv_heads}")
        if self.kv_heads is not None:
            check(
                self.heads % self.kv_heads == 0,
                "attention.kv_heads",
                f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads}); "
                f"accepted: {', '.join(str(d) for d in range(1, self.heads + 1) if self.heads % d == 0)}",
            )
        check(self.head_dim is None or self.head_dim > 0, "attention.head_dim", f"must be a positive integer or null, got {self.head_dim}")
        check(not self.qk_norm_unit_offset or self.qk_norm != "none", "attention.qk_norm_unit_offset",
              "needs a QK-norm; set attention.qk_norm to head or full")
        check(self.output_gate_shape == "elementwise" or self.output_gate != "none", "attention.output_gate_shape",
              "only used with a gate; set attention.output_gate=sigmoid")
        check(self.softcap is None or 1e-6 <= self.softcap <= 1e6, "attention.softcap", f"must lie in [1e-6, 1e6] or be null, got {self.softcap}")
        check(self.scale is None or self.scale > 0, "attention.scale", f"must be > 0 or null, got {self.scale}")
        check(self.window is None or self.window > 0, "attention.window", f"must be a positive integer or null, got {self.window}")
        check(self.sinks >= 0, "attention.sinks", f"must be >= 0, got {self.sinks}")
        check(self.sinks == 0 or self.window is not None, "attention.sinks", "sink tokens only make sense with a window; set attention.window")
        check(self.sparse_block is None or self.sparse_block > 0, "attention.sparse_block", "must be a positive integer or null")
        check(self.global_tokens >= 0, "attention.global_tokens", f"must be >= 0, got {self.global_tokens}")
        check(self.global_tokens == 0 or self.sparse_block is not None, "attention.global_tokens", "global tokens belong to a block-sparse pattern; set attention.sparse_block")
        check(
            not (self.window is not None and self.sparse_block is not None),
            "attention.sparse_block",
            "choose one pattern: a sliding window or block-sparse attention, not both",
        )
        check(
            not (self.backend == "sdpa" and self.softcap is not None),
            "attention.backend",
            "sdpa cannot apply logit soft-capping; use backend=eager or auto",
        )
        self._check_mla()

    def _check_mla(self) -> None:
        if self.kind != "mla":
            check(self.mla is None, "attention.mla", f"only used by kind 'mla', got kind {self.kind!r}")
            return
        check(self.mla is not None, "attention.mla", "kind 'mla' needs its shape: set attention.mla (e.g. attention.mla.kv_lora_rank=512)")
        for name, bad in (("kv_heads", self.kv_heads is not None), ("head_dim", self.head_dim is not None),
                          ("qk_norm", self.qk_norm != "none"), ("output_gate", self.output_gate != "none")):
            check(not bad, f"attention.{name}", "not used by kind 'mla' (its sizes live in attention.mla); leave it at its default")
        check(self.window is None and self.sparse_block is None, "attention.window",
              "kind 'mla' keeps a full latent cache; sliding-window and block-sparse patterns are not supported with it")

    @property
    def mask(self) -> "MaskSpec":
        from archlab.attention.masks import MaskSpec

        return MaskSpec(window=self.window, sinks=self.sinks, block=self.sparse_block, global_tokens=self.global_tokens)

    @property
    def n_kv(self) -> int:
        return self.kv_heads or self.heads

    def dim(self, d_model: int) -> int:
        """Per-head width the position encoding acts on: head_dim, or for MLA the rotated
        key width qk_rope_head_dim (as transformers sets DeepSeek's head_dim)."""
        if self.mla is not None:
            return self.mla.qk_rope_head_dim
        return self.head_dim or d_model // self.heads

"""transformers RoPE settings <-> archlab's PositionConfig (kind rope, every scaling kind both sides have).

transformers 5.x keeps them in ``rope_parameters`` (``rope_theta``, ``rope_type``, ``factor``,
``partial_rotary_factor``...); configs of older versions (``rope_theta``/``rope_scaling``
attributes) are read too.
"""
from __future__ import annotations

from typing import Any

from archlab.config import ModelConfig
from archlab.interop.base import Unsupported
from archlab.position.config import PositionConfig, RopeScalingConfig
from archlab.position.rope import rotary_dim
from archlab.position.rope_scaling import yarn_attention_factor, yarn_softmax_scale_multiplier

ROPE_KINDS_TO_HF = {"none": "default", "linear": "linear", "dynamic": "dynamic", "yarn": "yarn",
                    "llama3": "llama3", "longrope": "longrope"}


def rope_parameters(hf: Any) -> dict[str, Any]:
    """The RoPE dict of a transformers config, whichever version wrote it."""
    rp = dict(getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {})
    nested = sorted(k for k, v in rp.items() if isinstance(v, dict))
    if nested:
        raise Unsupported(f"rope_parameters: one RoPE per layer type ({', '.join(nested)}) has no archlab counterpart yet")
    rp.setdefault("rope_theta", getattr(hf, "rope_theta", None) or 10000.0)
    if "rope_type" not in rp:
        rp["rope_type"] = rp.get("type", "default")
    return rp


def rope_from_hf(hf: Any, head_dim: int, *, fraction: float | None = None, interleaved: bool = False,
                 softmax_mscale: bool = False) -> PositionConfig:
    """transformers RoPE settings -> PositionConfig (kind rope, with scaling).

    ``softmax_mscale``: the family's attention also multiplies its softmax scale by YaRN's
    mscale_all_dim term (DeepSeek); otherwise YaRN's mscales only set the cos/sin factor.
    """
    rp = rope_parameters(hf)
    kind = rp["rope_type"]
    max_pos = getattr(hf, "max_position_embeddings", None)
    if fraction is None:
        fraction = rp.get("partial_rotary_factor") or getattr(hf, "partial_rotary_factor", None) or 1.0
    orig = rp.get("original_max_position_embeddings") or getattr(hf, "original_max_position_embeddings", None) or max_pos
    s: dict[str, Any]
    if kind == "default":
        s = {}
    elif kind == "linear":
        s = {"kind": "linear", "factor": rp["factor"]}
    elif kind == "dynamic":
        # transformers' dynamic NTK stretches from max_position_embeddings
        s = {"kind": "dynamic", "factor": rp["factor"], "original_max_positions": max_pos}
    elif kind == "yarn":
        factor = rp.get("factor") or max_pos / orig
        mscales = {"mscale": rp.get("mscale"), "mscale_all_dim": rp.get("mscale_all_dim"),
                   "attention_factor": rp.get("attention_factor")}
        if not softmax_mscale:
            # these attentions use mscale/mscale_all_dim only for the cos/sin factor; archlab's
            # mscale_all_dim would also rescale the softmax (DeepSeek), so keep the factor alone
            mscales = {"attention_factor": yarn_attention_factor(RopeScalingConfig(kind="yarn", factor=factor, **mscales))}
        s = {"kind": "yarn", "factor": factor, "original_max_positions": orig,
             "beta_fast": rp.get("beta_fast") or 32.0, "beta_slow": rp.get("beta_slow") or 1.0,
             "truncate": True if rp.get("truncate") is None else rp["truncate"], **mscales}
    elif kind == "llama3":
        s = {"kind": "llama3", "factor": rp["factor"], "original_max_positions": orig,
             "low_freq_factor": rp["low_freq_factor"], "high_freq_factor": rp["high_freq_factor"]}
    elif kind == "longrope":
        # the factor only sets the attention factor; below 1 transformers uses 1, as factor 1 does
        factor = max(1.0, rp.get("factor") or max_pos / orig)
        s = {"kind": "longrope", "factor": factor, "original_max_positions": orig,
             "short_factor": tuple(rp["short_factor"]), "long_factor": tuple(rp["long_factor"]),
             "attention_factor": rp.get("attention_factor"), "longrope_select": "by_length"}
    else:
        raise Unsupported(
            f"rope_parameters.rope_type: {kind!r} has no archlab counterpart; accepted: {', '.join(ROPE_KINDS_TO_HF.values())}"
        )
    pos = PositionConfig(kind="rope", theta=float(rp["rope_theta"]), rotary_fraction=float(fraction),
                         interleaved=interleaved, max_positions=max_pos, scaling=RopeScalingConfig(**s))
    want = int(head_dim * fraction)
    if rotary_dim(pos, head_dim) != want:
        raise Unsupported(f"partial_rotary_factor: {fraction} rotates {want} of {head_dim} dims; archlab rotates an even count")
    return pos


def rope_to_hf(cfg: ModelConfig, family: str, *, partial: bool = True,
               softmax_mscale: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """PositionConfig -> (rope_parameters, extra top-level kwargs such as max_position_embeddings)."""
    p = cfg.position
    s = p.scaling
    if s.kind not in ROPE_KINDS_TO_HF:
        raise Unsupported(
            f"position.scaling.kind={s.kind!r} has no counterpart in transformers' {family}, "
            f"which accepts {', '.join(ROPE_KINDS_TO_HF)}"
        )
    if not softmax_mscale and yarn_softmax_scale_multiplier(p) != 1.0:
        raise Unsupported(
            f"position.scaling.mscale_all_dim={s.mscale_all_dim} has no counterpart in transformers' {family}: "
            "its attention does not rescale the softmax by YaRN's mscale_all_dim (DeepSeek's does)"
        )
    rp: dict[str, Any] = {"rope_type": ROPE_KINDS_TO_HF[s.kind], "rope_theta": p.theta}
    if p.rotary_fraction != 1.0:
        if not partial:
            raise Unsupported(f"position.rotary_fraction={p.rotary_fraction} has no counterpart in transformers' {family}, "
                              "which rotates whole heads")
        rp["partial_rotary_factor"] = p.rotary_fraction
    extra: dict[str, Any] = {}
    if p.max_positions is not None:
        extra["max_position_embeddings"] = p.max_positions
    orig = p.original_max_positions
    if s.kind == "linear":
        rp["factor"] = s.factor
    elif s.kind == "dynamic":
        rp["factor"] = s.factor
        extra["max_position_embeddings"] = orig  # transformers stretches from max_position_embeddings
    elif s.kind == "yarn":
        rp.update(factor=s.factor, original_max_position_embeddings=orig, beta_fast=s.beta_fast,
                  beta_slow=s.beta_slow, truncate=s.truncate)
        for k in ("mscale", "mscale_all_dim", "attention_factor"):
            if getattr(s, k) is not None:
                rp[k] = getattr(s, k)
    elif s.kind == "llama3":
        rp.update(factor=s.factor, original_max_position_embeddings=orig,
                  low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor)
    elif s.kind == "longrope":
        if s.longrope_select != "by_length":
            raise Unsupported(
                f"position.scaling.longrope_select={s.longrope_select!r} has no counterpart in transformers' {family}, "
                "which switches factor sets by length ('by_length')"
            )
        rp.update(factor=s.factor, original_max_position_embeddings=orig,
                  short_factor=list(s.short_factor or ()), long_factor=list(s.long_factor or ()))
        if s.attention_factor is not None:
            rp["attention_factor"] = s.attention_factor
    return rp, extra

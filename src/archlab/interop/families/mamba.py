"""Mamba (Gu & Dao 2023) as transformers' ``mamba``: each layer is an RMSNorm and a MambaMixer (no
FFN, no positional encoding), ``backbone.embeddings``, ``backbone.norm_f``, a head tied by default.

Inside the mixer our parameter names are transformers' (``in_proj``, ``conv1d``, ``x_proj``,
``dt_proj``, ``A_log``, ``D``, ``out_proj``), so the weights map one to one. transformers keeps the
residual stream in float32 (``residual_in_fp32``) where ours follows the model's dtype: the two
agree exactly in float32 and round differently in bfloat16. Its ``time_step_scale`` and
``time_step_init_scheme`` only shape a fresh initialisation and are left at their defaults.

Also here, shared with the Mamba-2 and Jamba families: the check of a config section field by
field, the check of the layer plan, and the mixers' tensor names.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, _ok, require

# how a section is computed, not what: never checked
FREE_FIELDS = {"chunk_size", "backend", "dispatch"}
# a pure SSM stack has no attention and no FFN: those sections are unused, whatever they hold
UNUSED = {f"{s}.{f.name}": ANY for s, c in (("attention", AttentionConfig), ("ffn", FFNConfig))
          for f in dataclasses.fields(c)}
# positional encodings that act only inside attention layers, so they change nothing without any
NO_OP_POSITIONS = Accept(lambda k: k in ("none", "rope"), "'none' (or 'rope', a no-op without attention layers)")


def require_section(cfg: ModelConfig, section: str, family: str, fields: Mapping[str, Any]) -> None:
    """Check every field of ``cfg.<section>`` (an SSM or MoE config) against what a family expresses.

    ``fields`` maps field names to an accepted value, a tuple of values or an :class:`Accept`;
    a field it does not list must keep its default, so a component added later is refused
    until the family maps it.
    """
    sec = getattr(cfg, section)
    for f in dataclasses.fields(sec):
        if f.name in FREE_FIELDS or not f.init:
            continue
        value = getattr(sec, f.name)
        if f.name in fields:
            ok, words = _ok(value, fields[f.name])
        else:
            ok, words = value == f.default, f"only {f.default!r}"
        if not ok:
            raise Unsupported(f"{section}.{f.name}={value!r} has no counterpart in transformers' {family}, "
                              f"which accepts {words}")


def layer_kinds(cfg: ModelConfig, family: str, accepted: Mapping[tuple[str, str], str]) -> list[tuple[str, str]]:
    """(mixer, ffn) of every layer, each one of ``accepted`` (kind -> words for the error); no layer
    overrides a field or shares another's weights."""
    out = []
    for i in range(cfg.n_layers):
        spec = cfg.layer_spec(i)
        kind = (spec.mixer, spec.ffn)
        if kind not in accepted:
            raise Unsupported(
                f"plan: layer {i} is mixer={spec.mixer!r}, ffn={spec.ffn!r}; transformers' {family} has only "
                + ", ".join(f"({words})" for words in accepted.values()) + " layers"
            )
        if spec.tie is not None:
            raise Unsupported(f"plan: layer {i} shares its block's weights (tie={spec.tie!r}); transformers' {family} "
                              "has no weight sharing between layers")
        if spec.set:
            raise Unsupported(f"plan: layer {i} overrides {', '.join(sorted(spec.set))}; transformers' {family} uses "
                              "one setting for every layer")
        out.append(kind)
    return out


def silu_only(hf: Any, family: str) -> None:
    """The SSM mixers apply SiLU after their convolution; transformers takes it from hidden_act."""
    act = getattr(hf, "hidden_act", "silu")
    if act != "silu":
        raise Unsupported(f"hidden_act: {act!r} has no archlab counterpart in {family}'s Mamba mixer (SiLU after the "
                          "convolution); accepted: silu")


def mixer_names(cfg: ModelConfig) -> list[str]:
    """The parameters of an SSM mixer, named alike in transformers and archlab."""
    s = cfg.ssm
    names = ["in_proj.weight", "conv1d.weight", "A_log", "D", "out_proj.weight"]
    names += ["in_proj.bias", "out_proj.bias"] if s.proj_bias else []
    names += ["conv1d.bias"] if s.conv_bias else []
    if s.kind == "mamba":
        names += ["x_proj.weight", "dt_proj.weight", "dt_proj.bias"]
        names += [f"{n}_layernorm.weight" for n in ("dt", "b", "c")] if s.dt_bc_norm else []
    else:
        names += ["dt_bias", "norm.weight"]
    return names


class MambaStack(Family):
    """transformers' ``backbone`` layout shared by Mamba and Mamba-2."""

    prefix = "backbone"
    kind: str  # ssm.kind

    def ssm_from_hf(self, hf: Any) -> dict[str, Any]:
        """The ``SSMConfig`` fields of this kind read from a transformers config."""
        raise NotImplementedError

    def ssm_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        """Checks ``cfg.ssm`` and returns the transformers config fields it sets."""
        raise NotImplementedError

    def config_from_hf(self, hf: Any) -> ModelConfig:
        from archlab.presets.ssm_models import mamba

        silu_only(hf, self.model_type)
        cfg = mamba(d_model=hf.hidden_size, n_layers=hf.num_hidden_layers, vocab=hf.vocab_size, kind=self.kind,
                    eps=hf.layer_norm_epsilon, tie=bool(getattr(hf, "tie_word_embeddings", True)),
                    d_state=hf.state_size, d_conv=hf.conv_kernel, expand=hf.expand, conv_bias=bool(hf.use_conv_bias),
                    proj_bias=bool(hf.use_bias), dt_min=hf.time_step_min, dt_max=hf.time_step_max,
                    dt_init_floor=hf.time_step_floor, **self.ssm_from_hf(hf))
        return cfg.replace(init_std=getattr(hf, "initializer_range", 0.02))

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        layer_kinds(cfg, fam, {("ssm", "none"): "mixer='ssm', ffn='none'"})
        require(cfg, fam, {
            **UNUSED, "ssm": ANY, "position.kind": NO_OP_POSITIONS,
            "norm.kind": "rmsnorm", "norm.eps": ANY, "norm.placement": "pre",
        })
        s = cfg.ssm
        return {
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers,
            "state_size": s.d_state, "conv_kernel": s.d_conv, "expand": s.expand, "use_bias": s.proj_bias,
            "use_conv_bias": s.conv_bias, "layer_norm_epsilon": cfg.norm.eps, "hidden_act": "silu",
            "time_step_min": s.dt_min, "time_step_max": s.dt_max, "time_step_floor": s.dt_init_floor,
            "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
            **self.ssm_to_hf(cfg),
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        out = [rule("backbone.embeddings.weight", "embed.weight"), rule("backbone.norm_f.weight", "final_norm.weight")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        names = mixer_names(cfg)
        for i in range(cfg.n_layers):
            p, o = f"backbone.layers.{i}.", f"blocks.{i}."
            out.append(rule(p + "norm.weight", o + "mixer_norm.weight"))
            out += [rule(p + "mixer." + n, o + "mixer." + n) for n in names]
        return out


@register
class Mamba(MambaStack):
    model_type = "mamba"
    architecture = "MambaForCausalLM"
    kind = "mamba"

    def ssm_from_hf(self, hf: Any) -> dict[str, Any]:
        return {"dt_rank": hf.time_step_rank}

    def ssm_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        require_section(cfg, "ssm", self.model_type, {
            "kind": "mamba", "d_state": ANY, "d_conv": ANY, "expand": ANY, "dt_rank": ANY, "conv_bias": ANY,
            "proj_bias": ANY, "dt_min": ANY, "dt_max": ANY, "dt_init_floor": ANY,
            "norm_eps": ANY,  # only the dt/B/C norms (Jamba) use it
        })
        return {"time_step_rank": cfg.ssm.dims(cfg.d_model).dt_rank}

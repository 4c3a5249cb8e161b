"""Jamba (Lieber et al. 2024) as transformers' ``jamba``: Mamba layers with RMSNorms on dt, B and C,
softmax attention without positional encoding every ``attn_layer_period`` layers from
``attn_layer_offset``, and a mixture of experts in place of the MLP every ``expert_layer_period``
layers from ``expert_layer_offset`` (softmax router, top-k, weights not renormalised).

The four layer kinds are the letters of the Jamba presets (``m``/``n``: Mamba with MLP/MoE,
``A``/``E``: attention with MLP/MoE); a plan maps to transformers when its attention layers and its
MoE layers each sit at ``i % period == offset``. One ``rms_norm_eps`` serves every norm, the dt/B/C
norms included; one ``intermediate_size`` is the width of the MLPs and of every expert; one
``hidden_act`` is the MLPs' activation and the Mamba layers' activation after the convolution,
which is SiLU in archlab. ``use_mamba_kernels=False`` is written: transformers 5.17 refuses a
model without CUDA kernels otherwise, and later versions pick their kernels themselves.

Experts are read fused (a transformers model in memory) or one tensor per expert (checkpoint
files, published ones included) and written one per expert, which every transformers 5.x fuses
on load.
"""
from __future__ import annotations

from typing import Any, Collection

from archlab.attention.config import AttentionConfig
from archlab.config import LayerPlan, ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, check_head_dim, check_scale, require
from archlab.interop.families.mamba import layer_kinds, mixer_names, require_section, silu_only
from archlab.interop.moe_rules import expert_layout, expert_rules, require_moe, router_rules
from archlab.moe.config import MoEConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets.ssm_models import JAMBA_LETTERS
from archlab.ssm.config import SSMConfig

LETTER = {(spec.mixer, spec.ffn): ch for ch, spec in JAMBA_LETTERS.items()}
KINDS = {kind: f"mixer={kind[0]!r}, ffn={kind[1]!r}" for kind in LETTER}


def period_offset(flags: list[bool], preferred: int, what: str) -> tuple[int, int]:
    """(period, offset) with ``flags[i] == (i % period == offset)``; periods dividing ``preferred``
    (the plan's pattern length) first, so Jamba's 8-layer pattern keeps its period of 8."""
    n = len(flags)
    periods = sorted(range(1, n + 2), key=lambda p: (preferred % p != 0, p))  # n + 1: no layer at all
    for p in periods:
        for o in range(p):
            if [i % p == o for i in range(n)] == flags:
                return p, o
    layers = [i for i, f in enumerate(flags) if f]
    raise Unsupported(f"plan: the {what} layers {layers} are not every p-th layer from an offset; transformers' jamba "
                      f"places them at layer % {what}_layer_period == {what}_layer_offset")


def shortest_pattern(letters: str) -> str:
    n = len(letters)
    return letters[:next(p for p in range(1, n + 1) if n % p == 0 and letters[:p] * (n // p) == letters)]


@register
class Jamba(Family):
    model_type = "jamba"
    architecture = "JambaForCausalLM"
    prefix = "model"

    def config_from_hf(self, hf: Any) -> ModelConfig:
        silu_only(hf, self.model_type)
        C, I, eps = hf.hidden_size, hf.intermediate_size, hf.rms_norm_eps
        kinds = [("attention" if t == "attention" else "ssm", "moe" if e > 1 else "dense")
                 for t, e in zip(hf.layers_block_type, hf.layers_num_experts)]
        sparse = any(f == "moe" for _, f in kinds)
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=hf.num_hidden_layers,
            attention=AttentionConfig(heads=hf.num_attention_heads, kv_heads=hf.num_key_value_heads),
            position=PositionConfig(kind="none"),
            ffn=FFNConfig(kind="swiglu", hidden=I),
            moe=MoEConfig(num_experts=hf.num_experts, top_k=hf.num_experts_per_tok, expert_hidden=I) if sparse else None,
            ssm=SSMConfig(kind="mamba", d_state=hf.mamba_d_state, d_conv=hf.mamba_d_conv, expand=hf.mamba_expand,
                          dt_rank=hf.mamba_dt_rank, dt_bc_norm=True, conv_bias=bool(hf.mamba_conv_bias),
                          proj_bias=bool(hf.mamba_proj_bias), norm_eps=eps),
            norm=NormConfig(kind="rmsnorm", eps=eps, placement="pre"),
            plan=LayerPlan(pattern=shortest_pattern("".join(LETTER[k] for k in kinds)), letters=JAMBA_LETTERS),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam, C, eps = self.model_type, cfg.d_model, cfg.norm.eps
        kinds = layer_kinds(cfg, fam, KINDS)
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "position.kind": "none", "ffn.kind": "swiglu", "ffn.hidden": ANY, "ffn.activation": (None, "silu"),
            "norm.kind": "rmsnorm", "norm.eps": ANY, "norm.placement": "pre", "ssm": ANY, "moe": ANY,
        })
        check_head_dim(cfg, fam)
        check_scale(cfg, fam)
        kw: dict[str, Any] = {}
        if cfg.ssm is not None:
            require_section(cfg, "ssm", fam, {
                "kind": "mamba", "d_state": ANY, "d_conv": ANY, "expand": ANY, "dt_rank": ANY, "dt_bc_norm": True,
                "conv_bias": ANY, "proj_bias": ANY, "dt_min": ANY, "dt_max": ANY, "dt_init_floor": ANY,
                "norm_eps": Accept(lambda v: v == eps, f"only norm.eps ({eps}): one rms_norm_eps for every norm"),
            })
            s = cfg.ssm
            kw.update(mamba_d_state=s.d_state, mamba_d_conv=s.d_conv, mamba_expand=s.expand,
                      mamba_dt_rank=s.dims(C).dt_rank, mamba_conv_bias=s.conv_bias, mamba_proj_bias=s.proj_bias)
        dense, sparse = (any(f == ffn for _, f in kinds) for ffn in ("dense", "moe"))
        I = cfg.ffn.hidden_size(C)
        if sparse:
            moe = require_moe(cfg, fam, {
                "num_experts": Accept(lambda e: e > 1, "more than 1 (with one expert transformers builds an MLP)"),
                "top_k": ANY, "expert_kind": "swiglu", "activation": (None, "silu"), "router": "softmax_topk",
                "norm_topk_prob": False,
                "expert_hidden": ANY if not dense else Accept(
                    lambda h: h == I, f"only ffn.hidden ({I}): one intermediate_size for the MLPs and the experts"),
            })
            I = moe.expert_hidden
            kw.update(num_experts=moe.num_experts, num_experts_per_tok=moe.top_k)
        else:
            kw.update(num_experts=1, num_experts_per_tok=1)  # one expert: an MLP in every layer
        pattern = len(cfg.plan.pattern) if cfg.plan.layers is None else cfg.n_layers
        attn = period_offset([m == "attention" for m, _ in kinds], pattern, "attn")
        experts = period_offset([f == "moe" for _, f in kinds], pattern, "expert") if sparse else (2, 1)
        a = cfg.attention
        return {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "intermediate_size": I, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": a.heads, "num_key_value_heads": a.n_kv, "hidden_act": "silu", "rms_norm_eps": eps,
            "attn_layer_period": attn[0], "attn_layer_offset": attn[1],
            "expert_layer_period": experts[0], "expert_layer_offset": experts[1], "use_mamba_kernels": False,
            "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std, **kw,
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        return self._rules(cfg, None)

    def load_rules(self, cfg: ModelConfig, keys: Collection[str]) -> list[Rule]:
        return self._rules(cfg, keys)

    def _rules(self, cfg: ModelConfig, keys: Collection[str] | None) -> list[Rule]:
        """Experts one tensor each as files hold them (``keys`` None: writing), else as ``keys`` show
        (fused in a transformers model in memory)."""
        out = [rule("model.embed_tokens.weight", "embed.weight"), rule("model.final_layernorm.weight", "final_norm.weight")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"model.layers.{i}.", f"blocks.{i}."
            spec = cfg.layer_spec(i)
            out += [rule(p + "input_layernorm.weight", o + "mixer_norm.weight"),
                    rule(p + "pre_ff_layernorm.weight", o + "ffn_norm.weight")]
            if spec.mixer == "attention":
                out += [rule(p + f"self_attn.{n}_proj.weight", o + f"mixer.{n}_proj.weight") for n in "qkvo"]
            else:
                out += [rule(p + "mamba." + n, o + "mixer." + n) for n in mixer_names(cfg)]
            ff = p + "feed_forward."
            if spec.ffn == "moe":
                out += router_rules(ff, o + "ffn.", cfg.moe, gate="router")
                layout = "per_expert" if keys is None else expert_layout(keys, ff)
                out += expert_rules(ff, o + "ffn.", cfg.moe.num_experts, layout=layout)
            else:
                out += [rule(ff + f"{n}_proj.weight", o + f"ffn.{n}.weight") for n in ("gate", "up", "down")]
        return out

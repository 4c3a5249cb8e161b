"""The Llama-shaped families (Llama, Mistral, Qwen2/3, OLMo-2, Gemma-2, Phi-3): one base class.

They share the checkpoint layout ``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj``,
``model.layers.{i}.mlp.{gate,up,down}_proj``, ``model.norm``, ``lm_head`` and differ in a few
switches: which biases exist, QK-norm, where the norms sit, sliding windows, fused projections.
A family file sets the switches and adds what is its own (Gemma-2's scales and soft-caps).
"""
from __future__ import annotations

from typing import Any, ClassVar, Literal

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, rule
from archlab.interop.fused import split_rows
from archlab.interop.common import (
    ANY, Accept, activation_from_hf, check_head_dim, check_scale, layer_types, one_window, require,
    same_as_qkv_bias, uniform_layers, windows_from_layer_types, windows_plan,
)
from archlab.interop.rope import rope_from_hf, rope_to_hf
from archlab.norm import NormConfig

ACT_TO_HF = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}

# our norm module per placement, in the order transformers' names are listed by the family
NORM_SLOTS = {
    "pre": ("mixer_norm", "ffn_norm"),
    "output": ("mixer_norm", "ffn_norm"),
    "sandwich": ("mixer_norm", "mixer_out_norm", "ffn_norm", "ffn_out_norm"),
}


class LlamaLike(Family):
    prefix = "model"
    bias: ClassVar[Literal["attention_bias", "qkv", "none"]] = "attention_bias"  # which attention biases exist
    mlp_bias: ClassVar[bool] = False  # the config has an mlp_bias switch
    qk_norm: ClassVar[Literal["none", "head", "full"]] = "none"
    placement: ClassVar[str] = "pre"
    norm_names: ClassVar[tuple[str, ...]] = ("input_layernorm", "post_attention_layernorm")
    unit_offset: ClassVar[bool] = False  # RMSNorm stores w and applies (1 + w)
    window: ClassVar[Literal["none", "one", "layer_types"]] = "none"  # how sliding windows are expressed
    fused: ClassVar[bool] = False  # qkv_proj and gate_up_proj (Phi-3)
    has_head_dim: ClassVar[bool] = True  # the config has a head_dim field (else hidden / heads)
    act_attr: ClassVar[str] = "hidden_act"
    query_scale: ClassVar[bool] = False  # the config sets the logit scale (Gemma-2); else 1/sqrt(head_dim)
    partial_rotary: ClassVar[bool] = False  # the attention rotates a leading share of each head (Phi-3)

    # -- config --------------------------------------------------------------------------------
    def config_from_hf(self, hf: Any) -> ModelConfig:
        C, H = hf.hidden_size, hf.num_attention_heads
        Hkv = getattr(hf, "num_key_value_heads", None) or H
        D = (getattr(hf, "head_dim", None) if self.has_head_dim else None) or C // H
        L = hf.num_hidden_layers
        act = activation_from_hf(getattr(hf, self.act_attr), self.act_attr)
        if self.bias == "attention_bias":
            qkv_bias = out_bias = bool(getattr(hf, "attention_bias", False))
        else:
            qkv_bias, out_bias = self.bias == "qkv", False
        if self.window == "none":
            windows: list[int | None] = [None] * L
        elif self.window == "one":
            windows = [getattr(hf, "sliding_window", None)] * L
        else:
            windows = windows_from_layer_types(hf, L)
        window, plan = windows_plan(windows)
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=L,
            attention=AttentionConfig(heads=H, kv_heads=Hkv, head_dim=D, qkv_bias=qkv_bias, out_bias=out_bias,
                                      qk_norm=self.qk_norm, window=window),
            position=rope_from_hf(hf, D),
            ffn=FFNConfig(kind="swiglu" if act == "silu" else "geglu", hidden=hf.intermediate_size,
                          bias=bool(getattr(hf, "mlp_bias", False)) if self.mlp_bias else False,
                          activation=None if act == "silu" else act),
            norm=NormConfig(kind="rmsnorm", eps=hf.rms_norm_eps, unit_offset=self.unit_offset, placement=self.placement),
            plan=plan,
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def accepted(self, cfg: ModelConfig) -> dict[str, Any]:
        """What this family can express, for :func:`require` (families extend it)."""
        fields: dict[str, Any] = {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "attention.window": ANY if self.window != "none" else None,
            "attention.qk_norm": self.qk_norm,
            "position.kind": "rope", "position.interleaved": False,
            "ffn.kind": ("swiglu", "geglu"), "ffn.hidden": ANY,
            "ffn.activation": Accept(lambda a: a is None or a in ACT_TO_HF, f"None or {', '.join(ACT_TO_HF)}"),
            "ffn.bias": ANY if self.mlp_bias else False,
            "norm.kind": "rmsnorm", "norm.eps": ANY, "norm.placement": self.placement,
            "norm.unit_offset": self.unit_offset, "norm.final_norm": True,
        }
        if self.bias == "attention_bias":
            fields["attention.qkv_bias"] = ANY
            fields["attention.out_bias"] = same_as_qkv_bias(cfg)
        else:
            fields["attention.qkv_bias"] = fields["attention.out_bias"] = False
            if self.bias == "qkv":
                fields["attention.qkv_bias"] = True
        return fields

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        uniform_layers(cfg, fam, allow=("attention.window",) if self.window == "layer_types" else ())
        require(cfg, fam, self.accepted(cfg))
        if not self.query_scale:
            check_scale(cfg, fam)
        if not self.has_head_dim:
            check_head_dim(cfg, fam)
        a, C = cfg.attention, cfg.d_model
        rp, extra = rope_to_hf(cfg, fam, partial=self.partial_rotary)
        act = cfg.ffn.act()
        kw: dict[str, Any] = {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "intermediate_size": cfg.ffn.hidden_size(C),
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": a.heads, "num_key_value_heads": a.n_kv,
            self.act_attr: ACT_TO_HF[act], "rms_norm_eps": cfg.norm.eps, "tie_word_embeddings": cfg.tie_embeddings,
            "initializer_range": cfg.init_std, "rope_parameters": rp, **extra,
        }
        if self.has_head_dim:
            kw["head_dim"] = a.dim(C)
        if self.bias == "attention_bias":
            kw["attention_bias"] = a.qkv_bias
        if self.mlp_bias:
            kw["mlp_bias"] = cfg.ffn.bias
        if self.window == "one":
            kw["sliding_window"] = one_window(cfg, fam)
        elif self.window == "layer_types":
            types, w = layer_types(cfg, fam)
            kw["layer_types"] = types
            if w is not None:
                kw["sliding_window"] = w
        return kw

    # -- weights -------------------------------------------------------------------------------
    def rules(self, cfg: ModelConfig) -> list[Rule]:
        a, C = cfg.attention, cfg.d_model
        H, Hkv, D, I = a.heads, a.n_kv, a.dim(C), cfg.ffn.hidden_size(C)
        out = [rule("model.embed_tokens.weight", "embed.weight"), rule("model.norm.weight", "final_norm.weight")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"model.layers.{i}.", f"blocks.{i}."
            att, mix = p + "self_attn.", o + "mixer."
            if self.fused:
                out.append(rule(att + "qkv_proj.weight", [mix + f"{n}_proj.weight" for n in "qkv"],
                                *split_rows(H * D, Hkv * D, Hkv * D)))
            else:
                out += [rule(att + f"{n}_proj.weight", mix + f"{n}_proj.weight") for n in "qkv"]
            if a.qkv_bias:
                out += [rule(att + f"{n}_proj.bias", mix + f"{n}_proj.bias") for n in "qkv"]
            out.append(rule(att + "o_proj.weight", mix + "o_proj.weight"))
            if a.out_bias:
                out.append(rule(att + "o_proj.bias", mix + "o_proj.bias"))
            if a.qk_norm != "none":
                out += [rule(att + "q_norm.weight", mix + "q_norm"), rule(att + "k_norm.weight", mix + "k_norm")]
            if self.fused:
                out.append(rule(p + "mlp.gate_up_proj.weight", [o + "ffn.gate.weight", o + "ffn.up.weight"], *split_rows(I, I)))
            else:
                out += [rule(p + f"mlp.{n}_proj.weight", o + f"ffn.{n}.weight") for n in ("gate", "up")]
            out.append(rule(p + "mlp.down_proj.weight", o + "ffn.down.weight"))
            if cfg.ffn.bias:
                out += [rule(p + f"mlp.{n}_proj.bias", o + f"ffn.{n}.bias") for n in ("gate", "up", "down")]
            for ours, theirs in zip(NORM_SLOTS[self.placement], self.norm_names):
                out.append(rule(p + theirs + ".weight", o + ours + ".weight"))
        return out

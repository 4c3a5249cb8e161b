"""Qwen3-Next (Qwen team 2025) as transformers' ``qwen3_next``: a hybrid whose ``layer_types`` mix
Gated DeltaNet layers (``linear_attention``) and gated softmax attention (``full_attention``), each
followed by a sparse MoE with a sigmoid-gated shared expert, or by a dense MLP in
``mlp_only_layers`` and in the layers ``decoder_sparse_step`` skips.

The four layer kinds are the plan letters ``L``/``X`` (linear mixer with MLP/MoE) and ``A``/``E``
(attention with MLP/MoE). Every RMSNorm of the stack, QK-norm included, is zero-centred (weight
stored as w, applied as 1 + w); the Gated DeltaNet's output norm is not (applied as w). The
attention's ``q_proj`` holds, per head, the query rows and then the rows of an elementwise sigmoid
output gate (``attention.output_gate``). The Gated DeltaNet fuses q, k, v and the output gate z in
``in_proj_qkvz`` and beta, a in ``in_proj_ba``, their rows grouped per key head (each key head's q,
k, then its value heads' v and z); ``linear_num_key_heads`` q/k heads serve
``linear_num_value_heads`` value heads (``linear.key_heads``). One ``hidden_act`` (SiLU) is the
MLPs', the experts', and the Gated DeltaNet's after its convolution and in its output gate; one
``rms_norm_eps`` serves every norm. Multi-token-prediction weights (``mtp.*``) in published
checkpoints are not part of the causal LM and are skipped, as transformers skips them.
"""
from __future__ import annotations

from typing import Any, Collection

from archlab.attention.config import AttentionConfig
from archlab.config import LayerPlan, ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, check_scale, require, same_as_qkv_bias
from archlab.interop.families.jamba import shortest_pattern
from archlab.interop.families.mamba import layer_kinds, require_section, silu_only
from archlab.interop.fused import grouped_rows
from archlab.interop.moe_rules import expert_layout, expert_rules, require_moe, router_rules, shared_rules
from archlab.interop.rope import rope_from_hf, rope_to_hf
from archlab.linear.config import FeatureMapConfig, LinearAttentionConfig
from archlab.linear.dims import dims
from archlab.moe.config import MoEConfig
from archlab.norm import NormConfig

LETTER = {("linear", "dense"): "L", ("linear", "moe"): "X", ("attention", "dense"): "A", ("attention", "moe"): "E"}
KINDS = {kind: f"mixer={kind[0]!r}, ffn={kind[1]!r}" for kind in LETTER}
TYPES = {"linear_attention": "linear", "full_attention": "attention"}


def sparse_flags(hf: Any) -> list[bool]:
    """transformers' rule for which layers hold the MoE."""
    E, step, dense = hf.num_experts, hf.decoder_sparse_step, set(hf.mlp_only_layers or ())
    return [i not in dense and E > 0 and (i + 1) % step == 0 for i in range(hf.num_hidden_layers)]


@register
class Qwen3Next(Family):
    model_type = "qwen3_next"
    architecture = "Qwen3NextForCausalLM"
    prefix = "model"
    ignore = (r"rotary_emb\.inv_freq$", r"^(model\.)?mtp\.")

    # -- config --------------------------------------------------------------------------------
    def config_from_hf(self, hf: Any) -> ModelConfig:
        silu_only(hf, self.model_type)
        C, H, L, eps = hf.hidden_size, hf.num_attention_heads, hf.num_hidden_layers, hf.rms_norm_eps
        D = getattr(hf, "head_dim", None) or C // H
        types = list(hf.layer_types)
        unknown = sorted(set(types) - set(TYPES))
        if unknown:
            raise Unsupported(f"layer_types: {', '.join(unknown)} has no archlab counterpart; accepted: {', '.join(TYPES)}")
        kinds = [(TYPES[t], "moe" if s else "dense") for t, s in zip(types, sparse_flags(hf))]
        bias = bool(getattr(hf, "attention_bias", False))
        linear = None
        if any(m == "linear" for m, _ in kinds):
            Hv, Hk = hf.linear_num_value_heads, hf.linear_num_key_heads
            linear = LinearAttentionConfig(
                kind="gated_deltanet", heads=Hv, key_heads=None if Hk == Hv else Hk, head_dim=hf.linear_key_head_dim,
                value_head_dim=hf.linear_value_head_dim, output_norm="rms", output_gate="swish",
                conv_size=hf.linear_conv_kernel_dim, norm_eps=eps,
            )
        moe = None
        if any(f == "moe" for _, f in kinds):
            moe = MoEConfig(num_experts=hf.num_experts, top_k=hf.num_experts_per_tok, expert_hidden=hf.moe_intermediate_size,
                            router="softmax_topk", norm_topk_prob=bool(hf.norm_topk_prob), shared_experts=1,
                            shared_expert_hidden=hf.shared_expert_intermediate_size, shared_gate=True)
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=L,
            attention=AttentionConfig(heads=H, kv_heads=hf.num_key_value_heads, head_dim=D, qkv_bias=bias, out_bias=bias,
                                      qk_norm="head", qk_norm_unit_offset=True, output_gate="sigmoid"),
            position=rope_from_hf(hf, D),
            ffn=FFNConfig(kind="swiglu", hidden=hf.intermediate_size),
            norm=NormConfig(kind="rmsnorm", eps=eps, unit_offset=True, placement="pre"),
            linear=linear, moe=moe,
            plan=LayerPlan(pattern=shortest_pattern("".join(LETTER[k] for k in kinds))),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam, C, eps = self.model_type, cfg.d_model, cfg.norm.eps
        kinds = layer_kinds(cfg, fam, KINDS)
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "attention.qkv_bias": ANY, "attention.out_bias": same_as_qkv_bias(cfg),
            "attention.qk_norm": "head", "attention.qk_norm_unit_offset": True,
            "attention.output_gate": "sigmoid", "attention.output_gate_shape": "elementwise",
            "position.kind": "rope", "position.interleaved": False,
            "ffn.kind": "swiglu", "ffn.hidden": ANY, "ffn.activation": (None, "silu"),
            "norm.kind": "rmsnorm", "norm.eps": ANY, "norm.unit_offset": True, "norm.placement": "pre",
            "norm.final_norm": True, "linear": ANY, "moe": ANY,
        })
        check_scale(cfg, fam)
        a = cfg.attention
        rp, extra = rope_to_hf(cfg, fam)
        rp.setdefault("partial_rotary_factor", 1.0)  # Qwen3-Next's own default is 0.25
        kw: dict[str, Any] = {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "intermediate_size": cfg.ffn.hidden_size(C),
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": a.heads, "num_key_value_heads": a.n_kv,
            "head_dim": a.dim(C), "attention_bias": a.qkv_bias, "hidden_act": "silu", "rms_norm_eps": eps,
            "rope_parameters": rp, "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
            "layer_types": ["linear_attention" if m == "linear" else "full_attention" for m, _ in kinds], **extra,
        }
        if cfg.linear is not None:
            kw.update(self._linear_to_hf(cfg))
        if cfg.moe is not None:
            moe = require_moe(cfg, fam, {
                "num_experts": ANY, "top_k": ANY, "expert_hidden": ANY, "expert_kind": "swiglu", "activation": (None, "silu"),
                "router": "softmax_topk", "norm_topk_prob": ANY, "shared_experts": 1, "shared_expert_hidden": ANY,
                "shared_gate": True,
            })
            kw.update(num_experts=moe.num_experts, num_experts_per_tok=moe.top_k, moe_intermediate_size=moe.expert_hidden,
                      shared_expert_intermediate_size=moe.shared_hidden_total(), norm_topk_prob=moe.norm_topk_prob,
                      decoder_sparse_step=1, mlp_only_layers=[i for i, (_, f) in enumerate(kinds) if f == "dense"])
        else:
            kw.update(num_experts=0, mlp_only_layers=[])  # no experts: an MLP in every layer
        return kw

    def _linear_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        eps = cfg.norm.eps
        require_section(cfg, "linear", self.model_type, {
            "kind": "gated_deltanet", "heads": ANY, "key_heads": ANY, "head_dim": ANY, "value_head_dim": ANY,
            "output_norm": (None, "rms"), "output_gate": (None, "swish"), "form": ANY,
            "feature_map": Accept(lambda f: f == FeatureMapConfig(), "only the default (gated_deltanet has no feature map)"),
            "conv_size": Accept(lambda k: k is None or k >= 2, "None (4) or a kernel size >= 2 (the convolution is always there)"),
            "norm_eps": Accept(lambda v: v == eps, f"only norm.eps ({eps}): one rms_norm_eps for every norm"),
        })
        d = dims(cfg.linear, cfg.d_model)
        return {"linear_num_value_heads": d.heads, "linear_num_key_heads": d.k_heads, "linear_key_head_dim": d.qk,
                "linear_value_head_dim": d.v, "linear_conv_kernel_dim": d.conv}

    # -- weights -------------------------------------------------------------------------------
    def rules(self, cfg: ModelConfig) -> list[Rule]:
        return self._rules(cfg, None)

    def load_rules(self, cfg: ModelConfig, keys: Collection[str]) -> list[Rule]:
        return self._rules(cfg, keys)

    def _rules(self, cfg: ModelConfig, keys: Collection[str] | None) -> list[Rule]:
        """Checkpoint keys as files hold them (``keys`` None: writing, one tensor per expert) or as
        ``keys`` show (reading: experts fused in memory, per expert in files)."""
        out = [rule("model.embed_tokens.weight", "embed.weight"), rule("model.norm.weight", "final_norm.weight")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"model.layers.{i}.", f"blocks.{i}."
            spec = cfg.layer_spec(i)
            out += [rule(p + "input_layernorm.weight", o + "mixer_norm.weight"),
                    rule(p + "post_attention_layernorm.weight", o + "ffn_norm.weight")]
            out += self._linear_rules(cfg, p + "linear_attn.", o + "mixer.") if spec.mixer == "linear" else \
                self._attention_rules(cfg, p + "self_attn.", o + "mixer.")
            mlp, ffn = p + "mlp.", o + "ffn."
            if spec.ffn == "moe":
                layout = "per_expert" if keys is None else expert_layout(keys, mlp)
                out += router_rules(mlp, ffn, cfg.moe)
                out += expert_rules(mlp, ffn, cfg.moe.num_experts, layout=layout)
                out += shared_rules(mlp + "shared_expert.", ffn, cfg.moe, gate=mlp + "shared_expert_gate.weight")
            else:
                out += [rule(mlp + f"{n}_proj.weight", ffn + f"{n}.weight") for n in ("gate", "up", "down")]
        return out

    @staticmethod
    def _attention_rules(cfg: ModelConfig, p: str, o: str) -> list[Rule]:
        a = cfg.attention
        H, D = a.heads, a.dim(cfg.d_model)
        ws = ("weight", "bias") if a.qkv_bias else ("weight",)
        # q_proj rows per head: the query's D rows, then the output gate's D rows
        out = [rule(p + f"q_proj.{w}", [o + f"q_proj.{w}", o + f"g_proj.{w}"], *grouped_rows(H, (D, D))) for w in ws]
        out += [rule(p + f"{n}_proj.{w}", o + f"{n}_proj.{w}") for n in ("k", "v", "o") for w in ws]
        out += [rule(p + "q_norm.weight", o + "q_norm"), rule(p + "k_norm.weight", o + "k_norm")]
        return out

    @staticmethod
    def _linear_rules(cfg: ModelConfig, p: str, o: str) -> list[Rule]:
        d = dims(cfg.linear, cfg.d_model)
        r = d.heads // d.k_heads  # value heads per key head
        unsqueeze = (lambda t: (t.squeeze(1),), lambda t: (t.unsqueeze(1),))  # conv1d [Ch, 1, K] <-> [Ch, K]
        return [
            rule(p + "in_proj_qkvz.weight", [o + f"{n}_proj.weight" for n in "qkvg"], *grouped_rows(d.k_heads, (d.qk, d.qk, r * d.v, r * d.v))),
            rule(p + "in_proj_ba.weight", [o + "b_proj.weight", o + "a_proj.weight"], *grouped_rows(d.k_heads, (r, r))),
            rule(p + "conv1d.weight", o + "conv.weight", *unsqueeze),
            rule(p + "dt_bias", o + "dt_bias"), rule(p + "A_log", o + "A_log"),
            rule(p + "norm.weight", o + "norm.weight"), rule(p + "out_proj.weight", o + "o_proj.weight"),
        ]


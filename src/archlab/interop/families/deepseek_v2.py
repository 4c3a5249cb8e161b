"""DeepSeek-V2 (and V2-Lite): multi-head latent attention (``attention.kind = "mla"``, with or without
the query bottleneck ``q_lora_rank``), RoPE on interleaved pairs of the decoupled rope dims,
DeepSeek's YaRN whose ``mscale_all_dim`` also rescales the softmax, the first
``first_k_dense_replace`` layers dense and the rest DeepSeekMoE: a softmax router (top-k
``greedy``, or ``group_limited_greedy``: the best ``topk_group`` of ``n_group`` groups, a group
scored by its best expert) whose weights are scaled by ``routed_scaling_factor`` and never
renormalised (transformers' V2 ignores ``norm_topk_prob``), plus ``n_shared_experts`` shared
experts of width ``moe_intermediate_size`` each, stored as one MLP.

DeepSeek-V3 (``deepseek_v3.py``) extends this class with its sigmoid router.
"""
from typing import Any

from archlab.attention.config import AttentionConfig
from archlab.attention.mla_config import MLAConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, require, same_as_qkv_bias
from archlab.interop.llama_like import ACT_TO_HF
from archlab.interop.moe_rules import (
    EXPERT_KINDS, dense_view, experts_from_hf, expert_layout, expert_rules, hidden_act_ffn, layer_plan, require_moe,
    router_rules, shared_rules, sparse_layers,
)
from archlab.interop.rope import rope_from_hf, rope_parameters, rope_to_hf
from archlab.moe.config import MoEConfig
from archlab.norm import NormConfig

TOPK_METHODS = ("greedy", "group_limited_greedy")


@register
class DeepseekV2(Family):
    model_type = "deepseek_v2"
    architecture = "DeepseekV2ForCausalLM"
    priority = 24
    prefix = "model"

    # -- what differs in V3 ------------------------------------------------------------------------
    def interleaved_from_hf(self, hf: Any) -> bool:
        return True  # V2 rotates adjacent pairs as complex numbers

    def moe_from_hf(self, hf: Any, common: dict[str, Any]) -> MoEConfig:
        method = getattr(hf, "topk_method", "greedy") or "greedy"
        if method not in TOPK_METHODS:
            raise Unsupported(f"topk_method: {method!r} has no counterpart in transformers' deepseek_v2; accepted: "
                              f"{', '.join(TOPK_METHODS)}")
        groups = {}
        if method == "group_limited_greedy":
            groups = dict(n_group=hf.n_group, topk_group=hf.topk_group, group_score="max")
        return MoEConfig(**common, router="softmax_topk", **groups)

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        return {"router": "softmax_topk", "n_group": ANY, "topk_group": ANY,
                "group_score": "max" if cfg.moe.n_group > 1 else ANY}

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        grouped = moe.n_group > 1
        return {"topk_method": "group_limited_greedy" if grouped else "greedy", "n_group": moe.n_group,
                "topk_group": moe.topk_group, "norm_topk_prob": False, "mlp_bias": False}

    def position_fields(self) -> dict[str, Any]:
        return {"position.interleaved": True}

    # -- config ------------------------------------------------------------------------------------
    def config_from_hf(self, hf: Any) -> ModelConfig:
        C, H, L = hf.hidden_size, hf.num_attention_heads, hf.num_hidden_layers
        Hkv = getattr(hf, "num_key_value_heads", None) or H
        if Hkv != H:
            raise Unsupported(f"num_key_value_heads: {Hkv} with {H} attention heads; transformers' {self.model_type} "
                              "expands the latent to one key/value per head (set it to num_attention_heads)")
        if getattr(hf, "mlp_bias", False):
            raise Unsupported("mlp_bias: biases on the dense and shared-expert MLPs have no archlab counterpart; accepted: False")
        rp = rope_parameters(hf)
        if rp["rope_type"] != "yarn" and rp.get("mscale_all_dim"):
            raise Unsupported(f"rope_parameters.mscale_all_dim: rescales the softmax with rope_type {rp['rope_type']!r}; "
                              "archlab applies it with yarn only")
        mla = MLAConfig(kv_lora_rank=hf.kv_lora_rank, q_lora_rank=hf.q_lora_rank, qk_nope_head_dim=hf.qk_nope_head_dim,
                        qk_rope_head_dim=hf.qk_rope_head_dim, v_head_dim=hf.v_head_dim)
        bias = bool(getattr(hf, "attention_bias", False))
        n_shared = hf.n_shared_experts or 0
        if n_shared < 1:
            raise Unsupported(f"n_shared_experts: {n_shared}; transformers' {self.model_type} builds a shared-expert MLP "
                              "of width moe_intermediate_size * n_shared_experts, archlab needs at least one")
        experts = experts_from_hf(hf.hidden_act)
        common = dict(num_experts=hf.n_routed_experts, top_k=hf.num_experts_per_tok, expert_hidden=hf.moe_intermediate_size,
                      routed_scaling_factor=float(hf.routed_scaling_factor), shared_experts=n_shared, **experts)
        k = min(hf.first_k_dense_replace or 0, L)
        if k == L:
            raise Unsupported(f"first_k_dense_replace: {k} makes all {L} layers dense; archlab maps MoE models only here")
        _, plan = layer_plan([i >= k for i in range(L)], [None] * L)
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=L,
            attention=AttentionConfig(kind="mla", heads=H, mla=mla, qkv_bias=bias, out_bias=bias),
            position=rope_from_hf(hf, hf.qk_rope_head_dim, fraction=1.0, interleaved=self.interleaved_from_hf(hf),
                                  softmax_mscale=True),
            ffn=FFNConfig(kind=experts["expert_kind"], hidden=hf.intermediate_size, activation=experts.get("activation")),
            norm=NormConfig(kind="rmsnorm", eps=hf.rms_norm_eps, placement="pre"),
            moe=self.moe_from_hf(hf, common),
            plan=plan,
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        if cfg.moe is None:
            raise Unsupported(f"moe: transformers' {fam} is a mixture of experts; this config has no moe section")
        sparse = sparse_layers(cfg)
        k = sparse.index(True) if any(sparse) else cfg.n_layers
        if sparse != [i >= k for i in range(cfg.n_layers)]:
            raise Unsupported(f"plan: dense layers must come first (first_k_dense_replace) in transformers' {fam}; "
                              f"here the FFNs are {''.join('E' if s else 'A' for s in sparse)}")
        moe = require_moe(cfg, fam, {
            "expert_kind": EXPERT_KINDS, "activation": ANY, "routed_scaling_factor": ANY,
            "shared_experts": Accept(lambda n: n >= 1, "1 or more"),
            "shared_expert_hidden": Accept(lambda h: h in (None, cfg.moe.expert_hidden), "None or moe.expert_hidden"),
            **self.moe_fields(cfg),
        })
        ffn = hidden_act_ffn(cfg, moe, sparse, fam)
        view = dense_view(cfg, ffn)
        require(view, fam, {
            "attention.kind": "mla", "attention.heads": ANY,
            "attention.mla": Accept(lambda m: m.norm_eps == 1e-6, "a latent norm eps of 1e-6 (transformers' fixed value)"),
            "attention.qkv_bias": ANY, "attention.out_bias": same_as_qkv_bias(cfg),
            "position.kind": "rope", **self.position_fields(),
            "ffn.kind": EXPERT_KINDS, "ffn.hidden": ANY, "ffn.activation": ANY, "ffn.bias": False,
            "norm.kind": "rmsnorm", "norm.eps": ANY, "norm.placement": "pre", "norm.unit_offset": False,
            "norm.final_norm": True,
        })
        a, m, C = cfg.attention, cfg.attention.mla, cfg.d_model
        if C % a.heads:
            raise Unsupported(f"attention.heads={a.heads}: transformers' {fam} needs d_model ({C}) divisible by the heads")
        rp, extra = rope_to_hf(cfg, fam, partial=False, softmax_mscale=True)
        return {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "intermediate_size": ffn.hidden_size(C),
            "num_hidden_layers": cfg.n_layers, "num_attention_heads": a.heads, "num_key_value_heads": a.heads,
            "kv_lora_rank": m.kv_lora_rank, "q_lora_rank": m.q_lora_rank, "qk_nope_head_dim": m.qk_nope_head_dim,
            "qk_rope_head_dim": m.qk_rope_head_dim, "v_head_dim": m.v_head_dim, "attention_bias": a.qkv_bias,
            "first_k_dense_replace": k, "n_routed_experts": moe.num_experts, "num_experts_per_tok": moe.top_k,
            "moe_intermediate_size": moe.expert_hidden, "n_shared_experts": moe.shared_experts,
            "routed_scaling_factor": moe.routed_scaling_factor, "hidden_act": ACT_TO_HF[moe.act()],
            "rms_norm_eps": cfg.norm.eps, "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
            "rope_parameters": rp, **extra, **self.moe_to_hf(moe),
        }

    # -- weights -----------------------------------------------------------------------------------
    def rules(self, cfg: ModelConfig) -> list[Rule]:
        return self.load_rules(cfg, None)

    def load_rules(self, cfg: ModelConfig, keys) -> list[Rule]:
        """Checkpoint keys as files hold them (``keys`` None: writing) or as ``keys`` show (reading)."""
        a, moe = cfg.attention, cfg.moe
        sparse = sparse_layers(cfg)
        out = [rule("model.embed_tokens.weight", "embed.weight"), rule("model.norm.weight", "final_norm.weight")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        names = ["kv_a_proj_with_mqa.weight", "kv_a_layernorm.weight", "kv_b_proj.weight", "o_proj.weight"]
        names += ["q_proj.weight"] if a.mla.q_lora_rank is None else ["q_a_proj.weight", "q_a_layernorm.weight", "q_b_proj.weight"]
        if a.qkv_bias:
            names += ["kv_a_proj_with_mqa.bias"] + ([] if a.mla.q_lora_rank is None else ["q_a_proj.bias"])
        if a.out_bias:
            names.append("o_proj.bias")
        for i in range(cfg.n_layers):
            p, o = f"model.layers.{i}.", f"blocks.{i}."
            out += [rule(p + "self_attn." + n, o + "mixer." + n) for n in names]
            out += [rule(p + "input_layernorm.weight", o + "mixer_norm.weight"),
                    rule(p + "post_attention_layernorm.weight", o + "ffn_norm.weight")]
            if not sparse[i]:
                out += [rule(p + f"mlp.{n}_proj.weight", o + f"ffn.{n}.weight") for n in ("gate", "up", "down")]
                continue
            mlp, ffn = p + "mlp.", o + "ffn."
            layout = "per_expert" if keys is None else expert_layout(keys, mlp)
            out += router_rules(mlp, ffn, moe)
            out += expert_rules(mlp, ffn, moe.num_experts, layout=layout)
            out += shared_rules(mlp + "shared_experts.", ffn, moe)
        return out


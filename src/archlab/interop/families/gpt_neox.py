"""GPT-NeoX / Pythia: rotary on a fraction of each head (``rope_parameters["partial_rotary_factor"]``),
parallel residual with two LayerNorms (``norm.placement = "parallel"``; sequential = ``"pre"``),
biases, and a fused ``query_key_value`` whose rows are grouped per head as [H, 3, D]."""
from typing import Any

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, register, rule
from archlab.interop.common import (
    ANY, Accept, activation_from_hf, check_head_dim, check_kv_heads, check_scale, require, same_as_qkv_bias, uniform_layers,
)
from archlab.interop.rope import rope_from_hf, rope_to_hf
from archlab.interop.fused import per_head_qkv
from archlab.interop.llama_like import ACT_TO_HF
from archlab.norm import NormConfig


@register
class GPTNeoX(Family):
    model_type = "gpt_neox"
    architecture = "GPTNeoXForCausalLM"
    priority = 11
    prefix = "gpt_neox"
    ignore = (r"\.attention\.bias$", r"\.attention\.masked_bias$", r"rotary_emb\.inv_freq$")

    def canonical(self, key: str) -> str:
        # checkpoints before transformers 5 name the head embed_out
        return "lm_head." + key[len("embed_out."):] if key.startswith("embed_out.") else super().canonical(key)

    def config_from_hf(self, hf: Any) -> ModelConfig:
        C, H = hf.hidden_size, hf.num_attention_heads
        bias = bool(getattr(hf, "attention_bias", True))
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=hf.num_hidden_layers,
            attention=AttentionConfig(heads=H, qkv_bias=bias, out_bias=bias),
            position=rope_from_hf(hf, C // H),
            ffn=FFNConfig(kind="mlp", hidden=hf.intermediate_size, bias=True,
                          activation=activation_from_hf(hf.hidden_act, "hidden_act")),
            norm=NormConfig(kind="layernorm", bias=True, eps=hf.layer_norm_eps,
                            placement="parallel" if hf.use_parallel_residual else "pre"),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        uniform_layers(cfg, fam)
        a = cfg.attention
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "attention.qkv_bias": ANY,
            "attention.out_bias": same_as_qkv_bias(cfg),
            "position.kind": "rope", "position.interleaved": False,
            "ffn.kind": "mlp", "ffn.hidden": ANY, "ffn.bias": True,
            "ffn.activation": Accept(lambda x: x is None or x in ACT_TO_HF, ", ".join(ACT_TO_HF)),
            "norm.kind": "layernorm", "norm.bias": True, "norm.eps": ANY, "norm.placement": ("parallel", "pre"),
        })
        check_kv_heads(cfg, fam)
        check_head_dim(cfg, fam)
        check_scale(cfg, fam)
        rp, extra = rope_to_hf(cfg, fam)
        rp.setdefault("partial_rotary_factor", 1.0)  # NeoX's own default is 0.25
        C = cfg.d_model
        return {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": a.heads, "intermediate_size": cfg.ffn.hidden_size(C),
            "hidden_act": ACT_TO_HF[cfg.ffn.act()], "layer_norm_eps": cfg.norm.eps,
            "use_parallel_residual": cfg.norm.placement == "parallel", "attention_bias": a.qkv_bias,
            "rope_parameters": rp, "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
            **extra,
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        a, C = cfg.attention, cfg.d_model
        H, D = a.heads, a.dim(C)
        out = [rule("gpt_neox.embed_in.weight", "embed.weight")]
        out += [rule(f"gpt_neox.final_layer_norm.{w}", f"final_norm.{w}") for w in ("weight", "bias")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"gpt_neox.layers.{i}.", f"blocks.{i}."
            for w in ("weight", "bias") if a.qkv_bias else ("weight",):
                out.append(rule(p + f"attention.query_key_value.{w}", [o + f"mixer.{n}_proj.{w}" for n in "qkv"],
                                *per_head_qkv(H, D)))
            out += [rule(p + f"attention.dense.{w}", o + f"mixer.o_proj.{w}") for w in (("weight", "bias") if a.out_bias else ("weight",))]
            out += [rule(p + f"mlp.dense_h_to_4h.{w}", o + f"ffn.up.{w}") for w in ("weight", "bias")]
            out += [rule(p + f"mlp.dense_4h_to_h.{w}", o + f"ffn.down.{w}") for w in ("weight", "bias")]
            for ln, ours in (("input_layernorm", "mixer_norm"), ("post_attention_layernorm", "ffn_norm")):
                out += [rule(p + f"{ln}.{w}", o + f"{ours}.{w}") for w in ("weight", "bias")]
        return out

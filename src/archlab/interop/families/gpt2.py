"""GPT-2: learned positions, pre-LayerNorm with biases, GELU MLP, biases everywhere.

Its Conv1D layers store weights as [in, out] (transposed against nn.Linear); ``c_attn`` holds
q | k | v side by side. Old checkpoints omit the ``transformer.`` prefix and carry
``attn.bias`` mask buffers; both are handled.
"""
from typing import Any

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, activation_from_hf, check_head_dim, check_kv_heads, require, uniform_layers
from archlab.interop.fused import split_rows, transposed, transposed_split
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig

ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}


@register
class GPT2(Family):
    model_type = "gpt2"
    architecture = "GPT2LMHeadModel"
    priority = 10
    prefix = "transformer"

    def config_from_hf(self, hf: Any) -> ModelConfig:
        if getattr(hf, "scale_attn_by_inverse_layer_idx", False):
            raise Unsupported("scale_attn_by_inverse_layer_idx: a per-layer logit scale 1/(layer+1) has no archlab counterpart")
        if getattr(hf, "add_cross_attention", False):
            raise Unsupported("add_cross_attention: archlab models are decoder-only; cross-attention has no counterpart")
        C = hf.n_embd
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=hf.n_layer,
            attention=AttentionConfig(heads=hf.n_head, qkv_bias=True, out_bias=True,
                                      scale=None if hf.scale_attn_weights else 1.0),
            position=PositionConfig(kind="learned", max_positions=hf.n_positions),
            ffn=FFNConfig(kind="mlp", hidden=hf.n_inner or 4 * C, bias=True,
                          activation=activation_from_hf(hf.activation_function, "activation_function")),
            norm=NormConfig(kind="layernorm", bias=True, eps=hf.layer_norm_epsilon, placement="pre"),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", True)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        uniform_layers(cfg, fam)
        D = cfg.attention.dim(cfg.d_model)
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY,
            "attention.qkv_bias": True, "attention.out_bias": True,
            "attention.scale": Accept(lambda s: s in (None, 1.0, D ** -0.5), "None, 1/sqrt(head_dim) or 1.0 (scale_attn_weights)"),
            "position.kind": "learned", "position.max_positions": ANY,
            "ffn.kind": "mlp", "ffn.hidden": ANY, "ffn.bias": True,
            "ffn.activation": Accept(lambda a: a in ACT_TO_HF, ", ".join(ACT_TO_HF)),
            "norm.kind": "layernorm", "norm.bias": True, "norm.eps": ANY, "norm.placement": "pre",
        })
        check_kv_heads(cfg, fam)
        check_head_dim(cfg, fam)
        C = cfg.d_model
        return {
            "vocab_size": cfg.vocab_size, "n_embd": C, "n_layer": cfg.n_layers, "n_head": cfg.attention.heads,
            "n_inner": cfg.ffn.hidden_size(C), "n_positions": cfg.position.max_positions,
            "activation_function": ACT_TO_HF[cfg.ffn.act()], "layer_norm_epsilon": cfg.norm.eps,
            "scale_attn_weights": cfg.attention.scale != 1.0, "tie_word_embeddings": cfg.tie_embeddings,
            "initializer_range": cfg.init_std,
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        C = cfg.d_model
        out = [rule("transformer.wte.weight", "embed.weight"), rule("transformer.wpe.weight", "input_position.weight")]
        out += [rule(f"transformer.ln_f.{w}", f"final_norm.{w}") for w in ("weight", "bias")]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"transformer.h.{i}.", f"blocks.{i}."
            qkv = [o + f"mixer.{n}_proj" for n in "qkv"]
            out.append(rule(p + "attn.c_attn.weight", [n + ".weight" for n in qkv], *transposed_split(C, C, C)))
            out.append(rule(p + "attn.c_attn.bias", [n + ".bias" for n in qkv], *split_rows(C, C, C)))
            out.append(rule(p + "attn.c_proj.weight", o + "mixer.o_proj.weight", *transposed()))
            out.append(rule(p + "attn.c_proj.bias", o + "mixer.o_proj.bias"))
            out.append(rule(p + "mlp.c_fc.weight", o + "ffn.up.weight", *transposed()))
            out.append(rule(p + "mlp.c_fc.bias", o + "ffn.up.bias"))
            out.append(rule(p + "mlp.c_proj.weight", o + "ffn.down.weight", *transposed()))
            out.append(rule(p + "mlp.c_proj.bias", o + "ffn.down.bias"))
            for ln, ours in (("ln_1", "mixer_norm"), ("ln_2", "ffn_norm")):
                out += [rule(p + f"{ln}.{w}", o + f"{ours}.{w}") for w in ("weight", "bias")]
        return out

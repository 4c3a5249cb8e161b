"""GPT-J: parallel attention and MLP sharing one LayerNorm (``norm.placement = "parallel_shared"``),
rotary on the first ``rotary_dim`` dims of each head with adjacent pairs rotated
(``position.interleaved``), no attention biases, MLP biases, and a bias on the untied LM head
(``head_bias``)."""
from typing import Any

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, activation_from_hf, check_head_dim, check_kv_heads, check_scale, require, uniform_layers
from archlab.interop.families.gpt2 import ACT_TO_HF
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.position.rope import rotary_dim


@register
class GPTJ(Family):
    model_type = "gptj"
    architecture = "GPTJForCausalLM"
    priority = 12
    prefix = "transformer"

    def config_from_hf(self, hf: Any) -> ModelConfig:
        C, H = hf.n_embd, hf.n_head
        D = C // H
        if getattr(hf, "tie_word_embeddings", False):
            raise Unsupported("tie_word_embeddings: GPT-J's head keeps its own bias when tied; archlab's tied head has none")
        rot = hf.rotary_dim or D
        pos = PositionConfig(kind="rope", theta=10000.0, rotary_fraction=rot / D, interleaved=True,
                             max_positions=hf.n_positions)
        if rotary_dim(pos, D) != rot:
            raise Unsupported(f"rotary_dim: {rot} of head dim {D} has no archlab counterpart (an even count of rotated dims)")
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=hf.n_layer,
            attention=AttentionConfig(heads=H),
            position=pos,
            ffn=FFNConfig(kind="mlp", hidden=hf.n_inner or 4 * C, bias=True,
                          activation=activation_from_hf(hf.activation_function, "activation_function")),
            norm=NormConfig(kind="layernorm", bias=True, eps=hf.layer_norm_epsilon, placement="parallel_shared"),
            tie_embeddings=False, head_bias=True,
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        uniform_layers(cfg, fam)
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "position.kind": "rope", "position.interleaved": True, "position.theta": 10000.0,
            "position.scaling.kind": "none", "position.rotary_fraction": ANY, "position.max_positions": ANY,
            "ffn.kind": "mlp", "ffn.hidden": ANY, "ffn.bias": True,
            "ffn.activation": Accept(lambda a: a in ACT_TO_HF, ", ".join(ACT_TO_HF)),
            "norm.kind": "layernorm", "norm.bias": True, "norm.eps": ANY, "norm.placement": "parallel_shared",
            "tie_embeddings": False, "head_bias": True,
        })
        check_kv_heads(cfg, fam)
        check_head_dim(cfg, fam)
        check_scale(cfg, fam)
        C = cfg.d_model
        return {
            "vocab_size": cfg.vocab_size, "n_embd": C, "n_layer": cfg.n_layers, "n_head": cfg.attention.heads,
            "rotary_dim": rotary_dim(cfg.position, cfg.attention.dim(C)), "n_inner": cfg.ffn.hidden_size(C),
            "n_positions": cfg.position.max_positions or 2048, "activation_function": ACT_TO_HF[cfg.ffn.act()],
            "layer_norm_epsilon": cfg.norm.eps, "tie_word_embeddings": False, "initializer_range": cfg.init_std,
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        wb = ("weight", "bias")
        out = [rule("transformer.wte.weight", "embed.weight")]
        out += [rule(f"transformer.ln_f.{w}", f"final_norm.{w}") for w in wb]
        out += [rule(f"lm_head.{w}", f"head.{w}") for w in wb]
        for i in range(cfg.n_layers):
            p, o = f"transformer.h.{i}.", f"blocks.{i}."
            out += [rule(p + f"attn.{n}_proj.weight", o + f"mixer.{n}_proj.weight") for n in "qkv"]
            out.append(rule(p + "attn.out_proj.weight", o + "mixer.o_proj.weight"))
            out += [rule(p + f"mlp.fc_in.{w}", o + f"ffn.up.{w}") for w in wb]
            out += [rule(p + f"mlp.fc_out.{w}", o + f"ffn.down.{w}") for w in wb]
            out += [rule(p + f"ln_1.{w}", o + f"mixer_norm.{w}") for w in wb]
        return out

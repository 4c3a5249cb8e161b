"""BLOOM: ALiBi (``position.kind = "alibi"``), LayerNorm right after the embedding
(``norm.embedding_norm``), biases everywhere, tanh-GELU MLP of width 4 x hidden, and a fused
``query_key_value`` grouped per head as [H, 3, D]. BLOOM adds ``m_h * j`` where archlab adds
``-m_h * (i - j)``: a constant per query row, which softmax ignores."""
from typing import Any

from archlab.attention.config import AttentionConfig
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig
from archlab.interop.base import Family, Rule, Unsupported, register, rule
from archlab.interop.common import ANY, Accept, check_head_dim, check_kv_heads, check_scale, require, uniform_layers
from archlab.interop.fused import per_head_qkv
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig


@register
class Bloom(Family):
    model_type = "bloom"
    architecture = "BloomForCausalLM"
    priority = 13
    prefix = "transformer"

    def config_from_hf(self, hf: Any) -> ModelConfig:
        if getattr(hf, "apply_residual_connection_post_layernorm", False):
            raise Unsupported(
                "apply_residual_connection_post_layernorm: a residual taken after the norm has no archlab counterpart"
            )
        C = hf.hidden_size
        return ModelConfig(
            vocab_size=hf.vocab_size, d_model=C, n_layers=hf.n_layer,
            attention=AttentionConfig(heads=hf.n_head, qkv_bias=True, out_bias=True),
            position=PositionConfig(kind="alibi"),
            ffn=FFNConfig(kind="mlp", hidden=4 * C, bias=True, activation="gelu_tanh"),
            norm=NormConfig(kind="layernorm", bias=True, eps=hf.layer_norm_epsilon, placement="pre", embedding_norm=True),
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", True)),
            init_std=getattr(hf, "initializer_range", 0.02),
        )

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        uniform_layers(cfg, fam)
        C = cfg.d_model
        require(cfg, fam, {
            "attention.heads": ANY, "attention.kv_heads": ANY, "attention.head_dim": ANY, "attention.scale": ANY,
            "attention.qkv_bias": True, "attention.out_bias": True,
            "position.kind": "alibi",
            "ffn.kind": "mlp", "ffn.bias": True, "ffn.activation": "gelu_tanh",
            "ffn.hidden": Accept(lambda h: (h or 4 * C) == 4 * C, f"only 4 x d_model = {4 * C}"),
            "norm.kind": "layernorm", "norm.bias": True, "norm.eps": ANY, "norm.placement": "pre",
            "norm.embedding_norm": True,
        })
        check_kv_heads(cfg, fam)
        check_head_dim(cfg, fam)
        check_scale(cfg, fam)
        return {
            "vocab_size": cfg.vocab_size, "hidden_size": C, "n_layer": cfg.n_layers, "n_head": cfg.attention.heads,
            "layer_norm_epsilon": cfg.norm.eps, "tie_word_embeddings": cfg.tie_embeddings,
            "initializer_range": cfg.init_std,
        }

    def rules(self, cfg: ModelConfig) -> list[Rule]:
        a, C = cfg.attention, cfg.d_model
        H, D = a.heads, a.dim(C)
        wb = ("weight", "bias")
        out = [rule("transformer.word_embeddings.weight", "embed.weight")]
        out += [rule(f"transformer.word_embeddings_layernorm.{w}", f"embed_norm.{w}") for w in wb]
        out += [rule(f"transformer.ln_f.{w}", f"final_norm.{w}") for w in wb]
        if not cfg.tie_embeddings:
            out.append(rule("lm_head.weight", "head.weight"))
        for i in range(cfg.n_layers):
            p, o = f"transformer.h.{i}.", f"blocks.{i}."
            for w in wb:
                out.append(rule(p + f"self_attention.query_key_value.{w}", [o + f"mixer.{n}_proj.{w}" for n in "qkv"],
                                *per_head_qkv(H, D)))
                out.append(rule(p + f"self_attention.dense.{w}", o + f"mixer.o_proj.{w}"))
                out.append(rule(p + f"mlp.dense_h_to_4h.{w}", o + f"ffn.up.{w}"))
                out.append(rule(p + f"mlp.dense_4h_to_h.{w}", o + f"ffn.down.{w}"))
                out.append(rule(p + f"input_layernorm.{w}", o + f"mixer_norm.{w}"))
                out.append(rule(p + f"post_attention_layernorm.{w}", o + f"ffn_norm.{w}"))
        return out

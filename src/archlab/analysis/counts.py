"""Parameter and FLOP counts computed from a config, without allocating weights.

Conventions: FLOPs are forward matmul FLOPs (2 per multiply-add), including the attention
score and value products and the LM head, excluding norms, activations and softmax.
Training costs about 3x the forward.
"""
from __future__ import annotations

from dataclasses import dataclass

from archlab.config import ModelConfig
from archlab.norm import norm_params
from archlab.position.base import position_params
from archlab.slots import FFNS, MIXERS


@dataclass(frozen=True)
class Params:
    total: int  # every parameter, tied weights once (what transformers counts)
    active: int  # used per token (MoE: routed experts only top-k)
    embedding: int  # token embedding table (+ learned position table)
    head: int  # untied LM head (0 when tied)

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding - self.head


def _positions(cfg: ModelConfig) -> int:
    from archlab.model import position_key

    seen: set[str] = set()
    total = 0
    for i in range(cfg.n_layers):
        key = position_key(cfg, i)
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        lc = cfg.layer_config(i)
        total += position_params(lc.position, n_heads=lc.attention.heads, head_dim=lc.attention.dim(lc.d_model), d_model=lc.d_model)
    if cfg.layer_config(0).position != cfg.position:
        a = cfg.attention
        total += position_params(cfg.position, n_heads=a.heads, head_dim=a.dim(cfg.d_model), d_model=cfg.d_model)
    return total


def count_params(cfg: ModelConfig) -> Params:
    from archlab.model import block_norm_count

    C, V = cfg.d_model, cfg.vocab_size
    embedding = V * C
    head = 0 if cfg.tie_embeddings else V * C + (V if cfg.head_bias else 0)
    total = active = 0
    for i in range(cfg.n_layers):
        if cfg.tied_to(i) is not None:
            continue  # a shared block's weights count once
        spec, lc = cfg.layer_spec(i), cfg.layer_config(i)
        mixer, ffn = MIXERS.get(spec.mixer)(lc), FFNS.get(spec.ffn)(lc)
        norms = block_norm_count(cfg, i) * norm_params(C, lc.norm)
        total += mixer.params(lc) + ffn.params(lc) + norms
        active += mixer.active(lc) + ffn.active(lc) + norms
    pos = _positions(cfg)
    rest = pos + (norm_params(C, cfg.norm) if cfg.norm.final_norm else 0) + (norm_params(C, cfg.norm) if cfg.norm.embedding_norm else 0)
    # learned position tables count as embedding parameters
    pos_embedding = pos if cfg.position.kind in ("learned",) else 0
    return Params(
        total=total + rest + embedding + head,
        active=active + rest + embedding + head,
        embedding=embedding + pos_embedding,
        head=head,
    )


def flops_per_token(cfg: ModelConfig, seq_len: int = 2048) -> float:
    """Forward matmul FLOPs per token, averaged over a causal sequence of seq_len tokens."""
    if seq_len <= 0:
        raise ValueError(f"seq_len: must be a positive integer, got {seq_len}")
    total = 2.0 * cfg.d_model * cfg.vocab_size  # LM head
    for i in range(cfg.n_layers):
        spec, lc = cfg.layer_spec(i), cfg.layer_config(i)
        total += MIXERS.get(spec.mixer)(lc).flops_per_token(lc, seq_len)
        total += FFNS.get(spec.ffn)(lc).flops_per_token(lc, seq_len)
    return total

"""The Llama-shaped mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE): one base class.

Attention, norms and RoPE are those of :class:`LlamaLike`; the FFN of a layer is a dense MLP or
``mlp.gate`` (the router) + ``mlp.experts`` (routed experts) + optional shared experts. A family
file sets the switches below and maps its own config keys (``moe_from_hf``/``moe_to_hf``).
Dense and sparse layers form archlab's layer plan (letters ``A``/``E``); the checks and the
attention mapping are LlamaLike's, applied to the config with every FFN slot dense.
"""
from __future__ import annotations

from typing import Any, ClassVar, Collection

from archlab.config import ModelConfig
from archlab.interop.base import Rule, Unsupported
from archlab.interop.common import ANY
from archlab.interop.llama_like import LlamaLike
from archlab.interop.moe_rules import (
    EXPERT_KINDS, GATED_NAMES, dense_view, expert_layout, expert_rules, hidden_act_ffn, layer_plan, require_moe, router_rules,
    sparse_layers,
)
from archlab.moe.config import MoEConfig


class LlamaLikeMoE(LlamaLike):
    moe_prefix: ClassVar[str] = "mlp."  # the MoE module of a layer, in transformers' state dict
    file_prefix: ClassVar[str] = "mlp."  # ... and in checkpoint files (Mixtral: block_sparse_moe.)
    expert_names: ClassVar[tuple[str, str, str]] = GATED_NAMES  # per-expert (gate, up, down) names in files
    experts_in_every_layer: ClassVar[bool] = True  # else decoder_sparse_step / mlp_only_layers (Qwen-MoE)
    # intermediate_size is the routed experts' width (Mixtral, OLMoE); else the dense MLP's, with
    # the experts' in moe_intermediate_size
    expert_width_is_intermediate: ClassVar[bool] = True

    # -- the family's own keys -------------------------------------------------------------------
    def moe_from_hf(self, hf: Any) -> MoEConfig:
        raise NotImplementedError

    def moe_fields(self, cfg: ModelConfig) -> dict[str, Any]:
        """MoEConfig fields the family expresses, for :func:`require_moe`."""
        raise NotImplementedError

    def moe_to_hf(self, moe: MoEConfig) -> dict[str, Any]:
        raise NotImplementedError

    def shared_rules(self, hf_prefix: str, ours_prefix: str, moe: MoEConfig) -> list[Rule]:
        return []

    # -- layer plan ------------------------------------------------------------------------------
    def sparse_from_hf(self, hf: Any, n_layers: int) -> list[bool]:
        if self.experts_in_every_layer:
            return [True] * n_layers
        dense = set(getattr(hf, "mlp_only_layers", None) or ())
        step = getattr(hf, "decoder_sparse_step", 1) or 1
        return [i not in dense and (i + 1) % step == 0 for i in range(n_layers)]

    def sparse_to_hf(self, sparse: list[bool]) -> dict[str, Any]:
        """decoder_sparse_step when the sparse layers are every step-th, else mlp_only_layers."""
        if self.experts_in_every_layer:
            if not all(sparse):
                raise Unsupported(f"plan: layer {sparse.index(False)} has a dense FFN; transformers' {self.model_type} "
                                  "has experts in every layer")
            return {}
        n = len(sparse)
        for step in range(1, n + 1):
            if sparse == [(i + 1) % step == 0 for i in range(n)]:
                return {"decoder_sparse_step": step, "mlp_only_layers": []}
        return {"decoder_sparse_step": 1, "mlp_only_layers": [i for i, s in enumerate(sparse) if not s]}

    # -- config ----------------------------------------------------------------------------------
    def config_from_hf(self, hf: Any) -> ModelConfig:
        cfg = super().config_from_hf(hf)
        sparse = self.sparse_from_hf(hf, cfg.n_layers)
        if not any(sparse):
            raise Unsupported(f"mlp_only_layers/decoder_sparse_step: no layer of this {self.model_type} config has experts")
        window, plan = layer_plan(sparse, [cfg.layer_config(i).attention.window for i in range(cfg.n_layers)])
        return cfg.replace(**{"attention.window": window}, moe=self.moe_from_hf(hf), plan=plan)

    def config_to_hf(self, cfg: ModelConfig) -> dict[str, Any]:
        fam = self.model_type
        moe = require_moe(cfg, fam, {"expert_kind": EXPERT_KINDS, "activation": ANY, **self.moe_fields(cfg)})
        sparse = sparse_layers(cfg)
        plan_kw = self.sparse_to_hf(sparse)
        # Mixtral and OLMoE: intermediate_size is the experts' width, and no layer is dense
        ffn = hidden_act_ffn(cfg, moe, sparse, fam, moe.expert_hidden if self.expert_width_is_intermediate else None)
        kw = super().config_to_hf(dense_view(cfg, ffn))
        return {**kw, **plan_kw, **self.moe_to_hf(moe)}

    # -- weights ---------------------------------------------------------------------------------
    def rules(self, cfg: ModelConfig) -> list[Rule]:
        return self._rules(cfg, None)

    def load_rules(self, cfg: ModelConfig, keys: Collection[str]) -> list[Rule]:
        return self._rules(cfg, keys)

    def _rules(self, cfg: ModelConfig, keys: Collection[str] | None) -> list[Rule]:
        """Checkpoint keys as files hold them (``keys`` None: writing) or as ``keys`` show (reading)."""
        moe, sparse = cfg.moe, sparse_layers(cfg)
        if moe is None:
            raise Unsupported(f"moe: transformers' {self.model_type} is a mixture of experts; this config has no moe section")
        experts_of = tuple(f"blocks.{i}.ffn." for i, s in enumerate(sparse) if s)
        out = [r for r in super().rules(dense_view(cfg)) if not any(n.startswith(experts_of) for n in r.ours)]
        for i in range(cfg.n_layers):
            if not sparse[i]:
                continue
            layer, o = f"model.layers.{i}.", f"blocks.{i}.ffn."
            p = layer + (self.file_prefix if keys is None else self.moe_prefix)
            layout = "per_expert" if keys is None else expert_layout(keys, p)
            out += router_rules(p, o, moe)
            out += expert_rules(p, o, moe.num_experts, layout=layout, names=self.expert_names)
            out += self.shared_rules(p, o, moe)
        return out

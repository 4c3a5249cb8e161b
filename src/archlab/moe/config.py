"""Configuration of the mixture-of-experts FFN.

One config covers coarse experts (Switch, Mixtral: few large experts, top-1/2) and fine-grained
ones (DeepSeekMoE, OLMoE: many small experts, more active per token): the number of experts,
top-k and expert width are independent fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from archlab.configbase import Config
from archlab.errors import check

RouterKind = Literal["softmax_topk", "topk_softmax", "sigmoid", "expert_choice", "hash"]
ExpertKind = Literal["swiglu", "geglu", "mlp"]
Activation = Literal["gelu", "gelu_tanh", "silu", "relu"]
Dispatch = Literal["auto", "reference", "grouped_mm", "bmm"]

# routers whose top-k is chosen per token from learned scores (biases, groups, balance losses apply)
TOKEN_CHOICE_LEARNED = ("softmax_topk", "topk_softmax", "sigmoid")


@dataclass(frozen=True)
class MoEConfig(Config):
    """A routed-expert FFN with optional always-on shared experts.

    Routers (``router``):
      - ``softmax_topk``: p = softmax(logits); take the top-k of p; weights are those p, optionally
        renormalised (Mixtral, OLMoE, Qwen2-MoE, DeepSeek-V2).
      - ``topk_softmax``: take the top-k logits, softmax over those k (Switch-style top-k gating,
        Shazeer et al. 2017 without noise).
      - ``sigmoid``: s = sigmoid(logits); top-k of s (+ correction bias); weights are s, optionally
        renormalised (DeepSeek-V3).
      - ``expert_choice``: each expert takes its top-``capacity`` tokens (Zhou et al. 2022).
        It looks at every token of the batch, so it is not causal.
      - ``hash``: a fixed hash of the token id picks the experts; nothing learned (Roller et al. 2021).
    """

    _section = "moe"
    num_experts: int  # routed experts E
    top_k: int  # routed experts per token (expert choice: average experts per token at capacity 1)
    expert_hidden: int  # hidden width I of each routed expert
    expert_kind: ExpertKind = "swiglu"  # gated three-matrix experts or a plain two-matrix MLP
    activation: Activation | None = None  # None = silu (swiglu), gelu_tanh (geglu), gelu (mlp)
    router: RouterKind = "softmax_topk"  # how experts are chosen (see the class docstring)
    norm_topk_prob: bool = False  # renormalise the k selected weights to sum 1 (Mixtral, DeepSeek-V3)
    routed_scaling_factor: float = 1.0  # multiplies the routed weights (DeepSeek-V3: 2.5)
    n_group: int = 1  # group-limited routing: experts split into n_group groups (DeepSeek-V2/V3)
    topk_group: int = 1  # ... and a token may only use experts of its topk_group best groups
    group_score: Literal["max", "top2_sum"] = "max"  # a group's score: best expert (V2) or best two (V3)
    router_jitter: float = 0.0  # training-time multiplicative noise U(1-eps, 1+eps) on the router input
    capacity_factor: float | None = None  # None = dropless; else in training each expert takes at most cf*N*k/E tokens
    shared_experts: int = 0  # always-on experts beside the routed ones (DeepSeekMoE, Qwen2-MoE)
    shared_expert_hidden: int | None = None  # width of each shared expert; None = expert_hidden
    shared_gate: bool = False  # scale the shared output by sigmoid(w . x) (Qwen2-MoE)
    load_balance_coef: float = 0.0  # Switch-style loss E * sum_i f_i P_i over the whole batch
    seq_balance_coef: float = 0.0  # the same loss per sequence, averaged (DeepSeek-V3)
    z_loss_coef: float = 0.0  # router z-loss mean(logsumexp(logits)^2) (ST-MoE)
    correction_bias: bool = False  # per-expert bias added to scores for selection only (DeepSeek-V3)
    bias_update_rate: float = 0.0  # aux-loss-free balancing: update_bias() moves the bias by this
    dispatch: Dispatch = "auto"  # expert computation: auto picks grouped_mm where supported, else bmm

    def __post_init__(self) -> None:
        E, k = self.num_experts, self.top_k
        check(E >= 1, "moe.num_experts", f"must be >= 1, got {E}")
        check(1 <= k <= E, "moe.top_k", f"must be between 1 and num_experts={E}, got {k}")
        check(self.expert_hidden >= 1, "moe.expert_hidden", f"must be >= 1, got {self.expert_hidden}")
        if self.expert_kind == "swiglu":
            check(self.activation in (None, "silu"), "moe.activation",
                  "swiglu experts use silu; use expert_kind=geglu or mlp for another activation")
        token_choice = self.router in TOKEN_CHOICE_LEARNED
        check(not self.norm_topk_prob or self.router in ("softmax_topk", "sigmoid"), "moe.norm_topk_prob",
              f"applies to routers softmax_topk and sigmoid only, not {self.router!r}")
        check(self.routed_scaling_factor > 0, "moe.routed_scaling_factor",
              f"must be > 0, got {self.routed_scaling_factor}")
        check(self.n_group >= 1 and E % self.n_group == 0, "moe.n_group",
              f"must be >= 1 and divide num_experts={E}, got {self.n_group}")
        check(1 <= self.topk_group <= self.n_group, "moe.topk_group",
              f"must be between 1 and n_group={self.n_group}, got {self.topk_group}")
        if self.n_group > 1:
            check(token_choice, "moe.n_group", f"group-limited routing needs a token-choice router, not {self.router!r}")
            per_group = E // self.n_group
            check(k <= self.topk_group * per_group, "moe.top_k",
                  f"top_k={k} exceeds the {self.topk_group * per_group} experts of topk_group={self.topk_group} groups")
            check(self.group_score != "top2_sum" or per_group >= 2, "moe.group_score",
                  f"top2_sum needs >= 2 experts per group, got {per_group}")
        check(0.0 <= self.router_jitter < 1.0, "moe.router_jitter", f"must be in [0, 1), got {self.router_jitter}")
        check(self.router_jitter == 0.0 or self.router != "hash", "moe.router_jitter", "hash routing has no router input")
        check(self.capacity_factor is None or self.capacity_factor > 0, "moe.capacity_factor",
              f"must be > 0 or null (dropless), got {self.capacity_factor}")
        check(self.router != "expert_choice" or self.capacity_factor is not None, "moe.capacity_factor",
              "expert_choice routing needs a capacity factor (each expert takes capacity_factor*top_k*tokens/num_experts)")
        check(self.shared_experts >= 0, "moe.shared_experts", f"must be >= 0, got {self.shared_experts}")
        check(self.shared_expert_hidden is None or self.shared_expert_hidden >= 1, "moe.shared_expert_hidden",
              f"must be >= 1 or null, got {self.shared_expert_hidden}")
        check(self.shared_experts > 0 or (self.shared_expert_hidden is None and not self.shared_gate),
              "moe.shared_experts", "shared_expert_hidden and shared_gate need shared_experts >= 1")
        for name in ("load_balance_coef", "seq_balance_coef", "z_loss_coef", "bias_update_rate"):
            check(getattr(self, name) >= 0, f"moe.{name}", f"must be >= 0, got {getattr(self, name)}")
        for name in ("load_balance_coef", "seq_balance_coef"):
            check(getattr(self, name) == 0 or token_choice, f"moe.{name}",
                  f"balance losses need a learned token-choice router, not {self.router!r}")
        check(self.z_loss_coef == 0 or self.router != "hash", "moe.z_loss_coef", "hash routing has no router logits")
        check(not self.correction_bias or token_choice, "moe.correction_bias",
              f"needs a learned token-choice router, not {self.router!r}")
        check(self.bias_update_rate == 0 or self.correction_bias, "moe.bias_update_rate",
              "aux-loss-free balancing updates the correction bias: set correction_bias=true")

    @property
    def gated(self) -> bool:
        return self.expert_kind in ("swiglu", "geglu")

    def act(self) -> Activation:
        return self.activation or {"swiglu": "silu", "geglu": "gelu_tanh", "mlp": "gelu"}[self.expert_kind]

    def shared_hidden_total(self) -> int:
        """Width of the one fused MLP that holds all shared experts (their outputs simply add)."""
        return self.shared_experts * (self.shared_expert_hidden or self.expert_hidden)

"""MoEConfig validation names the field and what is accepted; dict round-trip."""
from __future__ import annotations

import pytest

from archlab.errors import ConfigError
from archlab.moe import MoEConfig

BASE = dict(num_experts=8, top_k=2, expert_hidden=16)


def test_round_trip_and_unknown_key():
    cfg = MoEConfig(**BASE, router="sigmoid", n_group=4, topk_group=2, group_score="top2_sum",
                    correction_bias=True, bias_update_rate=1e-3, capacity_factor=1.25)
    assert MoEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="did you mean 'top_k'"):
        MoEConfig.from_dict({**BASE, "topk": 2})
    with pytest.raises(ConfigError, match="moe.router"):
        MoEConfig(**BASE, router="switch")


@pytest.mark.parametrize(
    "changes,field",
    [
        (dict(top_k=9), "moe.top_k"),
        (dict(num_experts=0), "moe.num_experts"),
        (dict(expert_hidden=0), "moe.expert_hidden"),
        (dict(activation="gelu"), "moe.activation"),
        (dict(router="topk_softmax", norm_topk_prob=True), "moe.norm_topk_prob"),
        (dict(n_group=3), "moe.n_group"),
        (dict(n_group=4, topk_group=5), "moe.topk_group"),
        (dict(n_group=4, topk_group=1, top_k=3), "moe.top_k"),
        (dict(n_group=8, topk_group=2, group_score="top2_sum"), "moe.group_score"),
        (dict(router="expert_choice", capacity_factor=1.0, n_group=2), "moe.n_group"),
        (dict(router="expert_choice"), "moe.capacity_factor"),
        (dict(capacity_factor=0.0), "moe.capacity_factor"),
        (dict(router_jitter=1.0), "moe.router_jitter"),
        (dict(router="hash", router_jitter=0.1), "moe.router_jitter"),
        (dict(shared_gate=True), "moe.shared_experts"),
        (dict(shared_expert_hidden=4), "moe.shared_experts"),
        (dict(load_balance_coef=-1.0), "moe.load_balance_coef"),
        (dict(router="hash", load_balance_coef=0.01), "moe.load_balance_coef"),
        (dict(router="expert_choice", capacity_factor=1.0, seq_balance_coef=0.01), "moe.seq_balance_coef"),
        (dict(router="hash", z_loss_coef=0.01), "moe.z_loss_coef"),
        (dict(router="hash", correction_bias=True), "moe.correction_bias"),
        (dict(bias_update_rate=1e-3), "moe.bias_update_rate"),
        (dict(dispatch="cutlass"), "moe.dispatch"),
    ],
)
def test_invalid_values_name_their_field(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        MoEConfig(**{**BASE, **changes})


def test_derived_values():
    assert MoEConfig(**BASE).act() == "silu" and MoEConfig(**BASE).gated
    assert MoEConfig(**BASE, expert_kind="mlp").act() == "gelu" and not MoEConfig(**BASE, expert_kind="mlp").gated
    assert MoEConfig(**BASE, expert_kind="geglu").act() == "gelu_tanh"
    assert MoEConfig(**BASE, shared_experts=2).shared_hidden_total() == 32
    assert MoEConfig(**BASE, shared_experts=2, shared_expert_hidden=5).shared_hidden_total() == 10

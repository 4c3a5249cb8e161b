"""The MoE layer: every router gives the same outputs and gradients through every dispatch path,
with and without capacity limits; the contract (aux_loss, stats, token_ids, dtypes) holds."""
from __future__ import annotations

import pytest
import torch

from archlab.moe import MoE, MoEConfig

C = 16

ROUTERS = {
    "softmax_topk": dict(router="softmax_topk"),
    "softmax_topk_norm_groups": dict(router="softmax_topk", norm_topk_prob=True, n_group=2, topk_group=1),
    "topk_softmax": dict(router="topk_softmax", router_jitter=0.1),
    "sigmoid_v3": dict(router="sigmoid", n_group=4, topk_group=2, group_score="top2_sum", correction_bias=True,
                       norm_topk_prob=True, routed_scaling_factor=2.5, shared_experts=1),
    "expert_choice": dict(router="expert_choice", capacity_factor=1.0),
    "hash": dict(router="hash"),
}


def _cfg(router: str, capacity: float | None, **kw) -> MoEConfig:
    extra = dict(ROUTERS[router])
    if capacity is not None:
        extra["capacity_factor"] = capacity
    return MoEConfig(num_experts=8, top_k=2, expert_hidden=8, **extra, **kw)


def _run(cfg: MoEConfig, dispatch: str, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    m = MoE(cfg.replace(dispatch=dispatch), C, layer_idx=3).to(dtype)
    with torch.no_grad():
        m.router.weight.mul_(50.0) if hasattr(m.router, "weight") else None  # uneven routing
        if hasattr(m.router, "e_score_correction_bias"):
            m.router.e_score_correction_bias.normal_(std=0.1)
    m.train()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, 10, C, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    ids = torch.randint(0, 1000, (3, 10), generator=g)
    torch.manual_seed(seed + 2)  # same jitter draw in every run
    y = m(x, token_ids=ids)
    probe = torch.randn(y.shape, generator=g, dtype=torch.float64).to(dtype)
    names = [n for n, _ in m.named_parameters()]
    grads = torch.autograd.grad((y * probe).sum() + m.aux_loss, [x, *m.parameters()])
    return y, dict(zip(["x", *names], grads)), m


@pytest.mark.parametrize("capacity", [None, 0.75])
@pytest.mark.parametrize("router", list(ROUTERS))
def test_dispatch_paths_agree_for_every_router(router, capacity):
    cfg = _cfg(router, capacity)
    y_ref, g_ref, m = _run(cfg, "reference")
    if capacity is not None and router != "expert_choice":
        assert m.stats["dropped_fraction"] > 0  # the capacity limit is exercised
    for dispatch in ("grouped_mm", "bmm"):
        y, g, _ = _run(cfg, dispatch)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        for name in g_ref:
            torch.testing.assert_close(g[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=f"{dispatch}: grad {name}")


@pytest.mark.parametrize("router", ["sigmoid_v3", "expert_choice"])
def test_bmm_equals_reference_float64(router):
    cfg = _cfg(router, 0.75 if router == "sigmoid_v3" else None)
    y_ref, g_ref, _ = _run(cfg, "reference", torch.float64)
    y, g, _ = _run(cfg, "auto", torch.float64)  # auto -> bmm for float64
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-12, atol=1e-12)


def test_router_gets_gradient_and_learned_weights_flow():
    _, g, _ = _run(_cfg("softmax_topk", None), "auto")
    assert g["router.weight"].abs().sum() > 0
    _, g, m = _run(_cfg("hash", None), "auto")
    assert not hasattr(m.router, "weight")


def test_stats_and_aux_loss_contract():
    cfg = _cfg("softmax_topk", 0.5)
    _, _, m = _run(cfg, "auto")
    s = m.stats
    assert set(s) == {"load_fraction", "dropped_fraction", "router_entropy", "max_over_mean_load"}
    assert s["load_fraction"].shape == (8,) and torch.isclose(s["load_fraction"].sum(), torch.tensor(1.0))
    assert all(not v.requires_grad for v in s.values())
    assert 0 < s["dropped_fraction"] < 1 and 0 < s["router_entropy"] <= torch.log(torch.tensor(8.0)) + 1e-6
    assert s["max_over_mean_load"] >= 1
    assert m.aux_loss.shape == () and m.aux_loss.item() == 0.0  # no loss enabled: a zero tensor
    _, _, m = _run(cfg.replace(load_balance_coef=0.1, z_loss_coef=0.01), "auto")
    assert m.aux_loss.requires_grad and m.aux_loss.item() > 0


def test_expert_choice_balances_by_construction():
    _, _, m = _run(_cfg("expert_choice", None), "auto")
    assert torch.allclose(m.stats["max_over_mean_load"], torch.tensor(1.0))


def test_hash_routing_needs_token_ids_and_depends_on_layer():
    m = MoE(_cfg("hash", None), C, layer_idx=0)
    x = torch.randn(2, 5, C)
    with pytest.raises(ValueError, match="token_ids"):
        m(x)
    with pytest.raises(ValueError, match="token_ids: expected integers"):
        m(x, token_ids=torch.zeros(2, 4, dtype=torch.long))
    from archlab.moe.routers import hash_experts

    ids = torch.arange(1000)
    a, b = hash_experts(ids, 0, 8, 2), hash_experts(ids, 1, 8, 2)
    assert torch.equal(a, hash_experts(ids, 0, 8, 2)) and not torch.equal(a, b)
    assert (a[:, 0] != a[:, 1]).all()
    load = torch.bincount(a[:, 0], minlength=8).float()
    assert load.max() / load.mean() < 1.3  # a fixed hash spreads a uniform vocabulary evenly


def test_bad_input_shape_is_a_named_error():
    m = MoE(_cfg("softmax_topk", None), C)
    with pytest.raises(ValueError, match=r"x: expected \[batch, time, 16\]"):
        m(torch.randn(4, C))


def test_bias_and_load_stay_float32_under_bfloat16():
    cfg = _cfg("sigmoid_v3", None, bias_update_rate=1e-3)
    m = MoE(cfg, C).to(torch.bfloat16)
    assert m.experts.gate_up_proj.dtype == torch.bfloat16
    assert m.router.e_score_correction_bias.dtype == torch.float32
    assert m.load_since_update.dtype == torch.float32
    y = m(torch.randn(2, 8, C, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert "router.e_score_correction_bias" in m.state_dict()  # saved with the weights
    assert "load_since_update" not in m.state_dict()  # bookkeeping, not a weight


def test_update_bias_moves_toward_equal_load_and_only_counts_training():
    cfg = _cfg("sigmoid_v3", None, bias_update_rate=0.01)
    m = MoE(cfg, C)
    m.eval()
    m(torch.randn(2, 8, C))
    assert m.load_since_update.sum() == 0  # eval forwards do not count
    m.train()
    m(torch.randn(2, 8, C))
    load = m.load_since_update.clone()
    assert load.sum() == 2 * 8 * 2
    before = m.router.e_score_correction_bias.clone()
    m.update_bias()
    step = m.router.e_score_correction_bias - before
    assert torch.equal(step, 0.01 * torch.sign(load.mean() - load))
    assert m.load_since_update.sum() == 0
    m_off = MoE(_cfg("softmax_topk", None), C)
    m_off.update_bias()  # no-op without aux-loss-free balancing


def test_capacity_drops_tokens_in_training_only():
    """At inference a token's experts may not depend on its batch-mates (cached decoding)."""
    import archlab

    cfg = archlab.presets.get("switch-style-debug")
    model = archlab.build(cfg)
    ids = torch.randint(0, cfg.vocab_size, (4, 16))
    model.train()
    model(ids)
    moes = [m for m in model.modules() if type(m).__name__ == "MoE"]
    assert any(float(m.stats["dropped_fraction"]) > 0 for m in moes) or all(m.cfg.capacity_factor for m in moes)
    model.eval()
    with torch.no_grad():
        full = model(ids)
        one = torch.cat([model(ids[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(full, one, atol=1e-5, rtol=1e-4)

"""Pads of a left-padded batch have no say in an MoE layer: they take no expert capacity, are never
chosen over a real token by expert choice, and count in no balancing loss or statistic. Changing
what the pads hold changes nothing for the real tokens."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab.moe import MoE, MoEConfig
from archlab.moe.balancing import balance_loss, z_loss
from archlab.moe.capacity import keep_within_capacity

C = 16
ROUTERS = {
    "softmax_topk": dict(router="softmax_topk", capacity_factor=0.75),
    "topk_softmax": dict(router="topk_softmax", capacity_factor=0.75),
    "sigmoid": dict(router="sigmoid", correction_bias=True, norm_topk_prob=True, capacity_factor=0.75),
    "expert_choice": dict(router="expert_choice", capacity_factor=1.0),
    "hash": dict(router="hash", capacity_factor=0.75),
}
LOSSES = dict(load_balance_coef=0.01, seq_balance_coef=0.001, z_loss_coef=0.001)


def test_pads_take_no_capacity():
    # tokens 0-1 are pads that would fill expert 0's single slot before the real token 2
    selected = torch.tensor([[0], [0], [0], [1]])
    valid = torch.tensor([False, False, True, True])
    assert keep_within_capacity(selected, 1, 2).view(-1).tolist() == [True, False, False, True]
    assert keep_within_capacity(selected, 1, 2, valid).view(-1).tolist() == [False, False, True, True]


def _moe(router, **over):
    torch.manual_seed(0)
    losses = LOSSES if router not in ("expert_choice", "hash") else {}  # balance losses need a learned token choice
    cfg = MoEConfig(num_experts=8, top_k=2, expert_hidden=8, shared_experts=1, **ROUTERS[router], **{**losses, **over})
    m = MoE(cfg, C, layer_idx=1).train()
    if hasattr(m.router, "weight"):
        with torch.no_grad():
            m.router.weight.mul_(20.0)  # uneven routing: capacity binds
    return m


def _padded_batch(seed, B=3, T=12):
    """x [B, T, C], token ids and the mask of a left-padded batch (rows with 5, 0 and 9 pads)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=g)
    ids = torch.randint(0, 100, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, :5] = False
    mask[2, :9] = False
    return x, ids, mask


@pytest.mark.parametrize("router", list(ROUTERS))
def test_what_pads_hold_changes_nothing(router):
    m = _moe(router)
    x, ids, mask = _padded_batch(1)
    B, T = mask.shape
    runs = []
    for seed in (2, 3):  # two different fillings of the pads
        gg = torch.Generator().manual_seed(seed)
        xp = torch.where(mask[..., None], x, torch.randn(B, T, C, generator=gg) * 5)
        idp = torch.where(mask, ids, torch.randint(0, 100, (B, T), generator=gg))
        y = m(xp, token_ids=idp, mask=mask)
        runs.append((y[mask], m.aux_loss, m.stats))
    (y0, a0, s0), (y1, a1, s1) = runs
    torch.testing.assert_close(y0, y1)
    torch.testing.assert_close(a0, a1)
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], msg=lambda msg, k=k: f"stats[{k}]: {msg}")
    assert a0 > 0 or router in ("expert_choice", "hash")


@pytest.mark.parametrize("router", ["softmax_topk", "sigmoid", "hash"])
def test_padded_batch_routes_as_its_real_tokens_alone(router):
    """Capacity is the real tokens' share: the padded batch keeps and drops exactly what one row
    of its real tokens (in the same order) would."""
    m = _moe(router, **({} if router == "hash" else {"seq_balance_coef": 0.0}))  # per row by definition
    x, ids, mask = _padded_batch(4)
    y = m(x, token_ids=ids, mask=mask)[mask]
    aux, stats = m.aux_loss, m.stats
    y_alone = m(x[mask][None], token_ids=ids[mask][None])[0]
    torch.testing.assert_close(y, y_alone)
    torch.testing.assert_close(aux, m.aux_loss)
    for k in stats:
        torch.testing.assert_close(stats[k], m.stats[k], msg=lambda msg, k=k: f"stats[{k}]: {msg}")
    assert stats["dropped_fraction"] > 0  # the capacity binds


def test_losses_count_real_tokens_only():
    g = torch.Generator().manual_seed(0)
    B, T, E, K = 2, 6, 4, 2
    probs = torch.rand(B, T, E, generator=g).softmax(-1)
    selected = torch.rand(B, T, E, generator=g).topk(K, dim=-1).indices
    logits = torch.randn(B * T, E, generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, :4] = False
    per_row = [balance_loss(probs[b][valid[b]][None], selected[b][valid[b]][None]) for b in range(B)]
    torch.testing.assert_close(balance_loss(probs, selected, valid), torch.stack(per_row).mean())
    flat = valid.view(-1)
    torch.testing.assert_close(balance_loss(probs.view(1, -1, E), selected.view(1, -1, K), flat[None]),
                               balance_loss(probs.view(-1, E)[flat][None], selected.view(-1, K)[flat][None]))
    torch.testing.assert_close(z_loss(logits, flat), z_loss(logits[flat]))
    valid[1] = False  # a row of pads only is left out of the mean
    torch.testing.assert_close(balance_loss(probs, selected, valid), per_row[0])


def test_model_padded_training_step_ignores_the_pads():
    cfg = archlab.presets.get("llama-3-debug").replace(
        plan={"pattern": "E"}, moe={"num_experts": 4, "top_k": 2, "expert_hidden": 16, "capacity_factor": 0.75,
                                    "load_balance_coef": 0.01})
    torch.manual_seed(0)
    model = archlab.build(cfg).train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (2, 10), generator=g)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :6] = False
    outs = []
    for seed in (2, 3):
        noise = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(seed))
        logits = model(torch.where(mask, ids, noise), attention_mask=mask)
        aux = sum(m.aux_loss for m in model.modules() if isinstance(m, MoE))
        outs.append((logits[mask], aux))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])

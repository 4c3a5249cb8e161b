"""Router semantics on small hand-checkable inputs, and capacity dropping."""
from __future__ import annotations

import torch

from archlab.moe import MoEConfig
from archlab.moe.capacity import expert_capacity, keep_within_capacity
from archlab.moe.routers import Router


def _router(logits: torch.Tensor, **kw) -> Router:
    """A router whose logits equal ``logits`` for one-hot inputs x = e_n."""
    N, E = logits.shape
    cfg = MoEConfig(num_experts=E, expert_hidden=4, **{"top_k": 2, **kw})
    r = Router(cfg, d_model=N)
    with torch.no_grad():
        r.weight.copy_(logits.t())  # [E, N]: row e is expert e's logit for each token
    return r


LOGITS = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 2.5, 0.1], [1.2, 1.0, 4.0, 0.0]])
X = torch.eye(3)


def _by_token(r, K=2):
    return r.expert_idx.view(-1, K), r.weight.view(-1, K)


def test_softmax_then_topk_with_and_without_renormalisation():
    p = LOGITS.softmax(-1)
    idx, w = _by_token(_router(LOGITS)(X))
    assert idx[:, 0].tolist() == [0, 1, 2] and idx[:, 1].tolist() == [1, 2, 0]
    torch.testing.assert_close(w, p.gather(1, idx))
    idx, w = _by_token(_router(LOGITS, norm_topk_prob=True, routed_scaling_factor=2.0)(X))
    torch.testing.assert_close(w.sum(-1), torch.full((3,), 2.0))


def test_topk_then_softmax_weights_sum_to_one():
    idx, w = _by_token(_router(LOGITS, router="topk_softmax")(X))
    torch.testing.assert_close(w, LOGITS.gather(1, idx).softmax(-1))


def test_sigmoid_bias_changes_choice_not_weight():
    r = _router(LOGITS, router="sigmoid", correction_bias=True)
    r.e_score_correction_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))  # expert 3 always chosen
    idx, w = _by_token(r(X))
    assert (idx == 3).any(-1).all()
    torch.testing.assert_close(w, LOGITS.sigmoid().gather(1, idx))  # weights ignore the bias


def test_group_limited_routing_stays_in_best_groups():
    logits = torch.tensor([[5.0, 0.0, 4.6, 4.7, 0.0, 0.0]])  # groups {0,1} {2,3} {4,5}
    r = _router(logits, n_group=3, topk_group=1, group_score="max")
    assert sorted(r(torch.eye(1)).expert_idx.tolist()) == [0, 1]  # best single expert's group
    r = _router(logits, n_group=3, topk_group=1, group_score="top2_sum")
    assert sorted(r(torch.eye(1)).expert_idx.tolist()) == [2, 3]  # best pair's group


def test_expert_choice_each_expert_takes_its_top_tokens():
    r = _router(LOGITS, router="expert_choice", capacity_factor=1.0, top_k=1)
    out = r(X)  # capacity ceil(1 * 1 * 3 / 4) = 1 token per expert
    p = LOGITS.softmax(-1)
    assert out.expert_idx.tolist() == [0, 1, 2, 3]
    assert out.token_idx.tolist() == p.argmax(0).tolist()
    torch.testing.assert_close(out.weight, p.max(0).values)
    served = set(out.token_idx.tolist())
    torch.testing.assert_close(out.dropped_fraction, torch.tensor(1 - len(served) / 3))


def test_jitter_only_in_training():
    r = _router(LOGITS, router_jitter=0.5)
    r.eval()
    torch.testing.assert_close(r.logits(X), LOGITS)
    r.train()
    assert not torch.allclose(r.logits(X), LOGITS)


def test_capacity_keeps_first_choices_first():
    selected = torch.tensor([[0, 1], [0, 1], [0, 2], [1, 0]])  # expert 0 wanted 4 times
    keep = keep_within_capacity(selected, capacity=2, num_experts=3)
    # expert 0: first choices of tokens 0, 1 kept, token 2's first and token 3's second dropped;
    # expert 1: token 3's first choice outranks the second choices, so token 1's second is dropped
    assert keep.tolist() == [[True, True], [True, False], [False, True], [True, False]]
    assert expert_capacity(1.0, 10, 2, 4) == 5 and expert_capacity(1.25, 10, 2, 4) == 7
    assert expert_capacity(100.0, 10, 2, 4) == 10

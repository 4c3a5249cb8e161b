"""Analytic counts equal the module's parameters and reproduce published model sizes."""
from __future__ import annotations

import pytest
import torch

from archlab.moe import MoE, MoEConfig, active_params, flops_per_token, params

MIXTRAL_8X7B = MoEConfig(num_experts=8, top_k=2, expert_hidden=14336, router="softmax_topk", norm_topk_prob=True)
OLMOE_1B_7B = MoEConfig(num_experts=64, top_k=8, expert_hidden=1024)
QWEN2_57B_A14B = MoEConfig(num_experts=64, top_k=8, expert_hidden=2560, shared_experts=1,
                           shared_expert_hidden=20480, shared_gate=True)
DEEPSEEK_V3 = MoEConfig(num_experts=256, top_k=8, expert_hidden=2048, router="sigmoid", n_group=8, topk_group=4,
                        group_score="top2_sum", correction_bias=True, norm_topk_prob=True,
                        routed_scaling_factor=2.5, shared_experts=1)
PUBLISHED = {"mixtral": (MIXTRAL_8X7B, 4096), "olmoe": (OLMOE_1B_7B, 2048),
             "qwen2-57b": (QWEN2_57B_A14B, 3584), "deepseek-v3": (DEEPSEEK_V3, 7168)}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_params_equal_module_numel_at_published_sizes(name):
    cfg, d = PUBLISHED[name]
    with torch.device("meta"):  # no memory: Qwen2-57B's layer alone is 2e9 parameters
        m = MoE(cfg, d, layer_idx=0)
    assert params(cfg, d) == sum(p.numel() for p in m.parameters())
    assert MoE.params(cfg, d) == params(cfg, d)


@pytest.mark.parametrize(
    "extra",
    [dict(expert_kind="mlp"), dict(router="hash"), dict(shared_experts=3, shared_expert_hidden=5),
     dict(shared_experts=2, shared_gate=True, expert_kind="geglu"), dict(correction_bias=True)],
)
def test_params_equal_module_numel_small(extra):
    cfg = MoEConfig(num_experts=6, top_k=2, expert_hidden=7, **extra)
    m = MoE(cfg, 10)
    assert params(cfg, 10) == sum(p.numel() for p in m.parameters())


def test_mixtral_8x7b_whole_model_totals():
    """Mixtral-8x7B: 46,702,792,704 parameters, 12,879,925,248 active (router included)."""
    cfg, C = PUBLISHED["mixtral"]
    L, V, kv = 32, 32000, 1024
    attention = 2 * C * C + 2 * C * kv  # q, o and grouped k, v projections
    rest = L * attention + 2 * V * C + (2 * L + 1) * C  # + untied embeddings/head + RMSNorm weights
    assert rest + L * params(cfg, C) == 46_702_792_704
    assert rest + L * active_params(cfg, C) == 12_879_925_248


def test_moe_part_of_published_models():
    # each term written out from the published shapes: router + experts (+ shared (+ gate))
    cfg, C = PUBLISHED["olmoe"]
    assert params(cfg, C) == 64 * C + 64 * 3 * C * 1024
    assert active_params(cfg, C) == 64 * C + 8 * 3 * C * 1024
    cfg, C = PUBLISHED["qwen2-57b"]
    shared = 3 * C * 20480 + C
    assert params(cfg, C) == 64 * C + 64 * 3 * C * 2560 + shared == 1_982_041_600
    assert active_params(cfg, C) == 64 * C + 8 * 3 * C * 2560 + shared
    cfg, C = PUBLISHED["deepseek-v3"]
    assert params(cfg, C) == 256 * C + 257 * 3 * C * 2048 == 11_320_164_352
    assert active_params(cfg, C) == 256 * C + 9 * 3 * C * 2048 == 398_196_736


def test_flops_per_token():
    for cfg, C in PUBLISHED.values():
        assert flops_per_token(cfg, C) == 2 * active_params(cfg, C)  # every active weight is one MAC
    ec = MoEConfig(num_experts=8, top_k=2, expert_hidden=16, router="expert_choice", capacity_factor=1.5)
    assert flops_per_token(ec, 32) == 2 * (8 * 32 + 2 * 1.5 * 3 * 32 * 16)
    hashed = MoEConfig(num_experts=8, top_k=1, expert_hidden=16, router="hash")
    assert flops_per_token(hashed, 32) == 2 * 3 * 32 * 16  # no router

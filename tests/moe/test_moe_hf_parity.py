"""Our MoE equals transformers' MoE blocks after a renaming of the weights (float32, CPU, offline).

Each block is built from its config class, every parameter and the correction-bias buffer is
redrawn (a fresh block has uninitialised experts and a zero bias, which would hide mapping bugs),
the state dict is renamed into ours, and outputs and input gradients are compared.
"""
from __future__ import annotations

import copy

import pytest
import torch

from archlab.moe import MoE, MoEConfig

transformers = pytest.importorskip("transformers")

C, I = 32, 16  # hidden and expert width: multiples of 4 so the CPU grouped_mm path runs in float32


def _perturb(block: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in block.named_parameters():
            scale = 1.0 if "gate.weight" in name else 0.3  # a router spread wide enough to route unevenly
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for name, b in block.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)


def _rename(name: str) -> str:
    return name.replace("gate.", "router.", 1).replace("shared_expert.", "shared_experts.", 1) \
        if name.startswith(("gate.", "shared_expert.")) else name


def _compare(hf_block: torch.nn.Module, cfg: MoEConfig, dispatch: str, seed: int) -> MoE:
    hf_block.eval()
    _perturb(hf_block, seed)
    ours = MoE(cfg.replace(dispatch=dispatch), C, layer_idx=0).eval()
    state = {_rename(k): v for k, v in hf_block.state_dict().items()}
    missing, unexpected = ours.load_state_dict(state, strict=True), None
    assert not missing.missing_keys and not missing.unexpected_keys, (missing, unexpected)
    x = torch.randn(2, 7, C, generator=torch.Generator().manual_seed(seed + 1))
    x_hf, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_hf, y_ours = hf_block(x_hf), ours(x_ours)
    y_hf = y_hf[0] if isinstance(y_hf, tuple) else y_hf
    torch.testing.assert_close(y_ours, y_hf)
    w = torch.randn_like(y_hf)
    (g_hf,) = torch.autograd.grad((y_hf * w).sum(), x_hf)
    (g_ours,) = torch.autograd.grad((y_ours * w).sum(), x_ours)
    torch.testing.assert_close(g_ours, g_hf)
    return ours


DISPATCH = ["reference", "grouped_mm", "bmm"]


@pytest.mark.parametrize("dispatch", DISPATCH)
@pytest.mark.parametrize("norm", [False, True])
def test_olmoe(dispatch, norm):
    from transformers.models.olmoe.modeling_olmoe import OlmoeConfig, OlmoeSparseMoeBlock

    hf_cfg = OlmoeConfig(hidden_size=C, intermediate_size=I, num_experts=8, num_experts_per_tok=3,
                         norm_topk_prob=norm, hidden_act="silu")
    cfg = MoEConfig(num_experts=8, top_k=3, expert_hidden=I, router="softmax_topk", norm_topk_prob=norm)
    _compare(OlmoeSparseMoeBlock(copy.deepcopy(hf_cfg)), cfg, dispatch, seed=1)


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_mixtral(dispatch):
    from transformers.models.mixtral.modeling_mixtral import MixtralConfig, MixtralSparseMoeBlock

    hf_cfg = MixtralConfig(hidden_size=C, intermediate_size=I, num_local_experts=4, num_experts_per_tok=2,
                           router_jitter_noise=0.0, hidden_act="silu")
    cfg = MoEConfig(num_experts=4, top_k=2, expert_hidden=I, router="softmax_topk", norm_topk_prob=True)
    _compare(MixtralSparseMoeBlock(copy.deepcopy(hf_cfg)), cfg, dispatch, seed=2)


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_qwen2_moe_shared_expert_with_sigmoid_gate(dispatch):
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeConfig, Qwen2MoeSparseMoeBlock

    hf_cfg = Qwen2MoeConfig(hidden_size=C, moe_intermediate_size=I, shared_expert_intermediate_size=48,
                            num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, hidden_act="silu")
    cfg = MoEConfig(num_experts=8, top_k=2, expert_hidden=I, router="softmax_topk", shared_experts=1,
                    shared_expert_hidden=48, shared_gate=True)
    _compare(Qwen2MoeSparseMoeBlock(copy.deepcopy(hf_cfg)), cfg, dispatch, seed=3)


def _deepseek_v3_cfg(n_shared: int) -> MoEConfig:
    return MoEConfig(num_experts=16, top_k=4, expert_hidden=I, router="sigmoid", n_group=4, topk_group=2,
                     group_score="top2_sum", correction_bias=True, norm_topk_prob=True,
                     routed_scaling_factor=2.5, shared_experts=n_shared)


@pytest.mark.parametrize("dispatch", DISPATCH)
def test_deepseek_v3_groups_bias_scaling(dispatch):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Config, DeepseekV3MoE

    hf_cfg = DeepseekV3Config(hidden_size=C, intermediate_size=64, moe_intermediate_size=I, n_routed_experts=16,
                              num_experts_per_tok=4, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                              norm_topk_prob=True, n_shared_experts=2, hidden_act="silu")
    ours = _compare(DeepseekV3MoE(copy.deepcopy(hf_cfg)), _deepseek_v3_cfg(2), dispatch, seed=4)
    # the perturbed correction bias must change the choice, or the test would not cover it
    x = torch.randn(2, 7, C, generator=torch.Generator().manual_seed(5))
    y = ours(x)
    ours.router.e_score_correction_bias.zero_()
    assert not torch.allclose(ours(x), y)


def test_deepseek_v2_group_limited_greedy():
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Config, DeepseekV2Moe

    hf_cfg = DeepseekV2Config(hidden_size=C, intermediate_size=64, moe_intermediate_size=I, n_routed_experts=16,
                              num_experts_per_tok=3, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                              routed_scaling_factor=1.5, n_shared_experts=1, hidden_act="silu")
    cfg = MoEConfig(num_experts=16, top_k=3, expert_hidden=I, router="softmax_topk", n_group=4, topk_group=2,
                    group_score="max", routed_scaling_factor=1.5, shared_experts=1)
    _compare(DeepseekV2Moe(copy.deepcopy(hf_cfg)), cfg, "auto", seed=6)

"""Conformance of the mixture-of-experts families (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2,
DeepSeek-V3), in float32 on the CPU, offline: logits, gradients, greedy cached decoding against
transformers' ``generate``, and the ``to_hf`` / ``from_hf(dir)`` round trip (see conformance.py).

Every parameter is perturbed by N(0, 0.2), so router logits spread by ~1 and near-ties between
experts (which float rounding could flip) are unlikely; DeepSeek-V3's correction bias is a buffer,
redrawn here so that it changes which experts are chosen. Capacity never drops tokens at inference.
"""
from __future__ import annotations

import json

import pytest
import torch

from conformance import build_hf, check_conformance

transformers = pytest.importorskip("transformers")

V = 97
BASE = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64)
QWEN = dict(BASE, intermediate_size=48, moe_intermediate_size=16, num_experts=8, num_experts_per_tok=2)
DEEPSEEK = dict(BASE, num_key_value_heads=4, intermediate_size=48, moe_intermediate_size=16, n_routed_experts=8,
                num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=None,
                qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8)
ROPE = {"rope_parameters": {"rope_type": "default", "rope_theta": 500.0}}

# name -> (transformers config class name, kwargs, archlab.interop family)
CASES = {
    "mixtral": ("MixtralConfig", dict(BASE, intermediate_size=16, num_local_experts=4, num_experts_per_tok=2,
                                      sliding_window=5, **ROPE), "mixtral"),
    # layer 1 of 3 has experts (decoder_sparse_step=2); layer 0 full attention, layers 1-2 sliding
    "qwen2_moe_step": ("Qwen2MoeConfig", dict(QWEN, num_hidden_layers=3, decoder_sparse_step=2, shared_expert_intermediate_size=24,
                                              use_sliding_window=True, sliding_window=5,
                                              layer_types=["full_attention", "sliding_attention", "sliding_attention"]),
                       "qwen2_moe"),
    # layer 0 dense by mlp_only_layers, renormalised top-k, no q/k/v biases
    "qwen2_moe_mlp_only": ("Qwen2MoeConfig", dict(QWEN, num_hidden_layers=3, mlp_only_layers=[0], norm_topk_prob=True,
                                                  shared_expert_intermediate_size=40, qkv_bias=False), "qwen2_moe"),
    # head_dim 16 != hidden / heads = 8, biases on q/k/v/o, per-head QK-norm, one sliding window
    "qwen3_moe": ("Qwen3MoeConfig", dict(QWEN, head_dim=16, attention_bias=True, norm_topk_prob=True, use_sliding_window=True,
                                         sliding_window=6), "qwen3_moe"),
    "olmoe": ("OlmoeConfig", dict(BASE, intermediate_size=16, num_experts=8, num_experts_per_tok=3, **ROPE), "olmoe"),
    "olmoe_geglu_norm": ("OlmoeConfig", dict(BASE, intermediate_size=16, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                                             hidden_act="gelu_pytorch_tanh"), "olmoe"),
    # MLA without a query bottleneck; layer 0 dense; group-limited greedy routing; DeepSeek's YaRN with
    # mscale != mscale_all_dim, so both the cos/sin factor and the softmax scale differ from 1
    "deepseek_v2": ("DeepseekV2Config", dict(DEEPSEEK, n_shared_experts=2, topk_method="group_limited_greedy", n_group=4,
                                             topk_group=2, num_experts_per_tok=3, routed_scaling_factor=1.5, rope_parameters={
                                                 "rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0,
                                                 "original_max_position_embeddings": 16, "mscale": 0.707,
                                                 "mscale_all_dim": 1.0}), "deepseek_v2"),
    "deepseek_v2_q_lora": ("DeepseekV2Config", dict(DEEPSEEK, q_lora_rank=12, attention_bias=True, num_hidden_layers=3,
                                                    first_k_dense_replace=2, **ROPE), "deepseek_v2"),
    # correction bias (redrawn below), 4 groups of 2 experts scored by their top-2 sum, the best 2 kept
    "deepseek_v3": ("DeepseekV3Config", dict(DEEPSEEK, q_lora_rank=12, n_group=4, topk_group=2, num_experts_per_tok=3,
                                             routed_scaling_factor=2.5, norm_topk_prob=True, **ROPE), "deepseek_v3"),
    # RoPE on halves (rope_interleave=False), unnormalised sigmoid weights, no query bottleneck, no dense layer
    "deepseek_v3_halves": ("DeepseekV3Config", dict(DEEPSEEK, n_group=2, topk_group=1, norm_topk_prob=False,
                                                    first_k_dense_replace=0, rope_interleave=False, **ROPE), "deepseek_v3"),
}


def _redraw_correction_bias(hf) -> None:
    """A fresh model's correction bias is 0 and is a buffer, which conformance.perturb leaves alone."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, b in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("case", list(CASES))
def test_moe_family_conformance(case, tmp_path):
    cls_name, kwargs, model_type = CASES[case]
    hf = build_hf(cls_name, kwargs)
    _redraw_correction_bias(hf)
    check_conformance(hf, model_type, V, tmp_path)

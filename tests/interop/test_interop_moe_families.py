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
}


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
    check_conformance(hf, model_type, V, tmp_path)

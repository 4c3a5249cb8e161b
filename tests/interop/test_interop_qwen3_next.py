"""Conformance of transformers' Qwen3-Next (Gated DeltaNet + gated attention hybrid with a MoE), in
float32 on the CPU, offline: logits, gradients, greedy cached decoding against transformers'
``generate``, and the ``to_hf`` / ``from_hf(dir)`` round trip (see conformance.py). transformers runs
its pure-PyTorch Gated DeltaNet and causal conv here (no fla / causal-conv1d kernels on the CPU)."""
from __future__ import annotations

import json

import pytest
import torch

import archlab
from archlab.interop import Unsupported, from_hf_config, to_hf_config
from conformance import build_hf, check_conformance

transformers = pytest.importorskip("transformers")

V = 97
TINY = dict(
    vocab_size=V, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
    intermediate_size=48, max_position_embeddings=64,
    rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5},
    # layers: linear + MoE, attention + MoE, linear + MLP, attention + MLP (plan letters X E L A)
    layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"], mlp_only_layers=[2, 3],
    linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=6, linear_conv_kernel_dim=3,
    num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24, norm_topk_prob=True,
)


def test_qwen3_next_conformance(tmp_path):
    hf = build_hf("Qwen3NextConfig", TINY)
    check_conformance(hf, "qwen3_next", V, tmp_path, prompt_len=5, new_tokens=7, seq_len=13)
    cfg = archlab.interop.from_hf(hf).cfg
    assert cfg.plan.pattern == "XELA"
    assert cfg.linear.key_heads == 2 and cfg.attention.output_gate == "sigmoid" and cfg.attention.qk_norm_unit_offset
    # files hold one tensor per expert (transformers fuses them on load); the MTP head is skipped
    index = tmp_path / "hf" / "model.safetensors"
    assert index.exists()
    from safetensors import safe_open

    with safe_open(index, "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.experts.3.down_proj.weight" in keys and "model.layers.0.mlp.experts.down_proj" not in keys


def test_decoder_sparse_step_and_tied_head(tmp_path):
    """MoE every second layer by decoder_sparse_step, q/k heads equal to value heads, no partial rotary
    (Qwen3-Next's own default of 0.25 must not creep in on export), attention biases, tied head."""
    kw = dict(TINY, num_hidden_layers=4, mlp_only_layers=[], decoder_sparse_step=2, linear_num_key_heads=4,
              attention_bias=True, tie_word_embeddings=True, norm_topk_prob=False,
              rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 1.0})
    hf = build_hf("Qwen3NextConfig", kw)
    check_conformance(hf, "qwen3_next", V, tmp_path, prompt_len=4, new_tokens=5, seq_len=9)
    cfg = archlab.interop.from_hf(hf).cfg
    assert cfg.plan.pattern == "LE" and cfg.linear.key_heads is None and cfg.position.rotary_fraction == 1.0
    saved = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert saved["rope_parameters"]["partial_rotary_factor"] == 1.0 and saved["mlp_only_layers"] == [0, 2]


def test_config_round_trip_and_refusals():
    hf_cfg = transformers.Qwen3NextConfig(**TINY)
    cfg = from_hf_config(hf_cfg)
    again = to_hf_config(cfg, "qwen3_next")
    for key in ("layer_types", "mlp_only_layers", "linear_num_key_heads", "linear_num_value_heads", "head_dim", "num_experts",
                "shared_expert_intermediate_size", "rope_parameters"):
        assert getattr(again, key) == getattr(hf_cfg, key), key
    with pytest.raises(Unsupported, match="attention.output_gate_shape"):
        to_hf_config(cfg.replace(**{"attention.output_gate_shape": "headwise"}), "qwen3_next")
    with pytest.raises(Unsupported, match="linear.kind"):
        to_hf_config(cfg.replace(**{"linear.kind": "deltanet"}), "qwen3_next")
    with pytest.raises(Unsupported, match="linear.norm_eps"):
        to_hf_config(cfg.replace(**{"linear.norm_eps": 1e-3}), "qwen3_next")
    with pytest.raises(Unsupported, match="moe.shared_gate"):
        to_hf_config(cfg.replace(**{"moe.shared_gate": False}), "qwen3_next")
    with pytest.raises(Unsupported, match="norm.unit_offset"):
        to_hf_config(cfg.replace(**{"norm.unit_offset": False}), "qwen3_next")
    fam = archlab.interop.api.family("qwen3_next")  # published checkpoints carry a multi-token-prediction head
    assert fam.ignored(fam.canonical("mtp.layers.0.mlp.gate.weight"), cfg) and not fam.ignored("model.norm.weight", cfg)
    hf_cfg.layer_types = ["sliding_attention"] * 4
    with pytest.raises(Unsupported, match="layer_types: sliding_attention"):
        from_hf_config(hf_cfg)


def test_presets_build_and_count():
    cfg = archlab.presets.get("qwen3-next-debug")
    model = archlab.build(cfg)
    assert archlab.count_params(cfg).total == sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (1, 6))
    assert model(ids).shape == (1, 6, cfg.vocab_size)
    big = archlab.presets.get("qwen3-next-80b-a3b")
    counts = archlab.count_params(big)
    assert 79e9 < counts.total < 81e9 and 3e9 < counts.active < 4e9  # "80B total, 3B active" (+0.6B embedding and head)

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


@pytest.mark.parametrize("case", list(CASES))
def test_moe_family_conformance(case, tmp_path):
    cls_name, kwargs, model_type = CASES[case]
    hf = build_hf(cls_name, kwargs)
    _redraw_correction_bias(hf)
    check_conformance(hf, model_type, V, tmp_path)


# -- checkpoint layouts and the command line --------------------------------------------------------
def _ids():
    return torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(4))


@torch.no_grad()
def test_fused_and_per_expert_directories_load_alike(tmp_path):
    """save_pretrained writes one tensor per expert; a directory holding the fused in-memory layout
    (transformers 5.x's state dict saved as is) loads to the same model."""
    import safetensors.torch

    from archlab.interop import from_hf

    cls_name, kwargs, _ = CASES["qwen2_moe_step"]
    hf = build_hf(cls_name, kwargs)
    hf.save_pretrained(tmp_path / "files")
    with open(tmp_path / "files" / "config.json") as f:
        assert json.load(f)["model_type"] == "qwen2_moe"
    (tmp_path / "fused").mkdir()
    (tmp_path / "fused" / "config.json").write_text((tmp_path / "files" / "config.json").read_text())
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert "model.layers.1.mlp.experts.gate_up_proj" in state
    safetensors.torch.save_file(state, str(tmp_path / "fused" / "model.safetensors"))
    want = hf(_ids()).logits
    for d in ("files", "fused"):
        torch.testing.assert_close(from_hf(tmp_path / d)(_ids()), want)


@torch.no_grad()
def test_exported_experts_are_per_expert_and_the_mtp_layer_is_skipped(tmp_path):
    """to_hf writes the per-expert layout of published checkpoints; DeepSeek-V3 files may carry the
    multi-token-prediction layer after the last one, which transformers does not build."""
    import safetensors.torch

    from archlab.interop import from_hf, to_hf

    cls_name, kwargs, _ = CASES["deepseek_v3"]
    hf = build_hf(cls_name, kwargs)
    _redraw_correction_bias(hf)
    to_hf(from_hf(hf), tmp_path / "out")
    state = safetensors.torch.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in state and "model.layers.1.mlp.experts.down_proj" not in state
    torch.testing.assert_close(state["model.layers.1.mlp.gate.e_score_correction_bias"],
                               hf.model.layers[1].mlp.gate.e_score_correction_bias)
    state["model.layers.2.eh_proj.weight"] = torch.zeros(4, 4)  # the MTP layer of a 2-layer model
    safetensors.torch.save_file(state, str(tmp_path / "out" / "model.safetensors"))
    torch.testing.assert_close(from_hf(tmp_path / "out")(_ids()), hf(_ids()).logits)
    # a bf16 load keeps the router's correction bias in float32 (its updates are ~1e-3 steps)
    bias = from_hf(tmp_path / "out", dtype=torch.bfloat16).blocks[1].ffn.router.e_score_correction_bias
    assert bias.dtype == torch.float32
    torch.testing.assert_close(bias, hf.model.layers[1].mlp.gate.e_score_correction_bias, rtol=0, atol=0)


@torch.no_grad()
def test_cli_convert_round_trips_a_mixtral_directory(tmp_path, capsys):
    from archlab.cli import main
    from archlab.interop import load_archlab

    cls_name, kwargs, _ = CASES["mixtral"]
    hf = build_hf(cls_name, kwargs)
    hf.save_pretrained(tmp_path / "hf")
    want = hf(_ids()).logits
    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "arch")]) == 0
    torch.testing.assert_close(load_archlab(tmp_path / "arch")(_ids()), want)
    assert main(["convert", "--to-hf", str(tmp_path / "arch"), "--out", str(tmp_path / "back")]) == 0
    assert "transformers mixtral" in capsys.readouterr().out
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(reloaded(_ids()).logits, want)


# -- what has no counterpart -------------------------------------------------------------------------
def test_automatic_family_choice_for_moe_presets():
    from archlab import presets
    from archlab.interop import pick_family

    picks = {n: pick_family(presets.get(n)).model_type for n in (
        "mixtral-debug", "olmoe-debug", "qwen2-moe-debug", "qwen3-moe-debug", "deepseek-debug", "deepseek-v2-lite")}
    assert picks == {"mixtral-debug": "mixtral", "olmoe-debug": "olmoe", "qwen2-moe-debug": "qwen2_moe",
                     "qwen3-moe-debug": "qwen3_moe", "deepseek-debug": "deepseek_v3", "deepseek-v2-lite": "deepseek_v2"}


@pytest.mark.parametrize("preset, over, family, match", [
    ("llama-3-debug", {}, "mixtral", "this config has no moe section"),
    ("mixtral-debug", {"plan": {"pattern": "AE"}}, "mixtral", "layer 0 has a dense FFN"),
    ("mixtral-debug", {"moe.shared_experts": 1}, "mixtral", "moe.shared_experts=1"),
    ("mixtral-debug", {"moe.router": "topk_softmax", "moe.norm_topk_prob": False}, "mixtral", "moe.router='topk_softmax'"),
    ("olmoe-debug", {"moe.expert_kind": "mlp", "moe.activation": "gelu"}, "olmoe", "moe.expert_kind='mlp'"),
    ("qwen2-moe-debug", {"moe.shared_gate": False}, "qwen2_moe", "moe.shared_gate=False"),
    ("qwen2-moe-debug", {"plan": {"pattern": "AE", "letters": {"E": {"ffn": "moe", "set": {"moe.top_k": 1}}}}},
     "qwen2_moe", "layer 1 overrides moe"),
    ("qwen3-moe-debug", {"ffn.kind": "geglu", "plan": {"pattern": "AE"}}, "qwen3_moe", "one hidden_act"),
    ("deepseek-debug", {"plan": {"pattern": "EA"}}, "deepseek_v3", "dense layers must come first"),
    ("deepseek-debug", {"moe.router": "softmax_topk", "moe.correction_bias": False, "moe.norm_topk_prob": True},
     "deepseek_v2", "moe.norm_topk_prob=True"),
    ("deepseek-debug", {"moe.group_score": "max"}, "deepseek_v3", "moe.group_score='max'"),
    ("deepseek-debug", {"moe.shared_expert_hidden": 48}, "deepseek_v3", "moe.shared_expert_hidden=48"),
])
def test_moe_configs_without_a_counterpart_name_the_component(preset, over, family, match):
    from archlab import presets
    from archlab.interop import Unsupported, to_hf_config

    with pytest.raises(Unsupported, match=match.replace("(", r"\(").replace(".", r"\.")):
        to_hf_config(presets.get(preset, **over), family)


@pytest.mark.parametrize("cls_name, kwargs, match", [
    ("OlmoeConfig", dict(BASE, intermediate_size=16, num_experts=4, num_experts_per_tok=2, clip_qkv=8.0), "clip_qkv"),
    ("DeepseekV2Config", dict(DEEPSEEK, topk_method="noaux_tc"), "topk_method: 'noaux_tc'"),
    ("DeepseekV2Config", dict(DEEPSEEK, num_key_value_heads=2), "num_key_value_heads: 2"),
    ("DeepseekV2Config", dict(DEEPSEEK, mlp_bias=True), "mlp_bias"),
    ("Qwen2MoeConfig", dict(QWEN, mlp_only_layers=[0, 1], shared_expert_intermediate_size=8), "no layer"),
])
def test_transformers_configs_without_a_counterpart_name_the_key(cls_name, kwargs, match):
    from archlab.interop import Unsupported, from_hf_config

    with pytest.raises(Unsupported, match=match):
        from_hf_config(getattr(transformers, cls_name)(**kwargs))

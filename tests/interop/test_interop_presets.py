"""Presets against transformers: parameter counts on the meta device, and the config mapping.

For every preset a transformers family can express, ``to_hf_config`` derives the transformers
config, transformers builds the model on the meta device (no memory), and its parameter count
must equal ``archlab.count_params``.
"""
from __future__ import annotations

import copy

import pytest
import torch

import archlab
from archlab import presets
from archlab.interop import Unsupported, from_hf_config, to_hf_config

transformers = pytest.importorskip("transformers")

# presets whose family interop supports: refusing one of these is a bug, not a skip
MUST = {
    "gpt2-124m", "llama-3-8b", "llama-3-70b", "llama-3.2-1b", "mistral-7b", "qwen3-8b", "olmo-2-7b", "gemma-2-9b",
    "bloom-7b1", "pythia-6.9b", "gpt-neox-20b", "qwen2-0.5b", "qwen2-7b", "qwen2-72b", "phi-3-mini-4k",
    "phi-3-medium-4k", "gpt-j-6b",
    "mixtral-8x7b", "olmoe-1b-7b", "qwen2-57b-a14b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v2-lite", "deepseek-v3",
    "qwen3-next-80b-a3b",
    "mamba-130m", "mamba-370m", "mamba-790m", "mamba-1.4b", "mamba-2.8b", "mamba2-130m", "mamba2-370m",
    "mamba2-780m", "mamba2-1.3b", "mamba2-2.7b", "jamba-v0.1",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hf_count(hf_cfg) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(hf_cfg))
    return sum(p.numel() for p in model.parameters())  # tied weights once


@pytest.mark.parametrize("name", presets.names())
def test_preset_count_equals_transformers(name):
    cfg = presets.get(name)
    try:
        hf_cfg = to_hf_config(cfg)
    except Unsupported as e:
        assert name not in MUST, f"{name} should map to transformers: {e}"
        pytest.skip(f"no transformers family in interop: {str(e).splitlines()[1].strip()}")
    assert hf_count(hf_cfg) == archlab.count_params(cfg).total


@pytest.mark.parametrize("name, model_type", [("phi-3-mini-4k", "phi3"), ("llama-3-8b", "mistral")])
def test_preset_count_in_a_named_family(name, model_type):
    """A preset several families express counts the same in each (auto picks the first)."""
    cfg = presets.get(name)
    assert hf_count(to_hf_config(cfg, model_type)) == archlab.count_params(cfg).total


@pytest.mark.parametrize("name", [n for n in presets.names() if n.endswith("-debug")])
def test_config_mapping_is_a_fixed_point(name):
    """archlab -> transformers -> archlab keeps the architecture: same parameter names and shapes,
    and mapping again gives the same transformers config."""
    cfg = presets.get(name)
    try:
        hf_cfg = to_hf_config(cfg)
    except Unsupported:
        pytest.skip("no transformers family in interop")
    back = from_hf_config(hf_cfg)
    shapes = lambda c: {k: tuple(v.shape) for k, v in archlab.build(c, device="meta").state_dict().items()}  # noqa: E731
    assert shapes(back) == shapes(cfg)
    again = to_hf_config(back, hf_cfg.model_type)
    assert again.to_dict() == hf_cfg.to_dict()


def test_pad_token_outside_a_small_vocabulary_is_dropped_and_overrides_apply():
    cfg = presets.get("phi-3-debug")
    hf_cfg = to_hf_config(cfg, "phi3")  # Phi-3's default pad id 32000 would break a 256-token embedding
    assert hf_cfg.pad_token_id is None
    assert to_hf_config(cfg, "phi3", pad_token_id=3, eos_token_id=7).eos_token_id == 7
    with pytest.raises(Unsupported, match="no field pad_id"):
        to_hf_config(cfg, "phi3", pad_id=3)  # transformers would store it silently


@pytest.mark.parametrize("over, family, match", [
    ({"attention.softcap": 5.0}, None, "attention.softcap=5.0"),
    ({"position.kind": "t5"}, None, "position.kind='t5'"),
    ({"norm.placement": "post"}, None, "norm.placement='post'"),
    ({"attention.sinks": 2, "attention.window": 4}, None, "attention.sinks=2"),
    ({"attention.qk_norm": "head"}, "llama", "attention.qk_norm='head'"),
    ({"attention.window": 4}, "llama", "attention.window=4"),
    ({"position.scaling.kind": "ntk", "position.scaling.factor": 2.0}, "llama", "position.scaling.kind='ntk'"),
    ({"attention.scale": 0.3}, "llama", "attention.scale=0.3"),
    ({"attention.out_bias": True}, "llama", "attention.out_bias=True"),
    ({"position.rotary_fraction": 0.5}, "llama", "position.rotary_fraction=0.5"),
    ({"position.scaling.kind": "yarn", "position.scaling.factor": 4.0, "position.scaling.mscale": 1.0,
      "position.scaling.mscale_all_dim": 1.0, "position.max_positions": 64}, "llama", "position.scaling.mscale_all_dim=1.0"),
    ({"head_bias": True, "tie_embeddings": False}, "llama", "head_bias=True"),
])
def test_configs_without_a_counterpart_name_the_component(over, family, match):
    cfg = presets.get("llama-3-debug", **over)
    with pytest.raises(Unsupported, match=match.replace("(", r"\(").replace(".", r"\.")) as info:
        to_hf_config(cfg, family)
    if family is None:  # every family is tried and each says why not
        assert "llama:" in str(info.value) and "gpt2:" in str(info.value)


def test_per_layer_overrides_without_a_counterpart_are_refused():
    from archlab.config import LayerPlan, LayerSpec

    plan = LayerPlan(pattern="AB", letters={"B": LayerSpec(set={"ffn.hidden": 64})})
    with pytest.raises(Unsupported, match=r"layer 1 overrides ffn\.hidden"):
        to_hf_config(presets.get("llama-3-debug", plan=plan), "llama")
    # per-layer windows are what Gemma-2 and Qwen express with layer_types
    gemma = presets.get("gemma-2-debug")
    assert to_hf_config(gemma).layer_types == ["sliding_attention", "full_attention"]
    with pytest.raises(Unsupported, match="layer 0 overrides attention.window"):
        to_hf_config(gemma, "mistral")


def test_registry_and_automatic_family_choice():
    from archlab.interop import pick_family, supported_model_types

    assert set(supported_model_types()) >= {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "olmo2", "gpt2",
                                            "gpt_neox", "gptj", "bloom"}
    picks = {name: pick_family(presets.get(name)).model_type for name in (
        "llama-3-debug", "mistral-debug", "qwen2-debug", "qwen3-debug", "olmo-2-debug", "gemma-2-debug", "phi-3-debug",
        "gpt2-debug", "pythia-debug", "gpt-j-debug", "bloom-debug")}
    assert picks == {"llama-3-debug": "llama", "mistral-debug": "mistral", "qwen2-debug": "qwen2", "qwen3-debug": "qwen3",
                     "olmo-2-debug": "olmo2", "gemma-2-debug": "gemma2", "phi-3-debug": "mistral", "gpt2-debug": "gpt2",
                     "pythia-debug": "gpt_neox", "gpt-j-debug": "gptj", "bloom-debug": "bloom"}
    with pytest.raises(Unsupported, match="'rwkv' is not supported"):
        to_hf_config(presets.get("llama-3-debug"), "rwkv")

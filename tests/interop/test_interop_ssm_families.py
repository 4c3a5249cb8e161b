"""Conformance of the state-space families: Mamba, Mamba-2 and the Jamba hybrid, in float32 on the
CPU, offline (the checks are those of ``conformance.check_conformance``), and the mapping of their
configs: published presets read back unchanged, layer plans from Jamba's periods and offsets, and
the components transformers cannot express, named."""
from __future__ import annotations

import pytest

from archlab import presets
from archlab.config import LayerPlan
from archlab.interop import Unsupported, from_hf_config, to_hf_config
from conformance import build_hf, check_conformance
from hf_compat import grouped_gated_norm

transformers = pytest.importorskip("transformers")

V = 97
MAMBA = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, state_size=8, conv_kernel=4, expand=2)
JAMBA = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, mamba_d_state=8, mamba_dt_rank=4, use_mamba_kernels=False, num_experts=4,
             num_experts_per_tok=2)


# name -> (transformers config class name, kwargs, archlab.interop family)
CASES = {
    "mamba": ("MambaConfig", dict(MAMBA, time_step_rank=3, use_bias=True, layer_norm_epsilon=1e-4), "mamba"),
    "mamba_untied": ("MambaConfig", dict(MAMBA, tie_word_embeddings=False, use_conv_bias=False), "mamba"),
    "mamba2": ("Mamba2Config", dict(MAMBA, state_size=16, head_dim=8, num_heads=8, n_groups=1, chunk_size=4), "mamba2"),
    "mamba2_groups": ("Mamba2Config", dict(MAMBA, state_size=16, head_dim=8, num_heads=8, n_groups=2, chunk_size=4,
                                           use_bias=True, tie_word_embeddings=True), "mamba2"),
    # layers: 0 attention + dense, 1 Mamba + MoE, 2 Mamba + dense, 3 attention + MoE
    "jamba": ("JambaConfig", dict(JAMBA, attn_layer_period=3, attn_layer_offset=0, expert_layer_period=2,
                                  expert_layer_offset=1), "jamba"),
    # Jamba-v0.1's periods at 4 layers (attention at 2, MoE at 1 and 3), a tied head, biased projections
    "jamba_tied": ("JambaConfig", dict(JAMBA, attn_layer_period=4, attn_layer_offset=2, mamba_proj_bias=True,
                                       mamba_conv_bias=False, tie_word_embeddings=True, rms_norm_eps=1e-5), "jamba"),
}


MARKS = {"mamba2_groups": pytest.mark.xfail(not grouped_gated_norm(), strict=True,
                                             reason="this transformers' PyTorch Mamba-2 path ignores n_groups in its gated norm")}


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("case", [pytest.param(c, marks=MARKS.get(c, ())) for c in CASES])
def test_ssm_family_conformance(case, tmp_path):
    cls_name, kwargs, model_type = CASES[case]
    # the perturbed 4-layer Jamba's embedding gradients reach ~600: float32 rounding alone (either side
    # against a float64 run) is ~3e-4 on their small entries
    check_conformance(build_hf(cls_name, kwargs), model_type, V, tmp_path,
                      grad_atol=1e-3 if model_type == "jamba" else 1e-4)


PUBLISHED = ["mamba-130m", "mamba-2.8b", "mamba-debug", "mamba2-130m", "mamba2-2.7b", "mamba2-debug", "jamba-v0.1",
             "jamba-debug"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_presets_read_back_unchanged(name):
    """archlab -> transformers config -> archlab gives the preset itself, plan letters included."""
    cfg = presets.get(name)
    hf = to_hf_config(cfg)
    assert hf.model_type == name.split("-")[0]
    assert from_hf_config(hf) == cfg.replace(name=None)


def test_jamba_periods_and_offsets():
    hf = to_hf_config(presets.get("jamba-v0.1"))
    assert (hf.attn_layer_period, hf.attn_layer_offset, hf.expert_layer_period, hf.expert_layer_offset) == (8, 4, 2, 1)
    assert not hf.use_mamba_kernels
    # attention at layers 0 and 3 of 4: a period of 3, which does not divide the 4-layer pattern
    cfg = presets.get("jamba-debug", n_layers=4, **{"plan.pattern": "AnmE"})
    hf = to_hf_config(cfg)
    assert (hf.attn_layer_period, hf.attn_layer_offset, hf.expert_layer_period, hf.expert_layer_offset) == (3, 0, 2, 1)
    assert from_hf_config(hf).plan == cfg.plan
    # no MoE layer: one expert, which transformers builds as an MLP in every layer; no attention layer
    dense = presets.get("jamba-debug", n_layers=4, **{"plan.pattern": "m"})
    hf = to_hf_config(dense)
    assert hf.num_experts == 1 and hf.layers_block_type == ["mamba"] * 4
    back = from_hf_config(hf)
    assert back.moe is None and back.plan == LayerPlan(pattern="m", letters=dense.plan.letters)


def test_mamba2_time_step_limit_through_a_directory(tmp_path):
    """A finite limit, and an infinite upper end, which transformers writes as {"__float__": "Infinity"}."""
    from archlab import build
    from archlab.interop import from_hf, to_hf

    for limit in ((0.01, 0.5), (0.001, float("inf"))):
        model = build(presets.get("mamba2-debug", **{"ssm.dt_limit": limit}))
        to_hf(model, tmp_path / "hf")
        assert tuple(transformers.AutoConfig.from_pretrained(tmp_path / "hf").time_step_limit) == limit
        assert from_hf(tmp_path / "hf").cfg == model.cfg.replace(name=None)


@pytest.mark.parametrize("name, over, family, match", [
    ("mamba-debug", {"ssm.dt_bc_norm": True}, "mamba", "ssm.dt_bc_norm=True"),
    ("mamba-debug", {"position.kind": "sinusoidal"}, "mamba", "position.kind='sinusoidal'"),
    ("mamba-debug", {"norm.kind": "layernorm"}, "mamba", "norm.kind='layernorm'"),
    ("mamba-debug", {}, "mamba2", "ssm.kind='mamba'"),
    ("mamba2-debug", {"ssm.norm_eps": 1e-6}, "mamba2", "ssm.norm_eps=1e-06"),
    ("jamba-debug", {"position.kind": "rope"}, "jamba", "position.kind='rope'"),
    ("jamba-debug", {"ssm.dt_bc_norm": False}, "jamba", "ssm.dt_bc_norm=False"),
    ("jamba-debug", {"ssm.norm_eps": 1e-5}, "jamba", "ssm.norm_eps=1e-05"),
    ("jamba-debug", {"moe.norm_topk_prob": True}, "jamba", "moe.norm_topk_prob=True"),
    ("jamba-debug", {"moe.router": "sigmoid"}, "jamba", "moe.router='sigmoid'"),
    ("jamba-debug", {"moe.expert_hidden": 32}, "jamba", "moe.expert_hidden=32"),
    ("jamba-debug", {"plan.pattern": "AAmm"}, "jamba", r"attn layers \[0, 1, 4, 5\]"),
    ("jamba-debug", {"plan.pattern": "M"}, "jamba", "layer 0 is mixer='ssm', ffn='none'"),
    ("llama-3-debug", {}, "jamba", "position.kind='rope'"),
    ("llama-3-debug", {}, "mamba", "layer 0 is mixer='attention'"),
])
def test_configs_without_a_counterpart_name_the_component(name, over, family, match):
    with pytest.raises(Unsupported, match=match):
        to_hf_config(presets.get(name, **over), family)


def test_activations_other_than_silu_are_refused_on_import():
    with pytest.raises(Unsupported, match="hidden_act: 'gelu'"):
        from_hf_config(transformers.MambaConfig(**MAMBA, hidden_act="gelu"))
    with pytest.raises(Unsupported, match="hidden_act: 'gelu'"):
        from_hf_config(transformers.JambaConfig(**{**JAMBA, "hidden_act": "gelu"}))

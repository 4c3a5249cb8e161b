"""Conformance of the state-space families: Mamba, Mamba-2 and the Jamba hybrid, in float32 on the
CPU, offline (the checks are those of ``conformance.check_conformance``), and the mapping of their
configs: published presets read back unchanged, layer plans from Jamba's periods and offsets, and
the components transformers cannot express, named."""
from __future__ import annotations

import inspect

import pytest
import torch

from archlab import presets
from archlab.config import LayerPlan
from archlab.interop import Unsupported, from_hf_config, to_hf_config
from conformance import build_hf, check_conformance

transformers = pytest.importorskip("transformers")

V = 97
MAMBA = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, state_size=8, conv_kernel=4, expand=2)
JAMBA = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, mamba_d_state=8, mamba_dt_rank=4, use_mamba_kernels=False, num_experts=4,
             num_experts_per_tok=2)


def _grouped_gated_norm() -> bool:
    """transformers before 5.2x normalised Mamba-2's gated norm over all channels on its PyTorch path;
    mamba_ssm's kernels (and ours) normalise each group of channels on its own."""
    from transformers.models.mamba2 import modeling_mamba2

    return "group_size" in inspect.signature(modeling_mamba2.MambaRMSNormGated.__init__).parameters


# name -> (transformers config class name, kwargs, archlab.interop family)
CASES = {
    "mamba": ("MambaConfig", dict(MAMBA, time_step_rank=3, use_bias=True, layer_norm_epsilon=1e-4), "mamba"),
    "mamba_untied": ("MambaConfig", dict(MAMBA, tie_word_embeddings=False, use_conv_bias=False), "mamba"),
    "mamba2": ("Mamba2Config", dict(MAMBA, state_size=16, head_dim=8, num_heads=8, chunk_size=4), "mamba2"),
    "mamba2_groups": ("Mamba2Config", dict(MAMBA, state_size=16, head_dim=8, num_heads=8, n_groups=2, chunk_size=4,
                                           use_bias=True, tie_word_embeddings=True), "mamba2"),
    # layers: 0 attention + dense, 1 Mamba + MoE, 2 Mamba + dense, 3 attention + MoE
    "jamba": ("JambaConfig", dict(JAMBA, attn_layer_period=3, attn_layer_offset=0, expert_layer_period=2,
                                  expert_layer_offset=1), "jamba"),
    # Jamba-v0.1's periods at 4 layers (attention at 2, MoE at 1 and 3), a tied head, biased projections
    "jamba_tied": ("JambaConfig", dict(JAMBA, attn_layer_period=4, attn_layer_offset=2, mamba_proj_bias=True,
                                       mamba_conv_bias=False, tie_word_embeddings=True, rms_norm_eps=1e-5), "jamba"),
}


MARKS = {"mamba2_groups": pytest.mark.xfail(not _grouped_gated_norm(), strict=True,
                                             reason="this transformers' PyTorch Mamba-2 path ignores n_groups in its gated norm")}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("case", [pytest.param(c, marks=MARKS.get(c, ())) for c in CASES])
def test_ssm_family_conformance(case, tmp_path):
    cls_name, kwargs, model_type = CASES[case]
    # the perturbed 4-layer Jamba's embedding gradients reach ~600: float32 rounding alone (either side
    # against a float64 run) is ~3e-4 on their small entries
    check_conformance(build_hf(cls_name, kwargs), model_type, V, tmp_path, grad_atol=1e-3 if model_type == "jamba" else 1e-4)

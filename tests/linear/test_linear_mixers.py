"""Linear-attention mixers: shape, prefill-then-decode equals the full forward, the three op
forms agree (outputs and parameter gradients), cache bytes and params analytic == measured."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from archlab.errors import CacheOverflowError, ConfigError
from archlab.linear import FeatureMapConfig, LinearAttentionConfig, build_mixer, cache_bytes, flops_per_token, params

sys.path.insert(0, str(Path(__file__).parents[1] / "ops"))
from triton_marks import interpreter  # noqa: E402

D_MODEL, T = 32, 13

CONFIGS = {
    **{f"linear-{fm}": LinearAttentionConfig(kind="linear", feature_map=FeatureMapConfig(kind=fm), head_dim=4)
       for fm in ("elu+1", "relu", "performer", "cosformer", "hedgehog", "taylor")},
    "linear-unnormalized-conv-norm-gate": LinearAttentionConfig(kind="linear", normalize=False, conv_size=3,
                                                                output_norm="rms", output_gate="swish"),
    "retention": LinearAttentionConfig(kind="retention"),
    "gla": LinearAttentionConfig(kind="gla", gate_low_rank=4),
    "deltanet": LinearAttentionConfig(kind="deltanet"),
    "deltanet-noconv": LinearAttentionConfig(kind="deltanet", conv_size=0),
    "gated_deltanet": LinearAttentionConfig(kind="gated_deltanet", value_head_dim=12),
    "based": LinearAttentionConfig(kind="based", head_dim=4, window=4),
}


def mixer(name: str, form: str = "auto", dtype=torch.float32):
    torch.manual_seed(0)
    cfg = dataclasses.replace(CONFIGS[name], form=form)
    m = build_mixer(cfg, D_MODEL, layer_idx=0).to(dtype).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0; perturb everything
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def data(dtype=torch.float32, length=T):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, length, D_MODEL, generator=g).to(dtype)
    return x, torch.arange(length).expand(2, length)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_prefill_then_decode_equals_full_forward(name):
    m = mixer(name)
    x, pos = data()
    with torch.no_grad():
        full = m(x, positions=pos)
        assert full.shape == x.shape
        cache = m.new_cache(batch_size=2, max_len=T, dtype=torch.float32, device="cpu")
        steps = [m(x[:, :6], positions=pos[:, :6], cache=cache)]
        steps += [m(x[:, t:t + 1], positions=pos[:, t:t + 1], cache=cache) for t in range(6, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.nbytes() == cache_bytes(CONFIGS[name], D_MODEL, T, 2, torch.float32)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forms_agree_outputs_and_grads(name):
    x, pos = data(torch.float64)
    results = {}
    for form in ("parallel", "chunk", "recurrent"):
        m = mixer(name, form=form, dtype=torch.float64)
        y = m(x, positions=pos)
        grads = torch.autograd.grad((y * y.detach().cos()).sum(), list(m.parameters()))
        results[form] = (y.detach(), grads)
    for form in ("chunk", "recurrent"):
        torch.testing.assert_close(results[form][0], results["parallel"][0], rtol=1e-9, atol=1e-9)
        for a, b in zip(results[form][1], results["parallel"][1]):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_params_and_cache_bytes_analytic(name):
    cfg = CONFIGS[name]
    m = build_mixer(cfg, D_MODEL)
    assert params(cfg, D_MODEL) == sum(p.numel() for p in m.parameters())
    for dtype in (torch.float32, torch.bfloat16):
        small = m.new_cache(1, 8, dtype, "cpu").nbytes()
        big = m.new_cache(1, 4096, dtype, "cpu").nbytes()
        assert small == big == cache_bytes(cfg, D_MODEL, 4096, 1, dtype), "the cache size is fixed"
    assert cache_bytes(cfg, D_MODEL, 100, 3, torch.float32) == 3 * cache_bytes(cfg, D_MODEL, 100, 1, torch.float32)
    assert flops_per_token(cfg, D_MODEL, 64) > 2 * params(cfg, D_MODEL) * 0.5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gradients_flow(name):
    m = mixer(name).train()
    x, pos = data()
    x.requires_grad_()
    m(x, positions=pos).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_based_window_span_matters():
    """Based's flops grow with the window span until the window is full."""
    cfg = CONFIGS["based"]
    assert flops_per_token(cfg, D_MODEL, 2) < flops_per_token(cfg, D_MODEL, 64) < flops_per_token(cfg, D_MODEL, 4096) * 1.0001


def test_cache_overflow_and_reset():
    m = mixer("gla")
    x, pos = data()
    cache = m.new_cache(2, 4, torch.float32, "cpu")
    with torch.no_grad():
        m(x[:, :3], positions=pos[:, :3], cache=cache)
        with pytest.raises(CacheOverflowError, match="max_len"):
            m(x[:, 3:5], positions=pos[:, 3:5], cache=cache)
        cache.reset()
        assert cache.seen == 0 and cache.state.abs().sum() == 0


def test_performer_redraw_policy():
    for redraw, changes in (("fixed", False), ("every_forward", True)):
        cfg = LinearAttentionConfig(kind="linear", feature_map=FeatureMapConfig(kind="performer", performer_redraw=redraw))
        m = build_mixer(cfg, D_MODEL).train()
        before = m.feature_map.projection.clone()
        x, pos = data()
        m(x, positions=pos)
        assert (not torch.equal(before, m.feature_map.projection)) == changes
        m.eval()
        before = m.feature_map.projection.clone()
        m(x, positions=pos)
        assert torch.equal(before, m.feature_map.projection), "never redrawn in eval"


def test_cosformer_rejects_positions_past_max_len():
    cfg = LinearAttentionConfig(kind="linear", feature_map=FeatureMapConfig(kind="cosformer", cosformer_max_len=8))
    m = build_mixer(cfg, D_MODEL)
    x, pos = data()
    with pytest.raises(ValueError, match="cosformer_max_len"):
        m(x, positions=pos)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="linear.heads"):
        LinearAttentionConfig(heads=0)
    with pytest.raises(ConfigError, match="linear.kind"):
        LinearAttentionConfig(kind="mamba")
    with pytest.raises(ConfigError, match="linear.conv_size"):
        LinearAttentionConfig(conv_size=1)
    with pytest.raises(ConfigError, match="feature_map.kind"):
        LinearAttentionConfig.from_dict({"feature_map": {"kind": "elu"}})
    with pytest.raises(ConfigError, match="linear.heads"):
        build_mixer(LinearAttentionConfig(heads=3), 32)
    cfg = LinearAttentionConfig.from_dict({"kind": "gla", "feature_map": {"kind": "taylor"}})
    assert LinearAttentionConfig.from_dict(cfg.to_dict()) == cfg


@interpreter
@pytest.mark.parametrize("name", ["linear-elu+1", "gla", "retention", "based"])
def test_triton_form_equals_chunk_interpreted(name):
    """The mixers whose ops have a Triton form (linear.form: triton): outputs and parameter
    gradients equal the chunk form's. Runs under Triton's interpreter on the CPU."""
    x, pos = data(length=40)
    results = {}
    for form in ("chunk", "triton"):
        m = dataclasses.replace(CONFIGS[name], chunk_size=16)
        torch.manual_seed(0)
        mod = build_mixer(dataclasses.replace(m, form=form), D_MODEL, layer_idx=0).eval()
        with torch.no_grad():
            for p in mod.parameters():
                p.add_(0.1 * torch.randn_like(p))
        y = mod(x, positions=pos)
        results[form] = (y.detach(), torch.autograd.grad((y * y.detach().cos()).sum(), list(mod.parameters())))
    torch.testing.assert_close(results["triton"][0], results["chunk"][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(results["triton"][1], results["chunk"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

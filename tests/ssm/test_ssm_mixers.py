"""Mamba and Mamba-2 mixers: shapes, cached decoding equals the full forward, accounting, gradients."""
import pytest
import torch

from archlab.ssm import SSMCache, SSMConfig, build_ssm_mixer, cache_bytes, flops_per_token, params

CONFIGS = {
    "mamba": SSMConfig(kind="mamba", d_state=8, chunk_size=4),
    "mamba_jamba": SSMConfig(kind="mamba", d_state=4, dt_rank=3, dt_bc_norm=True, proj_bias=True, conv_bias=False),
    "mamba2": SSMConfig(kind="mamba2", d_state=8, head_dim=8, n_groups=2, chunk_size=4),
    "mamba2_limit": SSMConfig(kind="mamba2", d_state=4, head_dim=16, dt_limit=(0.0, 0.05), proj_bias=True, d_conv=2),
}
D_MODEL = 32


def _mixer(name, **overrides):
    torch.manual_seed(0)
    cfg = CONFIGS[name].replace(**overrides) if overrides else CONFIGS[name]
    m = build_ssm_mixer(cfg, D_MODEL, layer_idx=0)
    with torch.no_grad():  # move D, dt bias, norms off their init values so mistakes show
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name", CONFIGS)
def test_shape_params_and_flops(name):
    m = _mixer(name)
    x = torch.randn(2, 11, D_MODEL)
    assert m(x, positions=torch.arange(11).expand(2, 11)).shape == x.shape
    assert params(m.cfg, D_MODEL) == sum(p.numel() for p in m.parameters())
    assert flops_per_token(m.cfg, D_MODEL, 11) > 2 * params(m.cfg, D_MODEL) * 0.9


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("prefill", [0, 1, 6, 9])
def test_prefill_then_decode_equals_full_forward(name, prefill):
    m = _mixer(name)
    T = 13  # not a multiple of the chunk
    x = torch.randn(2, T, D_MODEL)
    full = m(x)
    cache = m.new_cache(batch_size=2, max_len=T, dtype=torch.float32)
    outs = [m(x[:, :prefill], cache=cache)] if prefill else []
    outs += [m(x[:, t : t + 1], cache=cache) for t in range(prefill, T)]
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == T


@pytest.mark.parametrize("name", CONFIGS)
def test_chunked_continuation_equals_full_forward(name):
    m = _mixer(name)
    x = torch.randn(1, 17, D_MODEL)
    cache = m.new_cache(1, 17, torch.float32)
    parts = [m(x[:, a:b], cache=cache) for a, b in [(0, 5), (5, 12), (12, 17)]]
    torch.testing.assert_close(torch.cat(parts, 1), m(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_bytes_measured_equals_analytic(name, dtype):
    m = _mixer(name)
    cache = m.new_cache(3, 50, dtype)
    m(torch.randn(3, 7, D_MODEL), cache=cache)
    assert isinstance(cache, SSMCache)
    assert cache.nbytes() == cache_bytes(m.cfg, D_MODEL, 50, 3, dtype) == cache_bytes(m.cfg, D_MODEL, 7, 3, dtype)
    cache.reset()
    assert cache.length == 0 and cache.ssm_state.abs().sum() == 0 and cache.conv_state.abs().sum() == 0


def assert_mixers_agree(ref, m, x):
    """Outputs, input gradients and parameter gradients of two mixers with the same weights."""
    y0, y1 = ref(x), m(x)
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
    g0 = torch.autograd.grad(y0.square().sum(), [x, *ref.parameters()])
    g1 = torch.autograd.grad(y1.square().sum(), [x, *m.parameters()])
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", CONFIGS)
def test_reference_backend_matches_chunked(name):
    assert_mixers_agree(_mixer(name, backend="reference"), _mixer(name, backend="chunked"),
                        torch.randn(2, 10, D_MODEL, requires_grad=True))


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_reach_every_parameter(name):
    m = _mixer(name)
    x = torch.randn(2, 9, D_MODEL, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_bf16_forward_runs_and_is_close():
    m = _mixer("mamba2")
    x = torch.randn(2, 9, D_MODEL)
    y = m(x)
    yb = m.to(torch.bfloat16)(x.bfloat16())
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), y, atol=0.1, rtol=0.1)


def test_bad_inputs_are_clear_errors():
    m = _mixer("mamba")
    with pytest.raises(ValueError, match=r"\[batch, time, 32\]"):
        m(torch.randn(2, 5, 31))
    cache = m.new_cache(1, 8, torch.float32)
    with pytest.raises(ValueError, match="batch size"):
        m(torch.randn(2, 5, D_MODEL), cache=cache)
    with pytest.raises(ValueError, match="ssm.kind"):
        from archlab.ssm import Mamba2Mixer
        Mamba2Mixer(CONFIGS["mamba"], D_MODEL, 0)

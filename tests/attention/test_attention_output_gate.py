"""Gated attention (o * sigmoid(x W_g) before o_proj, elementwise or per head) and the zero-centred
QK-norm (weight stored as w, applied as 1 + w): formulas against an ungated twin, cached decoding
against the full forward, gradients, parameter counts and config errors."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab import ConfigError, ModelConfig
from archlab.attention.config import AttentionConfig
from archlab.attention.mla_config import MLAConfig

C, T = 32, 9


def model(**attention) -> archlab.Model:
    base = dict(heads=4, kv_heads=2, qk_norm="head")
    cfg = ModelConfig(vocab_size=64, d_model=C, n_layers=2, attention=AttentionConfig(**{**base, **attention}))
    torch.manual_seed(0)
    m = archlab.build(cfg)
    with torch.no_grad():  # random init leaves norms at 1 (or 0) and biases at 0
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def x_pos(batch: int = 2):
    x = torch.randn(batch, T, C, generator=torch.Generator().manual_seed(1), requires_grad=True)
    return x, torch.arange(T).expand(batch, T)


@pytest.mark.parametrize("shape", ["elementwise", "headwise"])
def test_gate_formula_outputs_and_grads(shape):
    """gated(x) = o_proj(attn(x) * sigmoid(x W_g)); attn(x) read off an ungated twin whose o_proj is
    the identity (H * D = C), gates broadcast over the head's channels when headwise."""
    gated = model(output_gate="sigmoid", output_gate_shape=shape, qkv_bias=True).blocks[0].mixer
    twin = model(qkv_bias=True).blocks[0].mixer
    missing = twin.load_state_dict(gated.state_dict(), strict=False)
    assert set(missing.unexpected_keys) == {"g_proj.weight", "g_proj.bias"} and not missing.missing_keys
    with torch.no_grad():
        twin.o_proj.weight.copy_(torch.eye(C))
        twin.o_proj.bias = None
    x, pos = x_pos()
    y = gated(x, positions=pos)
    H, D = 4, C // 4
    g = torch.sigmoid(x @ gated.g_proj.weight.T + gated.g_proj.bias)  # [B, T, H*D or H]
    g = g.view(2, T, H, -1).expand(2, T, H, D).reshape(2, T, C)
    ref = gated.o_proj(twin(x, positions=pos) * g)
    torch.testing.assert_close(y, ref)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    grads = torch.autograd.grad((y * w).sum(), [x, gated.q_proj.weight, gated.g_proj.weight, gated.g_proj.bias])
    ref_grads = torch.autograd.grad((ref * w).sum(), [x, twin.q_proj.weight, gated.g_proj.weight, gated.g_proj.bias])
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    assert gated.g_proj.weight.shape == (H * D if shape == "elementwise" else H, C)


@pytest.mark.parametrize("qk_norm", ["head", "full"])
def test_unit_offset_qk_norm_is_plain_qk_norm_with_one_plus_w(qk_norm):
    offset = model(qk_norm=qk_norm, qk_norm_unit_offset=True)
    plain = model(qk_norm=qk_norm)
    fresh = archlab.build(offset.cfg).blocks[0].mixer
    assert torch.count_nonzero(fresh.q_norm) == 0 and torch.count_nonzero(fresh.k_norm) == 0  # 1 + 0 at init
    state = offset.state_dict()
    plain.load_state_dict({k: v + 1 if k.endswith(("q_norm", "k_norm")) else v for k, v in state.items()})
    ids = torch.randint(0, 64, (2, T), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(offset(ids), plain(ids))
    offset(ids).sum().backward()
    plain(ids).sum().backward()
    for a, b in zip(offset.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("shape", ["elementwise", "headwise"])
def test_cached_decoding_equals_full_forward(shape):
    m = model(output_gate="sigmoid", output_gate_shape=shape, qk_norm_unit_offset=True).eval()
    ids = torch.randint(0, 64, (2, T), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = m(ids)
        cache = m.new_cache(batch_size=2, max_len=T)
        steps = [m(ids[:, :4], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(4, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize("attention", [dict(output_gate="sigmoid"), dict(output_gate="sigmoid", output_gate_shape="headwise"),
                                       dict(output_gate="sigmoid", qkv_bias=True, qk_norm="full", qk_norm_unit_offset=True)])
def test_params_counted_analytically(attention):
    m = model(**attention)
    assert archlab.count_params(m.cfg).total == sum(p.numel() for p in m.parameters())


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="attention.output_gate_shape"):
        AttentionConfig(output_gate_shape="headwise")
    with pytest.raises(ConfigError, match="attention.qk_norm_unit_offset"):
        AttentionConfig(qk_norm_unit_offset=True)
    with pytest.raises(ConfigError, match="attention.output_gate"):
        AttentionConfig(kind="mla", mla=MLAConfig(), output_gate="sigmoid")
    with pytest.raises(ConfigError, match="attention.output_gate"):
        AttentionConfig(output_gate="tanh")

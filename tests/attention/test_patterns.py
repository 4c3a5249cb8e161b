"""Sliding windows, sinks and block-sparse patterns: formulas, bounded caches, backends."""
import pytest
import torch

import archlab
from archlab.attention import BACKENDS
from archlab.attention.masks import MaskSpec
from archlab.cache.sliding import SlidingKVCache


def brute(spec: MaskSpec, T: int) -> torch.Tensor:
    """The pattern written as loops, straight from its definition."""
    m = torch.zeros(T, T, dtype=torch.bool)
    for q in range(T):
        for k in range(q + 1):
            if spec.window is not None:
                m[q, k] = q - k < spec.window or k < spec.sinks
            elif spec.block is not None:
                m[q, k] = q // spec.block - k // spec.block <= 1 or k < spec.global_tokens or q < spec.global_tokens
            else:
                m[q, k] = True
    return m


SPECS = [MaskSpec(), MaskSpec(window=4), MaskSpec(window=4, sinks=2), MaskSpec(block=3), MaskSpec(block=3, global_tokens=2)]


@pytest.mark.parametrize("spec", SPECS)
def test_mask_rule_matches_its_definition_and_key_count(spec):
    T = 13
    pos = torch.arange(T)[None]
    vis = spec.visibility(pos, pos)[0, 0]
    assert torch.equal(vis, brute(spec, T))
    assert spec.mean_keys(T) == pytest.approx(vis.sum().item() / T)


def test_large_t_key_count_closed_forms_agree_with_counting():
    for spec in SPECS[1:]:
        T = 5000  # above the counting threshold: closed forms
        small = MaskSpec(**{**spec.__dict__})
        q = torch.arange(T)
        exact = small.allowed(q[:, None], q[None, :]).sum().item() / T
        assert spec.mean_keys(T) == pytest.approx(exact)


def cfg(**over):
    base = archlab.presets.get("mistral-debug", **{"attention.window": 4})
    return base.replace(**over) if over else base


@pytest.mark.parametrize("over", [{}, {"attention.sinks": 2}, {"attention.kv_heads": 1}, {"position.kind": "none"}])
@pytest.mark.parametrize("prefill", [1, 3, 9])
def test_ring_buffer_decode_equals_masked_full_forward(over, prefill):
    c = cfg(**over)
    model = archlab.build(c).eval()
    ids = torch.randint(0, c.vocab_size, (2, 23))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 64)
        assert isinstance(cache.layers[0], SlidingKVCache)
        outs = [model(ids[:, :prefill], cache=cache)]
        t = prefill
        while t < 23:  # mixed chunk sizes: single tokens and chunks longer than the window
            n = 1 if t % 2 else 6
            outs.append(model(ids[:, t:t + n], cache=cache))
            t += n
    torch.testing.assert_close(torch.cat(outs, 1)[:, :23], full, atol=2e-5, rtol=1e-4)


def test_ring_buffer_memory_is_constant():
    c = cfg(**{"attention.sinks": 2})
    W = c.attention.window
    model = archlab.build(c).eval()
    cache = model.new_cache(1, 100 * W)
    at_window = None
    with torch.no_grad():
        for t in range(10 * W + 2):
            model(torch.randint(0, c.vocab_size, (1, 1)), cache=cache)
            if t + 1 == W + 2:
                at_window = cache.nbytes()
    assert cache.nbytes() == at_window == archlab.cache_bytes(c, 100 * W, 1, torch.float32)
    assert archlab.cache_bytes(c, 10 * W, 1, "bf16") == archlab.cache_bytes(c, W + 2, 1, "bf16")


def test_mistral_cache_is_flat_past_its_window():
    m = archlab.presets.get("mistral-7b")
    per_tok = 131_072
    assert archlab.cache_bytes(m, 4096, 1, "bf16") == 4096 * per_tok
    assert archlab.cache_bytes(m, 32768, 1, "bf16") == 4096 * per_tok
    assert archlab.cache_bytes(m, 1000, 1, "bf16") == 1000 * per_tok


def test_local_global_layer_plan_accounts_each_layer():
    base = archlab.presets.get("llama-3-debug")
    c = base.replace(plan={"pattern": "SA", "letters": {"S": {"set": {"attention.window": 4}}}})
    per_layer = 2 * 2 * 16 * 4  # K and V, 2 kv heads x 16 dims, float32
    assert archlab.cache_bytes(c, 100, 1, torch.float32) == per_layer * (4 + 100)
    model = archlab.build(c)
    assert model.new_cache(1, 100).nbytes() == archlab.cache_bytes(c, 100, 1, torch.float32)


def test_sinks_need_a_window_and_patterns_exclude_each_other():
    with pytest.raises(archlab.ConfigError, match="attention.sinks"):
        archlab.presets.get("llama-3-debug", **{"attention.sinks": 2})
    with pytest.raises(archlab.ConfigError, match="attention.sparse_block"):
        archlab.presets.get("llama-3-debug", **{"attention.sparse_block": 2, "attention.window": 4})


@pytest.mark.gpu
@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("softcap", [None, 20.0])
def test_flex_matches_eager_reference_on_gpu(spec, softcap):
    torch.manual_seed(0)
    B, H, Hkv, T, D = 2, 4, 2, 300, 64
    q = torch.randn(B, H, T, D, device="cuda", requires_grad=True)
    k = torch.randn(B, Hkv, T, D, device="cuda", requires_grad=True)
    v = torch.randn(B, Hkv, T, D, device="cuda", requires_grad=True)
    pos = torch.arange(T, device="cuda").expand(B, T)
    kw = dict(q_pos=pos, k_pos=pos, scale=D**-0.5, mask=spec, softcap=softcap)
    ref = BACKENDS.get("eager")(q, k, v, **kw)
    g = torch.randn_like(ref)
    gr = torch.autograd.grad(ref, (q, k, v), g)
    out = BACKENDS.get("flex")(q, k, v, **kw)
    go = torch.autograd.grad(out, (q, k, v), g)
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=2e-3)
    for a, b in zip(go, gr):
        torch.testing.assert_close(a, b, atol=5e-3, rtol=5e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["alibi", "t5"])
def test_flex_position_bias_matches_eager_on_gpu(kind):
    c = archlab.presets.get("llama-3-debug", **{"position.kind": kind, "attention.window": 64})
    m_flex = archlab.build(c.replace(**{"attention.backend": "flex"})).cuda()
    m_ref = archlab.build(c.replace(**{"attention.backend": "eager"})).cuda()
    m_ref.load_state_dict(m_flex.state_dict())
    ids = torch.randint(0, c.vocab_size, (2, 200), device="cuda")
    torch.testing.assert_close(m_flex(ids), m_ref(ids), atol=2e-3, rtol=2e-3)

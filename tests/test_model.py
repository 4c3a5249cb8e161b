import pytest
import torch

import archlab
from archlab import CacheOverflowError, ModelConfig
from archlab.attention import AttentionConfig, eager_attention, sdpa_attention
from archlab.attention.masks import MaskSpec
from archlab.config import LayerPlan, LayerSpec
from archlab.ffn import FFNConfig
from archlab.norm import NormConfig
from archlab.position import PositionConfig


def tiny(**over) -> ModelConfig:
    base = ModelConfig(vocab_size=97, d_model=32, n_layers=2, attention=AttentionConfig(heads=4, kv_heads=2),
                       ffn=FFNConfig(hidden=48))
    return base.replace(**over) if over else base


# every attention configuration of the test matrix: name -> overrides
MATRIX = {
    "mha": {"attention.kv_heads": 4},
    "gqa": {},
    "mqa": {"attention.kv_heads": 1},
    "head_dim_independent": {"attention.head_dim": 12},
    "biases": {"attention.qkv_bias": True, "attention.out_bias": True, "ffn.bias": True},
    "qk_norm_head": {"attention.qk_norm": "head"},
    "qk_norm_full": {"attention.qk_norm": "full"},
    "softcap": {"attention.softcap": 5.0, "logit_softcap": 3.0},
    "scale": {"attention.scale": 0.3},
    "window": {"attention.window": 3},
    "window_sinks": {"attention.window": 3, "attention.sinks": 2},
    "block_sparse": {"attention.sparse_block": 3, "attention.global_tokens": 2},
    "eager": {"attention.backend": "eager"},
    "nope": {"position.kind": "none"},
    "rope_interleaved": {"position.interleaved": True},
    "rope_partial": {"position.rotary_fraction": 0.25},
    "post_norm": {"norm.placement": "post"},
    "output_norm": {"norm.placement": "output"},
    "sandwich": {"norm.placement": "sandwich", "norm.unit_offset": True},
    "parallel": {"norm.placement": "parallel", "norm.kind": "layernorm", "norm.bias": True},
    "parallel_shared": {"norm.placement": "parallel_shared"},
    "mlp_gelu": {"ffn.kind": "mlp"},
    "geglu": {"ffn.kind": "geglu"},
    "untied_scaled": {"tie_embeddings": False, "embed_scale": 5.6},
    "embedding_norm": {"norm.embedding_norm": True, "norm.final_norm": False},
}


def perturb(model: torch.nn.Module) -> None:
    """Random init leaves norms at 1 and biases at 0; perturb so every parameter matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("name", list(MATRIX))
def test_prefill_then_decode_equals_full_forward(name):
    cfg = tiny(**MATRIX[name])
    model = archlab.build(cfg).eval()
    perturb(model)
    ids = torch.randint(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        full = model(ids)
        assert full.shape == (2, 11, cfg.vocab_size)
        for prefill in (1, 4, 11):
            cache = model.new_cache(batch_size=2, max_len=16)
            outs = [model(ids[:, :prefill], cache=cache)]
            for t in range(prefill, 11):
                outs.append(model(ids[:, t:t + 1], cache=cache))
            assert cache.length == 11
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)


def test_chunked_prefill_equals_full_forward():
    model = archlab.build(tiny(**{"attention.window": 4})).eval()
    ids = torch.randint(0, 97, (1, 12))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 12)
        out = torch.cat([model(ids[:, i:i + 5], cache=cache) for i in range(0, 12, 5)], 1)
    torch.testing.assert_close(out, full, atol=2e-5, rtol=1e-4)


def test_cache_overflow_and_batch_mismatch_raise_clear_errors():
    model = archlab.build(tiny())
    cache = model.new_cache(batch_size=1, max_len=4)
    model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(CacheOverflowError, match="max_len=4"):
        model(torch.zeros(1, 2, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=model.new_cache(batch_size=1, max_len=4))


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, dtype=torch.long), "shape"),
    (torch.zeros(1, 3), "int64"),
    (torch.full((1, 3), 97), r"\[0, 97\)"),
    (torch.full((1, 3), -1), r"\[0, 97\)"),
])
def test_bad_input_ids(bad, match):
    with pytest.raises(ValueError, match=match):
        archlab.build(tiny())(bad)


@pytest.mark.parametrize("over", [
    {}, {"attention.window": 3}, {"attention.kv_heads": 1}, {"position.kind": "none"},
    {"attention.window": 3, "attention.sinks": 2}, {"attention.sparse_block": 2, "attention.global_tokens": 1},
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdpa_equals_eager_reference_outputs_and_grads(over, dtype):
    cfg = tiny(**over)
    B, H, Hkv, T, D = 2, 4, cfg.attention.n_kv, 7, 8
    q = torch.randn(B, H, T, D, dtype=dtype, requires_grad=True)
    k = torch.randn(B, Hkv, T, D, dtype=dtype, requires_grad=True)
    v = torch.randn(B, Hkv, T, D, dtype=dtype, requires_grad=True)
    pos = torch.arange(T).expand(B, T)
    bias = None if "position.kind" not in over else torch.randn(1, H, T, T, dtype=dtype)
    kw = dict(q_pos=pos, k_pos=pos, scale=D**-0.5, bias=bias, mask=cfg.attention.mask)
    ref = eager_attention(q, k, v, **kw)
    g = torch.randn_like(ref)
    gr = torch.autograd.grad(ref, (q, k, v), g)
    out = sdpa_attention(q, k, v, **kw)
    go = torch.autograd.grad(out, (q, k, v), g)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(out, ref, **tol)
    for a, b in zip(go, gr):
        torch.testing.assert_close(a, b, **tol)


def test_sdpa_model_equals_eager_model():
    cfg = tiny(**{"attention.qk_norm": "head"})
    m_sdpa = archlab.build(cfg.replace(**{"attention.backend": "sdpa"}))
    m_eager = archlab.build(cfg.replace(**{"attention.backend": "eager"}))
    m_eager.load_state_dict(m_sdpa.state_dict())
    ids = torch.randint(0, 97, (2, 9))
    torch.testing.assert_close(m_sdpa(ids), m_eager(ids), atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    model = archlab.build(tiny(**{"attention.qk_norm": "head", "tie_embeddings": False}))
    ids = torch.randint(0, 97, (2, 8))
    model(ids).logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_state_dict_names_are_stable():
    names = set(archlab.build(tiny()).state_dict())
    assert {"embed.weight", "blocks.0.mixer.q_proj.weight", "blocks.0.ffn.gate.weight", "blocks.1.mixer_norm.weight",
            "final_norm.weight"} <= names


def test_meta_build_allocates_nothing():
    cfg = archlab.presets.get("llama-3-8b")
    m = archlab.build(cfg, device="meta")
    assert m.num_params() == 8_030_261_248
    assert all(p.is_meta for p in m.parameters())


def test_static_cache_decode_equals_full_forward():
    """Static mode (fixed shapes, explicit positions; what CUDA graphs capture)."""
    model = archlab.build(tiny(**{"attention.qk_norm": "head"})).eval()
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 16, static=True)
        outs = [model(ids[:, :4], cache=cache, positions=torch.arange(4).expand(2, 4))]
        for t in range(4, 10):
            outs.append(model(ids[:, t:t + 1], cache=cache, positions=torch.full((2, 1), t)))
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=2e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="positions"):
        model(ids[:, :1], cache=cache)
    with pytest.raises(ValueError, match="static mode"):
        archlab.build(tiny(**{"attention.window": 3})).new_cache(1, 8, static=True)


def test_cache_in_another_dtype_than_the_model():
    model = archlab.build(tiny()).eval()
    ids = torch.randint(0, 97, (1, 6))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 8, dtype=torch.bfloat16)
        out = torch.cat([model(ids[:, :3], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(3, 6)], 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, full, atol=0.1, rtol=0.05)  # bf16 keys/values

"""Quantized caches: the quantizer's per-element bounds, the store's indexing, and the error a
quantized cache puts on the logits of a small random model (bounds stated in
archlab/cache/quantized.py)."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab.attention import AttentionConfig
from archlab.cache.quantized import QuantizedKVCache, QuantizedStore, check_supported, dequantize, quantize
from archlab.config import ModelConfig
from archlab.ffn import FFNConfig

KINDS = ("int8", "fp8")


@pytest.mark.parametrize("kind", KINDS)
def test_quantizer_error_bounds(kind):
    x = torch.randn(3, 5, 7, 64) * torch.logspace(-3, 2, 7)[None, None, :, None]  # rows of very different scales
    x[0, 0, 0] = 0.0  # an all-zero row must come back exactly
    q, s = quantize(x, kind)
    assert q.dtype == {"int8": torch.int8, "fp8": torch.float8_e4m3fn}[kind] and s.shape == (3, 5, 7, 1)
    y = dequantize(q, s, torch.float32)
    amax = x.abs().amax(-1, keepdim=True)
    err = (y - x).abs()
    assert torch.equal(y[0, 0, 0], torch.zeros(64))
    if kind == "int8":
        assert (err <= amax / 254 * (1 + 1e-5) + 1e-30).all()
    else:
        normal = x.abs() >= amax / 448 * 2**-6
        assert (err[normal] <= x.abs()[normal] * 2**-4 * (1 + 1e-5)).all()
        assert (err[~normal] <= (amax / 448 * 2**-10).expand_as(x)[~normal] * (1 + 1e-5)).all()


def test_scale_groups_quantize_parts_apart():
    x = torch.cat([torch.randn(4, 10) * 100.0, torch.randn(4, 6) * 0.01], dim=-1)  # a large and a small part
    q, s = quantize(x, "int8", groups=(10, 6))
    assert s.shape == (4, 2)
    y = dequantize(q, s, torch.float32, groups=(10, 6))
    small = (y - x)[:, 10:].abs().max()
    assert small <= x[:, 10:].abs().max() / 254 * 1.0001  # not swamped by the large part's scale
    one = dequantize(*quantize(x, "int8"), torch.float32)
    assert (one - x)[:, 10:].abs().max() > 10 * small


@pytest.mark.parametrize("kind", KINDS)
def test_store_reads_and_writes_through_leading_index(kind):
    store = QuantizedStore((2, 3, 8, 16), kind, dtype=torch.float64)
    x = torch.randn(2, 3, 3, 16, dtype=torch.float64)
    store[:, :, 2:5] = x
    tol = 0.07 if kind == "fp8" else 0.01
    got = store[:, :, 2:5]
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, x, atol=tol * x.abs().max().item(), rtol=0)
    idx = torch.tensor([7, 0])
    store[:, :, idx] = x[:, :, :2]
    torch.testing.assert_close(store[:, :, idx], x[:, :, :2], atol=tol * x.abs().max().item(), rtol=0)
    assert store.nbytes() == 2 * 3 * 8 * (16 + 4) == QuantizedStore.bytes_for(2 * 3 * 8, 16)


def test_bad_kind_and_static_mode_are_named_errors():
    with pytest.raises(ValueError, match="attention.cache_dtype"):
        check_supported("int4")
    cache = QuantizedKVCache(1, 2, 4, 8, kind="int8", dtype=torch.float32)
    with pytest.raises(ValueError, match="static"):
        cache.make_static()
    with pytest.raises(archlab.ConfigError, match="attention.cache_dtype"):
        AttentionConfig(cache_dtype="int4")


def _model(over: dict) -> ModelConfig:
    base = ModelConfig(vocab_size=101, d_model=64, n_layers=2, attention=AttentionConfig(heads=4, kv_heads=2),
                       ffn=FFNConfig(hidden=128))
    return base.replace(**over)


LAYERS = {
    "full": {},
    "window_sinks": {"attention.window": 8, "attention.sinks": 2},
    "mla": {"attention.kind": "mla", "attention.kv_heads": None,
            "attention.mla": {"kv_lora_rank": 32, "q_lora_rank": 24, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                              "v_head_dim": 16}},
}
# asserted bounds: max |logit error| / std(logits) and the largest per-position KL(reference || quantized)
BOUNDS = {"int8": (0.06, 3e-4), "fp8": (0.40, 1e-2)}


def _decode(model: archlab.Model, ids: torch.Tensor, prefill: int = 8) -> torch.Tensor:
    cache = model.new_cache(batch_size=ids.shape[0], max_len=ids.shape[1])
    outs = [model(ids[:, :prefill], cache=cache)]
    outs += [model(ids[:, t:t + 1], cache=cache) for t in range(prefill, ids.shape[1])]
    return torch.cat(outs, 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_quantization_error_on_logits_is_bounded(layer, kind):
    cfg = _model(LAYERS[layer])
    torch.manual_seed(0)
    model = archlab.build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    quant = archlab.build(cfg.replace(**{"attention.cache_dtype": kind})).eval()
    quant.load_state_dict(model.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (2, 24))
    with torch.no_grad():
        ref, out = _decode(model, ids), _decode(quant, ids)
    assert type(quant.new_cache(1, 4).layers[0]).__name__.startswith(("Quantized", "Latent"))
    err = (out - ref).abs().max() / ref.std()
    kl = torch.nn.functional.kl_div(out.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none").sum(-1).max()
    max_err, max_kl = BOUNDS[kind]
    assert 0 < err <= max_err and kl <= max_kl, (float(err), float(kl))

"""Measured equals analytic: build every cache kind, fill it past its window, and compare the
bytes of the tensors it holds with ``archlab.cache_bytes``; and the published per-token figures."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab import presets
from archlab.cache.quantized import QuantizedStore

# name -> (preset, overrides): every layer kind of a plan
KINDS = {
    "full": ("llama-3-debug", {}),
    "window": ("mistral-debug", {}),  # window 8
    "sink_window": ("mistral-debug", {"attention.sinks": 2}),
    "local_global": ("gemma-2-debug", {}),  # alternating windowed and full layers
    "latent": ("deepseek-debug", {}),
    "int8": ("llama-3-debug", {"attention.cache_dtype": "int8"}),
    "fp8": ("llama-3-debug", {"attention.cache_dtype": "fp8"}),
    "int8_window": ("mistral-debug", {"attention.cache_dtype": "int8", "attention.sinks": 2}),
    "int8_latent": ("deepseek-debug", {"attention.cache_dtype": "int8"}),
    "fp8_latent": ("deepseek-debug", {"attention.cache_dtype": "fp8"}),
    "recurrent": ("mamba-debug", {}),
    "hybrid": ("jamba-debug", {}),  # SSM states and full KV caches in one plan
}


def held_tensors(layer_cache) -> list[torch.Tensor]:
    """Every tensor a per-layer cache object holds, found by walking its attributes."""
    found: dict[int, torch.Tensor] = {}
    for value in vars(layer_cache).values():
        tensors = value.tensors() if isinstance(value, QuantizedStore) else (value,) if isinstance(value, torch.Tensor) else ()
        for t in tensors:
            found[id(t)] = t
    return list(found.values())


def measured_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers if layer is not None for t in held_tensors(layer))


@pytest.mark.parametrize("name", list(KINDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_measured_equals_analytic(name, dtype):
    preset, over = KINDS[name]
    cfg = presets.get(preset, **over)
    model = archlab.build(cfg, dtype=dtype).eval()
    B, L = 2, 21  # past every debug window (8) + sinks
    cache = model.new_cache(batch_size=B, max_len=L)
    ids = torch.randint(0, cfg.vocab_size, (B, L))
    with torch.no_grad():
        model(ids[:, :L - 2], cache=cache)
        model(ids[:, L - 2:L - 1], cache=cache)
        model(ids[:, L - 1:], cache=cache)
    assert cache.length == L
    analytic = archlab.cache_bytes(cfg, L, B, dtype)
    assert measured_bytes(cache) == cache.nbytes() == analytic


def test_windowed_caches_are_flat_past_the_window_and_states_fixed():
    mistral = presets.get("mistral-debug", **{"attention.sinks": 2})  # window 8 + 2 sinks
    sizes = [archlab.cache_bytes(mistral, n, 1, "bf16") for n in (10, 11, 100, 10_000)]
    assert len(set(sizes)) == 1 and sizes[0] == 2 * 2 * 10 * (16 + 16) * 2  # layers x kv heads x slots x (k + v) x bf16
    mamba = presets.get("mamba-debug")
    assert archlab.cache_bytes(mamba, 1, 1) == archlab.cache_bytes(mamba, 1_000_000, 1) > 0
    assert archlab.cache_bytes_per_token(mamba) == 0


def test_published_bytes_per_token():
    assert archlab.cache_bytes_per_token(presets.get("llama-3-70b"), "bf16") == 327_680  # 80 x 8 x 128 x 2 x 2
    assert archlab.cache_bytes_per_token(presets.get("deepseek-v3"), "bf16") == 70_272  # 61 x (512 + 64) x 2
    mistral = presets.get("mistral-7b")
    assert archlab.cache_bytes_per_token(mistral, "bf16") == 131_072
    for n in (4096, 4097, 32768, 131072):  # flat at 4096 x 131,072 past the window
        assert archlab.cache_bytes(mistral, n, 1, "bf16") == 4096 * 131_072
    assert archlab.cache_bytes(mistral, 1000, 1, "bf16") == 1000 * 131_072


def test_quantized_bytes_include_the_scales():
    llama = presets.get("llama-3-70b", **{"attention.cache_dtype": "int8"})
    assert archlab.cache_bytes_per_token(llama) == 80 * 8 * 2 * (128 + 4)  # values + a float32 scale per head
    v3 = presets.get("deepseek-v3", **{"attention.cache_dtype": "fp8"})
    assert archlab.cache_bytes_per_token(v3) == 61 * (512 + 64 + 2 * 4)  # latent and RoPE key scaled apart

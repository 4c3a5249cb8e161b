import pytest
import torch

import archlab
from archlab import presets

# published parameter counts (transformers' count of the same config; see PRESETS.md)
PUBLISHED = {
    "gpt2-124m": 124_439_808,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3.2-1b": 1_235_814_400,
    "mistral-7b": 7_241_732_096,
    "qwen3-8b": 8_190_735_360,
    "olmo-2-7b": 7_298_617_344,
    "gemma-2-9b": 9_241_705_984,
    "bloom-7b1": 7_069_016_064,
    "pythia-6.9b": 6_857_302_016,
    "gpt-neox-20b": 20_554_567_680,
    "mixtral-8x7b": 46_702_792_704,
    "olmoe-1b-7b": 6_919_161_856,
    "qwen2-57b-a14b": 57_408_658_944,
    "jamba-v0.1": 51_570_323_328,
    "mamba-2.8b": 2_768_345_600,
    "mamba2-2.7b": 2_831_336_960,
    "deepseek-v2-lite": 15_706_484_224,
    "deepseek-v3": 671_026_404_352,
}


def test_mixtral_active_parameters():
    assert archlab.count_params(presets.get("mixtral-8x7b")).active == 12_879_925_248


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameter_counts(name):
    assert archlab.count_params(presets.get(name)).total == PUBLISHED[name]


@pytest.mark.parametrize("name", presets.names())
def test_analytic_count_equals_built_model(name):
    cfg = presets.get(name)
    model = archlab.build(cfg, device="meta")
    assert archlab.count_params(cfg).total == model.num_params()


def test_deepseek_v3_latent_cache_bytes():
    assert archlab.cache_bytes_per_token(presets.get("deepseek-v3"), "bf16") == 61 * (512 + 64) * 2


def test_published_cache_bytes_per_token():
    assert archlab.cache_bytes_per_token(presets.get("llama-3-8b"), torch.bfloat16) == 131_072
    assert archlab.cache_bytes_per_token(presets.get("llama-3-70b"), "bf16") == 327_680
    assert archlab.cache_bytes(presets.get("llama-3-8b"), 4096, 2, torch.bfloat16) == 2 * 4096 * 131_072


@pytest.mark.parametrize("over", [{}, {"attention.kv_heads": 1}, {"attention.head_dim": 24}, {"attention.kv_heads": 4}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_allocated_cache_holds_exactly_the_analytic_bytes(over, dtype):
    cfg = presets.get("llama-3-debug", **over)
    model = archlab.build(cfg)
    cache = model.new_cache(batch_size=3, max_len=37, dtype=dtype)
    measured = sum(t.numel() * t.element_size() for c in cache.layers for t in (c.k, c.v))
    assert measured == cache.nbytes() == archlab.cache_bytes(cfg, 37, 3, dtype)


def test_flops_per_token_counts_matmuls():
    cfg = presets.get("llama-3-8b")
    p = archlab.count_params(cfg)
    f1 = archlab.flops_per_token(cfg, 1)
    # at length 1 every non-embedding weight (and the head) is used once: 2 FLOPs per weight,
    # plus attention over one key (4 * H * D per layer)
    attn = 4 * 32 * 128 * 32
    norms = 32 * 2 * 4096 + 4096
    assert f1 == 2 * (p.total - p.embedding - norms) + attn
    assert archlab.flops_per_token(cfg, 8192) > archlab.flops_per_token(cfg, 1024)
    with pytest.raises(ValueError, match="seq_len"):
        archlab.flops_per_token(cfg, 0)


def test_window_bounds_attention_flops():
    cfg = presets.get("mistral-7b")
    full = cfg.replace(**{"attention.window": None})
    assert archlab.flops_per_token(cfg, 4096) == archlab.flops_per_token(full, 4096)
    assert archlab.flops_per_token(cfg, 65536) < archlab.flops_per_token(full, 65536)

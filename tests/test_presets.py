import pytest
import torch

import archlab
from archlab import ConfigError, presets

REQUIRED = ["gpt2-124m", "llama-3-8b", "llama-3-70b", "llama-3.2-1b", "mistral-7b", "qwen3-8b", "olmo-2-7b"]


def test_required_presets_exist_each_family_has_a_debug_size():
    names = presets.names()
    assert set(REQUIRED) <= set(names)
    families = {"gpt2", "llama-3", "mistral", "qwen3", "olmo-2"}
    assert all(any(n.startswith(f) and n.endswith("-debug") for n in names) for f in families)


@pytest.mark.parametrize("name", [n for n in presets.names() if n.endswith("-debug")])
def test_debug_presets_build_run_and_decode(name):
    cfg = presets.get(name)
    model = archlab.build(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 6))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 6)
        step = torch.cat([model(ids[:, :3], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(3, 6)], 1)
    torch.testing.assert_close(step, full, atol=2e-5, rtol=1e-4)


def test_get_with_overrides_and_unknown_name():
    cfg = presets.get("llama-3-8b", **{"attention.kv_heads": 1})
    assert cfg.attention.kv_heads == 1 and cfg.name == "llama-3-8b"
    assert archlab.cache_bytes_per_token(cfg, torch.bfloat16) == 131_072 // 8
    with pytest.raises(ConfigError, match="did you mean"):
        presets.get("llama-3-9b")

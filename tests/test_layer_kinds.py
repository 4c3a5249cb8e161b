"""Mixers and FFNs beyond attention in one model: MoE, SSM, hybrids, tied blocks."""
import pytest
import torch

import archlab
from archlab import ConfigError

BASE = archlab.presets.get("llama-3-debug")
MOE = {"num_experts": 4, "top_k": 2, "expert_hidden": 32}


def test_moe_layers_report_aux_loss_and_active_params():
    cfg = BASE.replace(plan={"pattern": "AE"}, moe={**MOE, "load_balance_coef": 0.01, "z_loss_coef": 1e-3})
    m = archlab.build(cfg)
    m(torch.randint(0, 256, (2, 9)))
    aux = m.aux_loss()
    assert aux is not None and aux.item() > 0 and aux.requires_grad
    p = archlab.count_params(cfg)
    assert p.total == m.num_params() and p.active < p.total
    assert archlab.build(BASE).aux_loss() is None


def test_missing_sections_and_unknown_slots_are_config_errors():
    with pytest.raises(ConfigError, match="moe"):
        BASE.replace(plan={"pattern": "AE"})
    with pytest.raises(ConfigError, match="ssm"):
        BASE.replace(plan={"pattern": "M"})
    with pytest.raises(ConfigError, match="moe.num_experts"):
        BASE.replace(**{"moe.top_k": 1})


def test_hybrid_cache_mixes_kv_and_state_caches_in_one_object():
    cfg = BASE.replace(n_layers=4, plan={"pattern": "MMAE"}, ssm={"kind": "mamba2", "head_dim": 16}, moe=MOE)
    m = archlab.build(cfg).eval()
    cache = m.new_cache(2, 40)
    kinds = {type(c).__name__ for c in cache.layers}
    assert {"KVCache", "SSMCache"} <= kinds
    ids = torch.randint(0, 256, (2, 11))
    with torch.no_grad():
        full = m(ids)
        out = torch.cat([m(ids[:, :6], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(6, 11)], 1)
    torch.testing.assert_close(out, full, atol=2e-5, rtol=1e-4)
    # state layers hold a fixed size; attention layers grow with max_len
    small, big = archlab.cache_bytes(cfg, 10, 1, torch.float32), archlab.cache_bytes(cfg, 1010, 1, torch.float32)
    kv_per_token = 2 * (2 * 2 * 16 * 4)  # two attention layers: K and V, 2 kv heads x 16 dims, float32
    assert big - small == 1000 * kv_per_token


def test_tied_blocks_share_weights_and_keep_their_own_caches():
    cfg = archlab.presets.get("zamba-debug")
    m = archlab.build(cfg)
    shared = [i for i in range(cfg.n_layers) if cfg.layer_spec(i).tie]
    assert len(shared) == 2 and m.blocks[shared[0]] is m.blocks[shared[1]]
    assert archlab.count_params(cfg).total == m.num_params()
    cache = m.new_cache(1, 8)
    assert cache.layers[shared[0]] is not cache.layers[shared[1]]


def test_jamba_pattern_places_attention_and_moe():
    cfg = archlab.presets.get("jamba-v0.1")
    specs = [cfg.layer_spec(i) for i in range(8)]
    assert [s.mixer for s in specs] == ["ssm"] * 4 + ["attention"] + ["ssm"] * 3
    assert [s.ffn for s in specs] == ["dense", "moe"] * 4
    # one attention layer in eight: the cache is an eighth of a dense model's
    per_tok = archlab.cache_bytes_per_token(cfg, "bf16")
    assert per_tok == 4 * 8 * 128 * 2 * 2


@pytest.mark.parametrize("kind", ["linear", "retention", "gla", "deltanet", "gated_deltanet", "based"])
def test_linear_attention_layers_decode_like_the_full_forward(kind):
    cfg = BASE.replace(plan={"pattern": "LA"}, linear={"kind": kind, "heads": 4})
    m = archlab.build(cfg).eval()
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        full = m(ids)
        cache = m.new_cache(2, 16)
        out = torch.cat([m(ids[:, :5], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(5, 12)], 1)
    torch.testing.assert_close(out, full, atol=2e-5, rtol=1e-4)
    assert archlab.count_params(cfg).total == m.num_params()
    assert cache.nbytes() == archlab.cache_bytes(cfg, 16, 2, torch.float32)
    # the linear layer's state does not grow with the context
    attn_only = BASE.replace(n_layers=1)
    grow = archlab.cache_bytes(cfg, 1016, 1, torch.float32) - archlab.cache_bytes(cfg, 16, 1, torch.float32)
    assert grow == archlab.cache_bytes(attn_only, 1016, 1, torch.float32) - archlab.cache_bytes(attn_only, 16, 1, torch.float32)

"""Schedules, parameter groups, config validation and routing, MFU lookup."""
from __future__ import annotations


import pytest

import archlab
from archlab.errors import ConfigError
from archlab.train import RunConfig, TrainConfig, lr_at, param_groups, split_overrides
from archlab.train.mfu import lookup_peak, mfu, peak_flops


def test_warmup_then_cosine_to_floor():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert lrs[(10 + 99) // 2] == pytest.approx(0.55, abs=0.01)  # half way down the cosine


def test_wsd_and_constant():
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.0, schedule="wsd", decay_fraction=0.2)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[10:80] == [1.0] * 70
    assert lrs[-1] == pytest.approx(0.0) and lrs[80] < 1.0
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))
    const = TrainConfig(steps=50, warmup_steps=0, lr=0.5, schedule="constant")
    assert {lr_at(s, const) for s in range(50)} == {0.5}


def test_default_warmup_resolves():
    assert TrainConfig(steps=300).warmup == 30 and TrainConfig(steps=100_000).warmup == 1000
    run = RunConfig(model=archlab.presets.get("llama-3-debug"), train=TrainConfig(steps=300)).resolved(258)
    assert run.model.vocab_size == 258 and run.train.warmup_steps == 30


def test_param_groups_exempt_norms_biases_embeddings():
    cfg = archlab.presets.get("gpt2-debug")  # learned positions, biases, layernorms, tied head
    model = archlab.build(cfg)
    groups = param_groups(model, TrainConfig())
    by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert len(by_id) == len(names)  # every parameter once (the tied head is the embedding)
    for n, p in names.items():
        decayed = by_id[id(p)] > 0
        expect = p.dim() >= 2 and "embed" not in n and "positions" not in n
        assert decayed == expect, n
    everything = param_groups(model, TrainConfig(no_decay=()))
    assert len(everything) == 1 and everything[0]["weight_decay"] == 0.1


def test_config_errors_name_fields():
    with pytest.raises(ConfigError, match="train.grad_accum"):
        TrainConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ConfigError, match="train.warmup_steps"):
        TrainConfig(steps=10, warmup_steps=20)
    with pytest.raises(ConfigError, match="train.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="no_decay"):
        TrainConfig(no_decay=("norm", "weights"))
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig.from_dict({"lrate": 1.0})
    with pytest.raises(ConfigError, match="data.tokenizer"):
        TrainConfig.from_dict({"data": {"tokenizer": "bpe:12"}})


def test_split_overrides_routes_keys():
    got = split_overrides({"lr": 1e-3, "attention.kv_heads": 1, "data.max_docs": 5, "model.d_model": 32,
                           "train.steps": 3})
    assert got == {"train.lr": 1e-3, "model.attention.kv_heads": 1, "train.data.max_docs": 5, "model.d_model": 32,
                   "train.steps": 3}
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        split_overrides({"stepz": 3})
    run = RunConfig(model=archlab.presets.get("llama-3-debug")).replace(**got)
    assert run.train.lr == 1e-3 and run.model.attention.kv_heads == 1 and run.train.data.max_docs == 5


def test_peak_flops_table_and_override(monkeypatch):
    assert lookup_peak("NVIDIA H200") == 989e12
    assert lookup_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert lookup_peak("NVIDIA H100 PCIe") == 756e12
    assert lookup_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert lookup_peak("Some Unknown GPU") is None
    assert peak_flops("cpu") is None
    assert peak_flops("cpu", override=1e12) == 1e12
    monkeypatch.setenv("ARCHLAB_PEAK_FLOPS", "2e12")
    assert peak_flops("cpu") == 2e12
    assert mfu(1000.0, 6e9, 1e15, 2) == pytest.approx(1000 * 6e9 / 2e15)
    assert mfu(1000.0, 6e9, None) is None

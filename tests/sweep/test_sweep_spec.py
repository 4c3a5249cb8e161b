"""Sweep specs: built-ins load and plan, extends/scales merge, bad specs fail with named errors,
variants that do not validate are kept with their reason, budgets are matched."""
from __future__ import annotations

import pytest

from archlab.errors import ConfigError
from archlab.sweep.plan import plan_sweep
from archlab.sweep.spec import builtin_specs, load_spec, merge

TINY = {
    "name": "tiny",
    "base": {"preset": "llama-3-debug"},
    "train": {"seq_len": 32, "batch_size": 4},
    "budget": {"tokens": 1280},
    "comparisons": [{"name": "kv", "variants": [{"name": "mha", "set": {"attention.kv_heads": None}},
                                                {"name": "mqa", "set": {"attention.kv_heads": 1}}]}],
}


def spec(**over):
    return load_spec(merge(TINY, over))


def test_builtin_specs_load_and_plan_at_every_scale():
    names = builtin_specs()
    assert "chapter" in names and {"attention", "mixer", "moe", "position", "norm"} <= set(names)
    for name in names:
        s = load_spec(name)
        for scale in [None, *s.scales]:  # built on the meta device at the default scale only (time)
            plan = plan_sweep(load_spec(name, scale=scale), vocab_size=258, build_check=scale is None)
            assert plan.variants and not plan.skipped(), (name, scale, [(v.name, v.error) for v in plan.skipped()])
            for v in plan.valid():  # every matched variant lands within its tolerance
                assert v.budget is None or v.budget.within_tolerance, (name, scale, v.name, v.budget)


def test_chapter_covers_the_sections_and_shares_the_baseline():
    s = load_spec("chapter")
    assert [c.name for c in s.comparisons] == ["attention", "mixer", "moe", "position", "norm"]
    plan = plan_sweep(s, vocab_size=258)
    firsts = {plan.variants[[v.comparison for v in plan.variants].index(c.name)].config_hash for c in s.comparisons}
    assert len(firsts) == 1  # one baseline model, trained once for every comparison
    lm_groups = {g["key"] for g in plan.groups if g["kind"] == "lm"}
    assert len(lm_groups) == len({v.config_hash for v in plan.valid()})
    gpu = load_spec("chapter", scale="gpu")
    assert gpu.scale == "gpu" and gpu.train_config().seq_len > s.train_config().seq_len
    window = {v.name: v for v in gpu.comparisons[0].variants}["sliding window"].set["attention.window"]
    assert window == 128  # the scale merges into variants by name


def test_grid_and_named_variants():
    s = spec(comparisons=[{"name": "g", "variants": [{"name": "base"}],
                           "grid": {"attention.kv_heads": [1, 2], "norm.placement": ["pre", "post"]}}])
    names = [v.name for v in s.comparisons[0].all_variants()]
    assert names == ["base", "kv_heads=1,placement=pre", "kv_heads=1,placement=post", "kv_heads=2,placement=pre",
                     "kv_heads=2,placement=post"]


@pytest.mark.parametrize("over, field", [
    ({"seeds": []}, "seeds"),
    ({"lrs": [0.001, 0.001]}, "lrs"),
    ({"train": {"lr": 0.1}}, "train.lr"),
    ({"train": {"sequence_len": 8}}, "sequence_len"),
    ({"budget": {"match": "weights"}}, "budget.match"),
    ({"colour": "red"}, "colour"),
    ({"comparisons": [{"name": "a", "variants": [{"name": "x"}, {"name": "x"}]}]}, "variants"),
    ({"comparisons": [{"name": "a", "budget": {"reference": "zz"}, "variants": [{"name": "x"}]}]}, "reference"),
    ({"comparisons": [{"name": "a", "evals": ["mqar"], "variants": [{"name": "x"}]}]}, "evals"),
])
def test_bad_specs_name_the_field(over, field):
    with pytest.raises(ConfigError, match=field):
        spec(**over)


def test_unknown_builtin_and_scale():
    with pytest.raises(ConfigError, match="chapter"):
        load_spec("chaptr")
    with pytest.raises(ConfigError, match="gpu"):
        load_spec("chapter", scale="tpu")


def test_extends_a_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\nseeds: [3, 4]\nbase: {preset: llama-3-debug}\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\nname: child\n"
                                         "comparisons: [{name: a, variants: [{name: x}]}]\n")
    s = load_spec(tmp_path / "child.yaml")
    assert s.name == "child" and s.seeds == (3, 4)


def test_invalid_variants_are_kept_with_their_reason():
    s = spec(comparisons=[{"name": "kv", "variants": [
        {"name": "ok"},
        {"name": "typo", "set": {"attention.kv_head": 1}},
        {"name": "indivisible", "set": {"attention.kv_heads": 3}},
        {"name": "missing", "set": {"attention.kind": "sparse_magic"}},
    ]}])
    plan = plan_sweep(s, vocab_size=258)
    reasons = {v.name: v.error for v in plan.variants}
    assert reasons["ok"] is None
    assert "kv_head" in reasons["typo"] and "kv_heads" in reasons["indivisible"]
    assert "attention.kind" in reasons["missing"]
    assert len(plan.runs) == 1  # only the valid variant has runs


def test_budget_match_params_and_active_params():
    s = spec(comparisons=[
        {"name": "p", "budget": {"match": "params", "adjust": "ffn"},
         "variants": [{"name": "mha", "set": {"attention.kv_heads": None}}, {"name": "mqa", "set": {"attention.kv_heads": 1}}]},
        {"name": "w", "budget": {"match": "params", "adjust": "width"},
         "variants": [{"name": "big", "set": {"ffn.hidden": 256}}, {"name": "small", "set": {"ffn.hidden": 64}}]},
        {"name": "d", "budget": {"match": "non_embedding_params", "adjust": "depth"},
         "variants": [{"name": "four", "set": {"n_layers": 4}}, {"name": "two"}]},
        {"name": "e", "budget": {"match": "active_params", "adjust": "ffn"},
         "variants": [{"name": "dense", "set": {"ffn.hidden": 128}},
                      {"name": "moe", "set": {"plan.pattern": "E", "moe": {"num_experts": 4, "top_k": 2, "expert_hidden": 40}}}]},
    ])
    plan = plan_sweep(s, vocab_size=258)
    by = {(v.comparison, v.name): v for v in plan.variants}
    mqa = by["p", "mqa"]
    assert mqa.config.ffn.hidden > 128 and abs(mqa.budget.rel_error) < 0.05
    small = by["w", "small"]
    assert small.config.d_model > 64 and abs(small.budget.rel_error) < 0.05
    assert by["d", "two"].config.n_layers == 4
    moe = by["e", "moe"]
    assert moe.config.moe.expert_hidden in (56, 64, 72) and abs(moe.budget.rel_error) < 0.05

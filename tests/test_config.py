import pytest

import archlab
from archlab import ConfigError, ModelConfig
from archlab.attention import AttentionConfig
from archlab.config import LayerPlan, LayerSpec


def test_defaults_validate_and_round_trip(tmp_path):
    cfg = ModelConfig(plan=LayerPlan(pattern="AS", letters={"S": LayerSpec(set={"attention.window": 16})}))
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig.from_yaml(cfg.to_yaml()) == cfg
    cfg.to_json(tmp_path / "c.json")
    cfg.to_yaml(tmp_path / "c.yaml")
    assert ModelConfig.from_json(tmp_path / "c.json") == cfg
    assert ModelConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_dotted_replace_returns_new_config():
    cfg = ModelConfig()
    new = cfg.replace(**{"attention.kv_heads": 1, "norm.placement": "post", "d_model": 128})
    assert new.attention.kv_heads == 1 and new.norm.placement == "post" and new.d_model == 128
    assert cfg.attention.kv_heads is None  # the original is untouched
    assert new.get("attention.kv_heads") == 1


@pytest.mark.parametrize(
    "data, field",
    [
        ({"attention": {"heads": 8, "kv_heads": 3}}, "attention.kv_heads"),
        ({"d_model": 100, "attention": {"heads": 8}}, "attention.head_dim"),
        ({"attention": {"kind": "softmaxx"}}, "attention.kind"),
        ({"attention": {"kv_head": 2}}, "attention.kv_head"),
        ({"n_layers": -1}, "n_layers"),
        ({"d_model": 0}, "d_model"),
        ({"vocab_size": "big"}, "vocab_size"),
        ({"ffn": {"hidden": -4}}, "ffn.hidden"),
        ({"norm": {"placement": "middle"}}, "norm.placement"),
        ({"norm": {"kind": "rmsnorm", "bias": True}}, "norm.bias"),
        ({"attention": {"softcap": 30.0, "backend": "sdpa"}}, "attention.backend"),
        ({"plan": {"pattern": "AAZ"}}, "plan.pattern"),
        ({"n_layers": 3, "plan": {"pattern": "AA"}}, "plan.pattern"),
        ({"plan": {"pattern": "AS", "letters": {"S": {"set": {"attention.window": -1}}}}}, "attention.window"),
        ({"plan": {"letters": {"S": {"set": {"d_model": 3}}}}}, "set.d_model"),
        ({"plan": {"letters": {"S": {"mixer": "nope"}}}}, "mixer"),
        ({"position": {"rotary_fraction": 0.0}}, "position.rotary_fraction"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as e:
        ModelConfig.from_dict(data)
    assert field in str(e.value)


def test_direct_construction_is_checked_like_files():
    with pytest.raises(ConfigError, match="attention.kind"):
        AttentionConfig(kind="nope")
    with pytest.raises(ConfigError, match="attention.heads"):
        AttentionConfig(heads=2.5)


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(ConfigError, match="did you mean 'kv_heads'"):
        ModelConfig().replace(**{"attention.kv_head": 1})


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        ModelConfig.from_json(p)
    with pytest.raises(ConfigError, match="no such config file"):
        ModelConfig.from_json(tmp_path / "missing.json")


def test_layer_plan_pattern_letters_and_explicit_list():
    cfg = ModelConfig(n_layers=6, plan=LayerPlan(pattern="SSA", letters={"S": LayerSpec(set={"attention.window": 8})}))
    windows = [cfg.layer_config(i).attention.window for i in range(6)]
    assert windows == [8, 8, None, 8, 8, None]
    explicit = ModelConfig(n_layers=2, plan=LayerPlan(layers=(LayerSpec(), LayerSpec(set={"attention.kv_heads": 2}))))
    assert [explicit.layer_config(i).attention.n_kv for i in range(2)] == [8, 2]
    with pytest.raises(ConfigError, match="plan.layers"):
        ModelConfig(n_layers=3, plan=LayerPlan(layers=(LayerSpec(),)))


def test_layer_override_is_per_layer_in_the_built_model():
    cfg = ModelConfig(d_model=32, n_layers=2, attention=AttentionConfig(heads=4),
                      plan=LayerPlan(pattern="AG", letters={"G": LayerSpec(set={"attention.kv_heads": 1})}))
    m = archlab.build(cfg)
    assert m.blocks[0].mixer.k_proj.out_features == 32 and m.blocks[1].mixer.k_proj.out_features == 8
    assert archlab.count_params(cfg).total == m.num_params()

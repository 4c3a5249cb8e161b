"""Every positional encoding and RoPE scaling kind inside the model: prefill then
token-by-token decoding equals one full forward (float32); scaling can be switched on a
trained model without touching its weights."""
import pytest
import torch

import archlab
from archlab import ModelConfig
from archlab.position import PositionOutOfRangeError

ORIG = 8  # "trained" context of the scaled RoPE models
LONGF = tuple(1.0 + 0.5 * i for i in range(4))  # head_dim 8 -> 4 frequencies
SHORTF = tuple(1.0 + 0.1 * i for i in range(4))

POSITIONS = {
    "none": {"kind": "none"},
    "sinusoidal": {"kind": "sinusoidal"},
    "learned": {"kind": "learned", "max_positions": 32},
    "t5_shared": {"kind": "t5", "num_buckets": 8, "max_distance": 12},
    "t5_per_layer": {"kind": "t5", "num_buckets": 8, "max_distance": 12, "shared_across_layers": False},
    "alibi": {"kind": "alibi"},
    "rope": {"kind": "rope", "theta": 100.0},
    "rope_gptj_partial": {"kind": "rope", "interleaved": True, "rotary_fraction": 0.5},
    **{
        f"rope_{k}": {"kind": "rope", "max_positions": ORIG, "scaling": {"kind": k, "factor": 4.0}}
        for k in ("linear", "ntk", "dynamic", "yarn", "llama3")
    },
    "rope_yarn_deepseek": {"kind": "rope", "max_positions": ORIG, "scaling": {
        "kind": "yarn", "factor": 4.0, "mscale": 0.707, "mscale_all_dim": 0.707}},
    **{
        f"rope_longrope_{sel}": {"kind": "rope", "max_positions": ORIG, "scaling": {
            "kind": "longrope", "factor": 4.0, "short_factor": SHORTF, "long_factor": LONGF, "longrope_select": sel}}
        for sel in ("long", "short", "by_length")
    },
}
LENGTH_DEPENDENT = {"rope_dynamic", "rope_longrope_by_length"}


def tiny(position: dict, backend: str = "eager", **attention) -> ModelConfig:
    return ModelConfig.from_dict({
        "vocab_size": 53, "d_model": 24, "n_layers": 2,
        "attention": {"heads": 3, "kv_heads": 1, "head_dim": 8, "backend": backend, **attention},
        "ffn": {"hidden": 32}, "position": position,
    })


def perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def decode(model, ids, prefill):
    cache = model.new_cache(batch_size=ids.shape[0], max_len=ids.shape[1])
    outs = [model(ids[:, :prefill], cache=cache)]
    outs += [model(ids[:, t:t + 1], cache=cache) for t in range(prefill, ids.shape[1])]
    return torch.cat(outs, 1)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("name", list(POSITIONS))
def test_prefill_then_decode_equals_full_forward(name, backend):
    model = archlab.build(tiny(POSITIONS[name], backend)).eval()
    perturb(model)
    T = ORIG if name in LENGTH_DEPENDENT else 3 * ORIG + 1  # scaled kinds run past the trained length
    ids = torch.randint(0, 53, (2, T))
    with torch.no_grad():
        full = model(ids)
        for prefill in (1, 5):
            torch.testing.assert_close(decode(model, ids, prefill), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["alibi", "t5_per_layer", "rope", "rope_yarn", "rope_longrope_long"])
def test_sliding_window_cache_with_sinks(name):
    """A sliding-window cache hands keys back from a ring buffer (plus sink tokens): biases and
    rotations must follow positions, not slot indices."""
    model = archlab.build(tiny(POSITIONS[name], window=4, sinks=1)).eval()
    perturb(model)
    ids = torch.randint(0, 53, (2, 3 * ORIG))
    with torch.no_grad():
        full = model(ids)
        for prefill in (1, 6):
            torch.testing.assert_close(decode(model, ids, prefill), full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(LENGTH_DEPENDENT))
def test_length_dependent_decoding_past_the_trained_length_keeps_old_rotations(name):
    """Documented behaviour: cached keys keep the frequencies of the length at which they
    were written, so past the trained length cached decoding departs from one full forward
    (transformers behaves the same way); before it, both agree."""
    model = archlab.build(tiny(POSITIONS[name])).eval()
    perturb(model)
    ids = torch.randint(0, 53, (1, 3 * ORIG))
    with torch.no_grad():
        cached = decode(model, ids, 2)
        short = model(ids[:, :ORIG])
        full = model(ids)
    torch.testing.assert_close(cached[:, :ORIG], short, atol=2e-5, rtol=1e-4)
    assert (cached[:, ORIG:] - full[:, ORIG:]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["linear", "ntk", "dynamic", "yarn", "llama3", "longrope"])
def test_scaling_switches_on_a_trained_model_with_the_same_weights(kind):
    base = tiny({"kind": "rope", "max_positions": ORIG})
    trained = archlab.build(base).eval()
    perturb(trained)
    over = {"position.scaling.kind": kind, "position.scaling.factor": 4}
    if kind == "longrope":
        over |= {"position.scaling.short_factor": SHORTF, "position.scaling.long_factor": LONGF}
    extended = archlab.build(base.replace(**over)).eval()
    assert extended.state_dict().keys() == trained.state_dict().keys()
    extended.load_state_dict(trained.state_dict(), strict=True)
    ids = torch.randint(0, 53, (1, 4 * ORIG))
    with torch.no_grad():
        assert (extended(ids) - trained(ids)).abs().max() > 1e-4  # the scaling took effect
    assert archlab.count_params(base.replace(**over)).total == archlab.count_params(base).total


@pytest.mark.parametrize("name", ["learned", "t5_shared", "t5_per_layer", "sinusoidal", "alibi"])
def test_parameter_count_matches_the_analysis(name):
    cfg = tiny(POSITIONS[name])
    model = archlab.build(cfg)
    assert sum(p.numel() for p in model.parameters()) == archlab.count_params(cfg).total
    tables = [p for n, p in model.named_parameters() if n.startswith("positions.")]
    expected = {"learned": 1, "t5_shared": 1, "t5_per_layer": 2}.get(name, 0)
    assert len(tables) == expected


def test_learned_positions_past_the_table_raise_a_clear_error():
    model = archlab.build(tiny({"kind": "learned", "max_positions": 6})).eval()
    with pytest.raises(PositionOutOfRangeError, match=r"position\.max_positions"):
        model(torch.zeros(1, 7, dtype=torch.long))
    cache = model.new_cache(batch_size=1, max_len=10)
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(PositionOutOfRangeError, match="got position 6"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)

"""RoPE scaling kinds: formulas written from their papers, then transformers conformance.

transformers 5.x takes the scaling as ``rope_parameters={"rope_type": ..., "rope_theta": ...}``
(``rope_scaling=`` is still mapped onto it); its ``ROPE_INIT_FUNCTIONS[kind](config, seq_len=)``
returns (inv_freq, attention_factor), the same pair as ``scaled_inv_freq``.
"""
import math

import pytest
import torch

from archlab.errors import ConfigError
from archlab.position import PositionConfig, build_position, scaled_inv_freq, yarn_softmax_scale_multiplier

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

D = 32  # rotary dims in most tests
SHORT = tuple(1.0 + 0.05 * i for i in range(D // 2))
LONG = tuple(1.0 + 0.7 * i for i in range(D // 2))


def cfg(kind, theta=10000.0, **scaling):
    return PositionConfig(theta=theta, scaling={"kind": kind, **scaling})


def thetas(base, d=D):
    return [base ** (-2 * i / d) for i in range(d // 2)]


def close(got, want, rtol=1e-12):
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=rtol, atol=0)


# ---------------------------------------------------------------- formulas from the papers
def test_linear_is_position_interpolation():
    inv, af = scaled_inv_freq(cfg("linear", factor=4.0), D)
    close(inv, [t / 4 for t in thetas(10000.0)])  # theta_i m / s: positions divided by s
    assert af == 1.0


def test_ntk_aware_base_keeps_highest_and_stretches_lowest_by_factor():
    inv, _ = scaled_inv_freq(cfg("ntk", factor=8.0), D)
    close(inv, thetas(10000.0 * 8.0 ** (D / (D - 2))))
    base = thetas(10000.0)
    assert inv[0] == base[0]
    assert math.isclose(inv[-1].item(), base[-1] / 8.0, rel_tol=1e-12)


@pytest.mark.parametrize("length", [10, 64, 65, 100, 1000])
def test_dynamic_factor_follows_length(length):
    s, L = 4.0, 64
    inv, _ = scaled_inv_freq(cfg("dynamic", factor=s, original_max_positions=L), D, torch.tensor(length))
    alpha = max(1.0, s * length / L - (s - 1))  # emozilla: 1 up to L, then + s per further L tokens
    close(inv, thetas(10000.0 * alpha ** (D / (D - 2))))


def yarn_reference(theta, d, s, L, beta_fast, beta_slow):
    """YaRN (Peng et al. 2023) eq. 17-19, with the ramp's ends as whole dims as in the authors' code."""
    def dim_of(r):  # the dim whose rotation count over L is r: L / (2 pi theta^(2i/d)) = r
        return d * math.log(L / (2 * math.pi * r)) / (2 * math.log(theta))

    lo, hi = max(math.floor(dim_of(beta_fast)), 0), min(math.ceil(dim_of(beta_slow)), d - 1)
    out = []
    for i, th in enumerate(thetas(theta, d)):
        gamma = 1.0 - min(max((i - lo) / (hi - lo), 0.0), 1.0)  # 1 = keep (extrapolate), 0 = interpolate
        out.append((1 - gamma) * th / s + gamma * th)
    return out


@pytest.mark.parametrize("theta,L,s", [(10000.0, 256, 4.0), (500000.0, 4096, 16.0), (10000.0, 2048, 32.0)])
def test_yarn_frequencies_and_temperature(theta, L, s):
    c = cfg("yarn", theta=theta, factor=s, original_max_positions=L)
    inv, af = scaled_inv_freq(c, D)
    close(inv, yarn_reference(theta, D, s, L, 32.0, 1.0))
    assert math.isclose(af, 0.1 * math.log(s) + 1.0)  # sqrt(1/t), eq. 22
    # regimes of eq. 18: many rotations over L -> kept; fewer than one -> divided by s
    seen = set()
    for got, th in zip(inv.tolist(), thetas(theta)):
        r = L * th / (2 * math.pi)  # rotations over the trained context
        if r > 32:
            assert math.isclose(got, th, rel_tol=1e-12)
            seen.add("kept")
        elif r < 1:
            assert math.isclose(got, th / s, rel_tol=1e-12)
            seen.add("interpolated")
        else:
            assert th / s - 1e-15 <= got <= th + 1e-15
    assert seen == {"kept", "interpolated"}


def test_yarn_temperature_scales_rotated_logits():
    c = cfg("yarn", factor=16.0, original_max_positions=64)
    m = build_position(c, n_heads=1, head_dim=D, d_model=D)
    q, k = torch.randn(1, 1, 1, D, dtype=torch.float64), torch.randn(1, 1, 1, D, dtype=torch.float64)
    qr, kr = m.rotate(q, k, torch.tensor([[7]]))
    # same position: the rotation cancels, the logit scales by attention_factor^2 = 1/t
    torch.testing.assert_close((qr * kr).sum(), (q * k).sum() * (0.1 * math.log(16.0) + 1) ** 2)


def test_llama3_rule():
    s, L, lo, hi = 8.0, 256, 1.0, 4.0
    inv, af = scaled_inv_freq(cfg("llama3", factor=s, original_max_positions=L, low_freq_factor=lo, high_freq_factor=hi), D)
    want, seen = [], set()
    for th in thetas(10000.0):
        wavelen = 2 * math.pi / th
        if wavelen < L / hi:
            want.append(th)
            seen.add("high")
        elif wavelen > L / lo:
            want.append(th / s)
            seen.add("low")
        else:
            smooth = (L / wavelen - lo) / (hi - lo)
            want.append((1 - smooth) * th / s + smooth * th)
            seen.add("medium")
    assert seen == {"high", "medium", "low"}  # the test covers all three bands
    close(inv, want)
    assert af == 1.0


@pytest.mark.parametrize("select", ["short", "long"])
def test_longrope_per_dimension_factors(select):
    s, L = 16.0, 256
    c = cfg("longrope", factor=s, original_max_positions=L, short_factor=SHORT, long_factor=LONG, longrope_select=select)
    inv, af = scaled_inv_freq(c, D)
    lam = SHORT if select == "short" else LONG
    close(inv, [th / l for th, l in zip(thetas(10000.0), lam)])
    assert math.isclose(af, math.sqrt(1 + math.log(s) / math.log(L)))


def test_longrope_by_length_switches_past_original():
    c = cfg("longrope", factor=4.0, original_max_positions=64, short_factor=SHORT, long_factor=LONG, longrope_select="by_length")
    short, _ = scaled_inv_freq(c, D, torch.tensor(64))
    long, _ = scaled_inv_freq(c, D, torch.tensor(65))
    close(short, [th / l for th, l in zip(thetas(10000.0), SHORT)])
    close(long, [th / l for th, l in zip(thetas(10000.0), LONG)])


def test_explicit_attention_factor_overrides_default():
    assert scaled_inv_freq(cfg("yarn", factor=4.0, original_max_positions=64, attention_factor=0.5), D)[1] == 0.5
    c = cfg("longrope", factor=4.0, original_max_positions=64, short_factor=SHORT, long_factor=LONG, attention_factor=1.25)
    assert scaled_inv_freq(c, D)[1] == 1.25


# ---------------------------------------------------------------- transformers conformance
def hf_config(kind, theta=10000.0, head_dim=D, partial=1.0, max_pos=256, **params):
    from transformers import LlamaConfig

    rp = {"rope_type": kind, "rope_theta": theta, **params}
    if partial != 1.0:
        rp["partial_rotary_factor"] = partial
    return LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, head_dim=head_dim, max_position_embeddings=max_pos, rope_parameters=rp)


def ours(kind, theta=10000.0, partial=1.0, **scaling):
    return PositionConfig(theta=theta, rotary_fraction=partial, scaling={"kind": kind, **scaling})


CASES = [
    ("linear", {"factor": 4.0}, {"factor": 4.0}),
    ("yarn", {"factor": 4.0, "original_max_position_embeddings": 64}, {"factor": 4.0, "original_max_positions": 64}),
    ("yarn", {"factor": 32.0, "original_max_position_embeddings": 4096, "beta_fast": 16.0, "beta_slow": 2.0},
     {"factor": 32.0, "original_max_positions": 4096, "beta_fast": 16.0, "beta_slow": 2.0}),
    ("yarn", {"factor": 8.0, "original_max_position_embeddings": 512, "truncate": False},
     {"factor": 8.0, "original_max_positions": 512, "truncate": False}),
    ("yarn", {"factor": 8.0, "original_max_position_embeddings": 512, "attention_factor": 0.8},
     {"factor": 8.0, "original_max_positions": 512, "attention_factor": 0.8}),
    ("yarn", {"factor": 40.0, "original_max_position_embeddings": 4096, "mscale": 0.707, "mscale_all_dim": 1.0},
     {"factor": 40.0, "original_max_positions": 4096, "mscale": 0.707, "mscale_all_dim": 1.0}),
    ("llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
     {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_positions": 128}),
    ("llama3", {"factor": 32.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0, "original_max_position_embeddings": 8192},
     {"factor": 32.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0, "original_max_positions": 8192}),
    ("longrope", {"factor": 4.0, "short_factor": list(SHORT), "long_factor": list(LONG), "original_max_position_embeddings": 64},
     {"factor": 4.0, "short_factor": SHORT, "long_factor": LONG, "original_max_positions": 64, "longrope_select": "short"}),
]


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
@pytest.mark.parametrize("kind,hf_params,our_params", CASES)
def test_matches_transformers_init_functions(kind, hf_params, our_params, theta):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    want_inv, want_af = ROPE_INIT_FUNCTIONS[kind](hf_config(kind, theta, **hf_params))
    got_inv, got_af = scaled_inv_freq(ours(kind, theta, **our_params), D)
    torch.testing.assert_close(got_inv.float(), want_inv, rtol=1e-6, atol=0)
    assert math.isclose(got_af, want_af, rel_tol=1e-12)


@pytest.mark.parametrize("kind,hf_params,our_params", [CASES[1], CASES[6]])
def test_partial_rotary_matches_transformers(kind, hf_params, our_params):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    want_inv, want_af = ROPE_INIT_FUNCTIONS[kind](hf_config(kind, head_dim=64, partial=0.5, **hf_params))
    got_inv, got_af = scaled_inv_freq(ours(kind, partial=0.5, **our_params), 32)
    torch.testing.assert_close(got_inv.float(), want_inv, rtol=1e-6, atol=0)
    assert got_af == want_af


@pytest.mark.parametrize("seq_len", [None, 16, 64, 65, 200, 1000])
def test_dynamic_and_longrope_lengths_match_transformers(seq_len):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    # transformers' dynamic NTK reads the trained length from max_position_embeddings
    hf = hf_config("dynamic", max_pos=64, factor=4.0)
    want, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf, seq_len=seq_len)
    got, _ = scaled_inv_freq(ours("dynamic", factor=4.0, original_max_positions=64), D, None if seq_len is None else torch.tensor(seq_len))
    torch.testing.assert_close(got.float(), want, rtol=1e-6, atol=0)

    hf = hf_config("longrope", factor=4.0, short_factor=list(SHORT), long_factor=list(LONG), original_max_position_embeddings=64)
    want, want_af = ROPE_INIT_FUNCTIONS["longrope"](hf, seq_len=seq_len)
    c = ours("longrope", factor=4.0, short_factor=SHORT, long_factor=LONG, original_max_positions=64, longrope_select="by_length")
    got, got_af = scaled_inv_freq(c, D, None if seq_len is None else torch.tensor(seq_len))
    torch.testing.assert_close(got.float(), want, rtol=1e-6, atol=0)
    assert math.isclose(got_af, want_af)


def test_ntk_equals_transformers_dynamic_at_factor_times_length():
    # dynamic NTK with factor 1 at length s*L uses alpha = s: the static NTK-aware base
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    want, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf_config("dynamic", max_pos=64, factor=1.0), seq_len=8 * 64)
    got, _ = scaled_inv_freq(ours("ntk", factor=8.0), D)
    torch.testing.assert_close(got.float(), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mscale", [1.0, 0.707])
def test_deepseek_v3_yarn_and_softmax_scale(mscale):
    """DeepSeek-V3: YaRN factor 40 over 4096, mscale = mscale_all_dim (V2-Lite: 0.707)."""
    from transformers import DeepseekV3Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import yarn_apply_mscale

    rp = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
          "beta_fast": 32.0, "beta_slow": 1.0, "mscale": mscale, "mscale_all_dim": mscale}
    hf = DeepseekV3Config(hidden_size=64, num_attention_heads=2, qk_rope_head_dim=64, qk_nope_head_dim=128,
                          max_position_embeddings=163840, rope_parameters=dict(rp))
    want_inv, want_af = ROPE_INIT_FUNCTIONS["yarn"](hf)
    c = PositionConfig(interleaved=True, scaling={"kind": "yarn", "factor": 40.0, "original_max_positions": 4096,
                                                  "mscale": mscale, "mscale_all_dim": mscale})
    got_inv, got_af = scaled_inv_freq(c, 64)
    torch.testing.assert_close(got_inv.float(), want_inv, rtol=1e-6, atol=0)
    assert got_af == want_af == 1.0  # equal mscales: no cos/sin factor...
    mult = yarn_softmax_scale_multiplier(c)  # ...the temperature is all in the softmax scale
    assert math.isclose(mult, yarn_apply_mscale(hf.rope_parameters, 1.0), rel_tol=1e-12)
    assert math.isclose(mult, (0.1 * mscale * math.log(40.0) + 1) ** 2)
    assert yarn_softmax_scale_multiplier(c.scaling) == mult
    assert yarn_softmax_scale_multiplier(cfg("yarn", factor=40.0, original_max_positions=4096)) == 1.0
    assert yarn_softmax_scale_multiplier(PositionConfig()) == 1.0


def test_dynamic_call_sequence_matches_transformers_rotary_module():
    """Prefill then token-by-token, crossing the trained length: cos/sin equal at every call."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hf = LlamaRotaryEmbedding(hf_config("dynamic", max_pos=16, factor=2.0))
    m = build_position(ours("dynamic", factor=2.0, original_max_positions=16), n_heads=2, head_dim=D, d_model=2 * D)
    x = torch.zeros(1)
    calls = [torch.arange(12)[None]] + [torch.tensor([[p]]) for p in range(12, 40)] + [torch.arange(10)[None]]
    for pos in calls:
        cos_hf, sin_hf = hf(x, pos)  # [B, T, 2R] (the two halves repeat)
        cos, sin = m.angles(pos)  # [B, 1, T, R]
        torch.testing.assert_close(cos[:, 0], cos_hf[..., : D // 2], atol=2e-5, rtol=0)
        torch.testing.assert_close(sin[:, 0], sin_hf[..., : D // 2], atol=2e-5, rtol=0)


def test_longrope_by_length_call_sequence_matches_transformers_rotary_module():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    hfc = hf_config("longrope", factor=4.0, short_factor=list(SHORT), long_factor=list(LONG), original_max_position_embeddings=16)
    hf = LlamaRotaryEmbedding(hfc)
    c = ours("longrope", factor=4.0, short_factor=SHORT, long_factor=LONG, original_max_positions=16, longrope_select="by_length")
    m = build_position(c, n_heads=2, head_dim=D, d_model=2 * D)
    x = torch.zeros(1)
    for pos in [torch.arange(10)[None]] + [torch.tensor([[p]]) for p in range(10, 24)] + [torch.arange(8)[None]]:
        cos_hf, sin_hf = hf(x, pos)
        cos, sin = m.angles(pos)
        torch.testing.assert_close(cos[:, 0], cos_hf[..., : D // 2], atol=2e-5, rtol=0)
        torch.testing.assert_close(sin[:, 0], sin_hf[..., : D // 2], atol=2e-5, rtol=0)


# ---------------------------------------------------------------- switching on a trained model
def test_every_scaling_kind_keeps_state_dict_and_needs_no_parameters():
    base = PositionConfig(max_positions=64)
    for kind, extra in [("none", {}), ("linear", {}), ("ntk", {}), ("dynamic", {}), ("yarn", {}), ("llama3", {}),
                        ("longrope", {"scaling.short_factor": SHORT, "scaling.long_factor": LONG})]:
        c = base.replace(**{"scaling.kind": kind, "scaling.factor": 1.0 if kind == "none" else 4.0, **extra})
        m = build_position(c, n_heads=2, head_dim=D, d_model=2 * D)
        assert m.state_dict() == {} and list(m.parameters()) == []


def test_issue_example_uses_max_positions_as_original():
    c = PositionConfig(max_positions=128).replace(**{"scaling.kind": "yarn", "scaling.factor": 4})
    assert c.original_max_positions == 128 and c.scaling.factor == 4.0


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "scaling,field",
    [
        ({"kind": "linear", "factor": 0.5}, "position.scaling.factor"),
        ({"kind": "yarn", "factor": 4.0}, "position.scaling.original_max_positions"),
        ({"kind": "llama3", "factor": 8.0, "original_max_positions": 64, "high_freq_factor": 0.5}, "position.scaling.high_freq_factor"),
        ({"kind": "yarn", "factor": 2.0, "original_max_positions": 64, "beta_fast": 0.5}, "position.scaling.beta_fast"),
        ({"kind": "linear", "factor": 2.0, "mscale": 1.0}, "position.scaling.mscale"),
        ({"kind": "llama3", "factor": 2.0, "original_max_positions": 64, "attention_factor": 1.0}, "position.scaling.attention_factor"),
        ({"kind": "longrope", "factor": 2.0, "original_max_positions": 64}, "position.scaling.short_factor"),
        ({"kind": "longrope", "factor": 2.0, "original_max_positions": 64, "short_factor": [1.0], "long_factor": [1.0, 2.0]},
         "position.scaling.long_factor"),
        ({"kind": "yarn", "short_factor": [1.0]}, "position.scaling.short_factor"),
        ({"kind": "yarm"}, "kind"),
        ({"kind": "none", "factor": 4.0}, "position.scaling.factor"),
    ],
)
def test_bad_scaling_names_its_field(scaling, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        PositionConfig.from_dict({"kind": "rope", "scaling": scaling})


def test_scaling_needs_rope_and_longrope_lengths_are_checked_at_build():
    with pytest.raises(ConfigError, match=r"position\.scaling\.kind"):
        PositionConfig(kind="alibi", scaling={"kind": "linear", "factor": 2.0})
    c = ours("longrope", factor=2.0, original_max_positions=64, short_factor=(1.0, 1.0), long_factor=(1.0, 2.0))
    with pytest.raises(ConfigError, match=r"position\.scaling\.short_factor.*16"):
        build_position(c, n_heads=2, head_dim=D, d_model=2 * D)

"""Any config either builds and runs a forward pass with the documented output shape, or
raises ConfigError while being constructed (before anything is allocated) -- never another
exception."""
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archlab
from archlab import ConfigError, ModelConfig

small = st.integers(min_value=-2, max_value=12)
maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731

attention = st.fixed_dictionaries({}, optional={
    "heads": small, "kv_heads": maybe(small), "head_dim": maybe(small),
    "qkv_bias": st.booleans(), "out_bias": st.booleans(),
    "qk_norm": st.sampled_from(["none", "head", "full", "bad"]),
    "softcap": maybe(st.floats(-1, 50, allow_nan=False)), "window": maybe(small),
    "backend": st.sampled_from(["auto", "eager", "sdpa", "flash?"]),
})
position = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["none", "rope", "learned", "sinusoidal", "alibi", "t5", "xpos"]),
    "rotary_fraction": st.floats(-0.5, 1.5, allow_nan=False), "interleaved": st.booleans(),
    "max_positions": maybe(st.integers(-4, 64)),
})
ffn = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["mlp", "swiglu", "geglu", "moe?"]), "hidden": maybe(small), "bias": st.booleans(),
    "activation": maybe(st.sampled_from(["gelu", "silu", "relu", "gelu_tanh", "swish"])),
})
norm = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["rmsnorm", "layernorm", "batchnorm"]), "bias": st.booleans(),
    "unit_offset": st.booleans(), "eps": st.floats(-1e-3, 1e-3, allow_nan=False),
    "placement": st.sampled_from(["pre", "post", "output", "sandwich", "parallel", "parallel_shared", "mid"]),
    "final_norm": st.booleans(), "embedding_norm": st.booleans(),
})
plan = st.fixed_dictionaries({}, optional={
    "pattern": st.sampled_from(["A", "AA", "AS", "SA", "AAA", "X", "AE", "MA", "M", "EM"]),
    "letters": st.just({"S": {"set": {"attention.window": 2}}}),
})
moe = st.fixed_dictionaries({}, optional={
    "num_experts": st.integers(-1, 6), "top_k": st.integers(-1, 4), "expert_hidden": st.integers(-1, 16),
    "router": st.sampled_from(["softmax_topk", "topk_softmax", "sigmoid", "hash", "expert_choice", "bogus"]),
    "shared_experts": st.integers(-1, 2), "capacity_factor": maybe(st.floats(-1, 2, allow_nan=False)),
    "n_group": st.integers(0, 3), "topk_group": st.integers(0, 3), "correction_bias": st.booleans(),
})
ssm = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["mamba", "mamba2", "s4"]), "d_state": st.integers(-1, 8), "expand": st.integers(-1, 3),
    "head_dim": maybe(st.integers(-1, 16)), "dt_rank": maybe(st.integers(-1, 4)), "d_conv": st.integers(-1, 4),
})
configs = st.fixed_dictionaries({}, optional={
    "vocab_size": st.integers(-1, 40), "d_model": small, "n_layers": st.integers(-1, 4),
    "attention": attention, "position": position, "ffn": ffn, "norm": norm, "plan": plan,
    "moe": maybe(moe), "ssm": maybe(ssm),
    "tie_embeddings": st.booleans(), "embed_scale": maybe(st.floats(-1, 4, allow_nan=False)),
    "logit_softcap": maybe(st.floats(-1, 30, allow_nan=False)), "unknown_key": st.integers(),
})


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=configs, T=st.integers(1, 6))
def test_any_config_builds_or_raises_config_error(data, T):
    try:
        cfg = ModelConfig.from_dict(data)
    except ConfigError:
        return
    model = archlab.build(cfg)  # must not raise: the config was accepted
    ids = torch.randint(0, cfg.vocab_size, (2, T))
    if cfg.position.max_positions is not None and T > cfg.position.max_positions:
        return
    out = model(ids)
    assert out.shape == (2, T, cfg.vocab_size)
    assert torch.isfinite(out).all()

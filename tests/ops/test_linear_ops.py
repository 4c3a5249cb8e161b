"""Linear-attention ops: the parallel, chunk and recurrent forms agree (outputs, final states,
gradients of every input), across lengths not divisible by the chunk size and dtypes; the gated
delta rule matches transformers' Qwen3-Next reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.ops.delta_rule import delta_rule, gated_delta_rule, l2norm
from archlab.ops.gla import gla
from archlab.ops.linear_attn import linear_attn
from archlab.ops.simple_gla import retention, retention_log_decay, simple_gla

FORMS = ("parallel", "chunk", "recurrent")
B, H, DK, DV, CHUNK = 2, 2, 4, 3, 8


def make_inputs(op: str, T: int, dtype=torch.float64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = r(B, H, T, DK), r(B, H, T, DK), r(B, H, T, DV)
    args = {"q": q, "k": k, "v": v}
    kw = {"initial_state": r(B, H, DK, DV)}
    if op == "linear_norm":
        args["q"], args["k"] = F.elu(q) + 1, F.elu(k) + 1  # positive features: a safe normaliser
        kw["initial_state"] = (r(B, H, DK, DV), torch.rand(B, H, DK, generator=g, dtype=torch.float64))
    if op in ("simple_gla", "gated_delta"):
        args["g"] = F.logsigmoid(r(B, H, T) + 1.0)
    if op == "gla":
        args["g"] = F.logsigmoid(r(B, H, T, DK) + 1.0)
    if op in ("delta", "gated_delta"):
        args["q"], args["k"] = l2norm(q), l2norm(k)  # the delta rule is stable for unit keys
        args["beta"] = torch.rand(B, H, T, generator=g, dtype=torch.float64)
    cast = lambda x: x.to(dtype) if torch.is_tensor(x) else tuple(t.to(dtype) for t in x)  # noqa: E731
    return {n: cast(x) for n, x in args.items()}, {n: cast(x) for n, x in kw.items()}


def call(op: str, args: dict, kw: dict, form: str, chunk_size: int = CHUNK):
    common = dict(form=form, chunk_size=chunk_size, output_final_state=True, **kw)
    if op == "linear":
        return linear_attn(args["q"], args["k"], args["v"], **common)
    if op == "linear_norm":
        return linear_attn(args["q"], args["k"], args["v"], normalize=True, **common)
    if op == "simple_gla":
        return simple_gla(args["q"], args["k"], args["v"], args["g"], **common)
    if op == "gla":
        return gla(args["q"], args["k"], args["v"], args["g"], **common)
    if op == "delta":
        return delta_rule(args["q"], args["k"], args["v"], args["beta"], **common)
    return gated_delta_rule(args["q"], args["k"], args["v"], args["g"], args["beta"], **common)


OPS = ("linear", "linear_norm", "simple_gla", "gla", "delta", "gated_delta")


def leaves(args, kw):
    out = list(args.values())
    for x in kw.values():
        out += [x] if torch.is_tensor(x) else list(x)
    return out


def run_with_grads(op, args, kw, form):
    args = {n: x.clone().requires_grad_() for n, x in args.items()}
    kw = {n: (x.clone().requires_grad_() if torch.is_tensor(x) else tuple(t.clone().requires_grad_() for t in x))
          for n, x in kw.items()}
    o, s = call(op, args, kw, form)
    states = [s] if torch.is_tensor(s) else list(s)
    loss = (o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
    loss = loss + sum((st * st.detach().cos()).sum() for st in states)
    grads = torch.autograd.grad(loss, leaves(args, kw))
    return o.detach(), [st.detach() for st in states], grads


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("T", [1, 16, 21])
def test_forms_agree_float64(op, T):
    args, kw = make_inputs(op, T)
    ref = run_with_grads(op, args, kw, "parallel")
    for form in ("chunk", "recurrent"):
        out = run_with_grads(op, args, kw, form)
        torch.testing.assert_close(out[0], ref[0], rtol=1e-10, atol=1e-10, msg=f"{op} {form} output")
        for a, b in zip(out[1], ref[1]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{op} {form} final state")
        for i, (a, b) in enumerate(zip(out[2], ref[2])):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"{op} {form} grad of input {i}")


@pytest.mark.parametrize("op", OPS)
def test_float32_matches_float64(op):
    args, kw = make_inputs(op, 19)
    ref_o, ref_s = call(op, args, kw, "parallel")
    args32, kw32 = make_inputs(op, 19, torch.float32)
    for form in FORMS:
        o, s = call(op, args32, kw32, form)
        assert o.dtype == torch.float32
        torch.testing.assert_close(o.double(), ref_o, rtol=1e-4, atol=1e-4)
        for a, b in zip([s] if torch.is_tensor(s) else s, [ref_s] if torch.is_tensor(ref_s) else ref_s):
            torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", OPS)
def test_bfloat16_inputs(op):
    """Low-precision inputs are computed in float32 (outputs come back in bf16)."""
    args, kw = make_inputs(op, 19)
    ref_o, _ = call(op, args, kw, "parallel")
    args16, kw16 = make_inputs(op, 19, torch.bfloat16)
    for form in FORMS:
        o, s = call(op, args16, kw16, form)
        assert o.dtype == torch.bfloat16
        assert (s if torch.is_tensor(s) else s[0]).dtype == torch.float32
        torch.testing.assert_close(o.double(), ref_o, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("op", ["linear", "simple_gla", "gla"])
def test_tensor_core_operands_close(op):
    """The chunk_compiled path's bf16 matmul operands (run here uncompiled) stay within bf16 error."""
    from archlab.ops.gla.chunk import gla_chunk
    from archlab.ops.linear_attn.chunk import linear_attn_chunk
    from archlab.ops.simple_gla.chunk import simple_gla_chunk

    args, kw = make_inputs(op, 40)
    ref_o, _ = call(op, args, {}, "parallel")
    a16 = {n: x.to(torch.bfloat16) for n, x in args.items()}
    q, k, v = a16["q"], a16["k"], a16["v"]
    common = dict(scale=DK ** -0.5, chunk_size=16, mm_dtype=torch.bfloat16)
    if op == "linear":
        o = linear_attn_chunk(q, k, v, None, None, normalize=False, eps=0.0, **common)[0]
    elif op == "simple_gla":
        o = simple_gla_chunk(q, k, v, args["g"].float(), None, **common)[0]
    else:
        o = gla_chunk(q, k, v, args["g"].float(), None, **common)[0]
    assert o.dtype == torch.float32
    torch.testing.assert_close(o.double(), ref_o, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("op", ["simple_gla", "gla", "linear"])
def test_long_scan_two_level(op):
    """More chunks than one scan group (32): the grouped inter-chunk scan still agrees."""
    args, kw = make_inputs(op, 150)
    ref_o, ref_s = call(op, args, kw, "parallel")
    o, s = call(op, args, kw, "chunk", chunk_size=2)
    torch.testing.assert_close(o, ref_o, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, ref_s, rtol=1e-10, atol=1e-10)


def test_gla_extreme_gates_stay_finite():
    """Log gates of -200 (decay to exactly 0) must not overflow any form."""
    args, kw = make_inputs("gla", 37)
    args["g"][:, :, 5:12] = -200.0
    args["g"][0, 1, 20:, :2] = -500.0
    ref = run_with_grads("gla", args, kw, "parallel")
    out = run_with_grads("gla", args, kw, "chunk")
    assert all(torch.isfinite(g).all() for g in out[2])
    torch.testing.assert_close(out[0], ref[0], rtol=1e-10, atol=1e-10)
    for a, b in zip(out[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_retention_is_simple_gla_with_fixed_decay():
    args, _ = make_inputs("linear", 13)
    gamma = retention_log_decay(H)
    assert torch.allclose(gamma.exp(), 1 - 2.0 ** (-5 - torch.arange(H, dtype=torch.float32)))
    o, _ = retention(args["q"], args["k"], args["v"], gamma, form="chunk", chunk_size=4)
    # the RetNet paper's D_nm = gamma^(n - m) written out
    n = torch.arange(13, dtype=torch.float64)
    D = torch.where(n[:, None] >= n[None, :], gamma.double().exp()[:, None, None] ** (n[:, None] - n[None, :]), 0.0)
    ref = ((args["q"] @ args["k"].transpose(-1, -2)) * DK ** -0.5 * D) @ args["v"]
    torch.testing.assert_close(o, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("form", FORMS)
def test_gated_delta_rule_matches_qwen3_next(form):
    """transformers' torch_recurrent_gated_delta_rule takes [B, T, H, D] (g, beta [B, T, H]),
    l2-normalises q/k inside when use_qk_l2norm_in_kernel=True, scales q by Dk^-0.5, runs in
    float32 and returns its final state [B, H, Dk, Dv]."""
    qwen = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    g = torch.Generator().manual_seed(3)
    T, Dk, Dv = 23, 8, 6
    q, k = torch.randn(B, H, T, Dk, generator=g), torch.randn(B, H, T, Dk, generator=g)
    v = torch.randn(B, H, T, Dv, generator=g)
    gate = F.logsigmoid(torch.randn(B, H, T, generator=g) + 2)
    beta = torch.rand(B, H, T, generator=g)
    s0 = torch.randn(B, H, Dk, Dv, generator=g)
    t = lambda x: x.transpose(1, 2)  # noqa: E731 - [B, H, T, ...] <-> [B, T, H, ...]
    ref_o, ref_s = qwen.torch_recurrent_gated_delta_rule(
        t(q), t(k), t(v), t(gate), t(beta), initial_state=s0, output_final_state=True, use_qk_l2norm_in_kernel=True)
    o, s = gated_delta_rule(l2norm(q), l2norm(k), v, gate, beta, initial_state=s0, output_final_state=True,
                            form=form, chunk_size=8)
    torch.testing.assert_close(o, t(ref_o), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, ref_s, rtol=1e-5, atol=1e-5)


def test_chunk_forms_compile_fullgraph():
    """No data-dependent Python control flow: dynamo captures every chunk form as one graph."""
    from archlab.ops.delta_rule.chunk import _prepare
    from archlab.ops.gla.chunk import gla_chunk
    from archlab.ops.linear_attn.chunk import linear_attn_chunk
    from archlab.ops.simple_gla.chunk import simple_gla_chunk

    torch._dynamo.reset()
    x = torch.randn(1, 2, 70, 4)
    g = F.logsigmoid(torch.randn(1, 2, 70, 4))
    calls = [
        (linear_attn_chunk, (x, x, x, None, None), dict(normalize=True, scale=0.5, eps=1e-6, chunk_size=2)),
        (simple_gla_chunk, (x, x, x, g[..., 0], None), dict(scale=0.5, chunk_size=2)),
        (gla_chunk, (x, x, x, g, None), dict(scale=0.5, chunk_size=2)),
        (_prepare, (x, x, x, g[..., 0], g[..., 0].exp(), 0.5, 16), {}),
    ]
    for fn, a, kw in calls:
        got = torch.compile(fn, fullgraph=True, backend="aot_eager")(*a, **kw)
        want = fn(*a, **kw)
        for u, w in zip(got, want):
            if u is not None:
                torch.testing.assert_close(u, w)


def test_bad_inputs_raise_named_errors():
    args, kw = make_inputs("gla", 5)
    q, k, v, g = args["q"], args["k"], args["v"], args["g"]
    with pytest.raises(ValueError, match="form"):
        linear_attn(q, k, v, form="fast")
    with pytest.raises(ValueError, match="q, k"):
        linear_attn(q, k[:, :, :3], v)
    with pytest.raises(ValueError, match="v:"):
        linear_attn(q, k, v[:, :1])
    with pytest.raises(ValueError, match="g:"):
        gla(q, k, v, g[..., 0])
    with pytest.raises(ValueError, match="initial_state"):
        simple_gla(q, k, v, g[..., 0], initial_state=torch.zeros(B, H, DK, DK + 1, dtype=q.dtype))
    with pytest.raises(ValueError, match="initial_state"):
        linear_attn(q, k, v, normalize=True, initial_state=torch.zeros(B, H, DK, DV, dtype=q.dtype))
    with pytest.raises(ValueError, match="beta"):
        delta_rule(q, k, v, g[0])
    with pytest.raises(ValueError, match="chunk_size"):
        gla(q, k, v, g, chunk_size=0)
    with pytest.raises(ValueError, match=r"\[B, H, T, D\]"):
        linear_attn(q[0], k[0], v[0])

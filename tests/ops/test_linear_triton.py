"""The Triton form of linear_attn and gla against the parallel reference: outputs, final states
and the gradients of q, k, v, the gates and the initial state.

On a machine without CUDA the kernels run under Triton's interpreter at tiny sizes, about a
minute (tests/conftest.py turns it on when triton is installed; see triton_marks.py).
The gpu-marked tests run the compiled kernels at real sizes (D=128, T not a multiple of C).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.ops.gla import gla
from archlab.ops.linear_attn import linear_attn
from archlab.ops.simple_gla import simple_gla
from archlab.ops.linear_attn.common import auto_triton, load_triton_chunk
from triton_marks import TRITON, INTERPRET, interpreter, needs_triton, on_gpu


def _inputs(B, H, T, Dk, Dv, device, gated, seed=0, bthd=False, scalar=False):
    """bthd: q, k, v, g are [B, H, T, D] views of [B, T, H, D] memory (as a mixer's heads)."""
    g = torch.Generator(device=device).manual_seed(seed)

    def r(b, h, t, d):
        x = torch.randn(b, t, h, d, device=device, generator=g, dtype=torch.float64)
        return x.transpose(1, 2) if bthd else x.transpose(1, 2).contiguous()

    x = {"q": r(B, H, T, Dk), "k": r(B, H, T, Dk), "v": r(B, H, T, Dv), "s0": r(B, H, Dk, Dv)}
    if gated:
        x["g"] = F.logsigmoid(r(B, H, T, Dk) + 1.0)
    if scalar:  # one log decay per step and head
        x["g"] = F.logsigmoid(r(B, H, T, 1)[..., 0] + 2.0)
    return x


def _run(op, x, dtype, form):
    """Output, final state(s) and gradients of every input."""
    leaves = {n: t.to(dtype).detach().requires_grad_() for n, t in x.items()}
    o, final = op(leaves, form)
    finals = list(final) if isinstance(final, tuple) else [final]
    weights = [torch.linspace(-1, 1, f.numel(), dtype=torch.float64, device=f.device).view_as(f) for f in finals]
    loss = o.double().square().sum() + sum((f.double() * w).sum() for f, w in zip(finals, weights))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return [o, *finals, *grads], ["o", *[f"final{i}" for i in range(len(finals))], *[f"d{n}" for n in leaves]]


def _compare(op, x, dtype, tol, ref_form="parallel"):
    got, names = _run(op, x, dtype, "triton")
    ref, _ = _run(op, x, torch.float64, ref_form)
    for name, a, b in zip(names, got, ref):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * scale, msg=lambda m: f"{name}: {m}")


def _la(x, form, normalize=False, chunk_size=16):
    s0 = x.get("s0")
    if normalize:  # positive features keep the normaliser away from zero
        q, k = F.elu(x["q"]) + 1, F.elu(x["k"]) + 1
        init = None if s0 is None else (s0, x["z0"])
        return linear_attn(q, k, x["v"], normalize=True, initial_state=init, output_final_state=True,
                           form=form, chunk_size=chunk_size)
    return linear_attn(x["q"], x["k"], x["v"], scale=0.3, initial_state=s0, output_final_state=True,
                       form=form, chunk_size=chunk_size)


def _gla(x, form, chunk_size=16):
    return gla(x["q"], x["k"], x["v"], x["g"], scale=0.3, initial_state=x.get("s0"), output_final_state=True,
               form=form, chunk_size=chunk_size)


@interpreter
@pytest.mark.parametrize("T,D,with_s0", [(37, 16, True), (64, 32, False), (130, 16, True), (40, 80, False)])
def test_linear_attn_triton_interpreted(T, D, with_s0):
    x = _inputs(1, 2, T, D, D, "cpu", gated=False, bthd=T == 37)
    if not with_s0:
        del x["s0"]
    _compare(_la, x, torch.float32, 1e-5)


@interpreter
@pytest.mark.parametrize("with_s0", [True, False])
def test_linear_attn_triton_normalized_interpreted(with_s0):
    x = _inputs(1, 2, 37, 16, 16, "cpu", gated=False)
    if with_s0:
        x["s0"], x["z0"] = x["s0"].abs(), torch.rand(1, 2, 16, dtype=torch.float64)
    else:
        del x["s0"]
    _compare(lambda x, form: _la(x, form, normalize=True), x, torch.float32, 1e-5)


@interpreter
@pytest.mark.parametrize("T,C,D,with_s0", [(37, 16, 16, True), (37, 32, 16, False), (64, 32, 16, True), (40, 16, 80, True)])
def test_gla_triton_interpreted(T, C, D, with_s0):
    """D=80: two Dk/Dv tiles of 64, the second one partly masked."""
    x = _inputs(1, 2, T, D, D, "cpu", gated=True, bthd=C == 32)
    if not with_s0:
        del x["s0"]
    _compare(lambda x, form: _gla(x, form, chunk_size=C), x, torch.float32, 1e-5)


def _sgla(x, form, chunk_size=16):
    return simple_gla(x["q"], x["k"], x["v"], x["g"], scale=0.3, initial_state=x.get("s0"), output_final_state=True,
                      form=form, chunk_size=chunk_size)


@interpreter
@pytest.mark.parametrize("T,C,D,with_s0", [(37, 16, 16, True), (37, 32, 16, False), (64, 32, 16, True), (40, 16, 80, True)])
def test_scalar_gate_triton_interpreted(T, C, D, with_s0):
    """simple GLA (one decay per step and head): outputs, final state and every gradient, the
    scalar gate's included. D=80: two Dk/Dv tiles, the second partly masked."""
    x = _inputs(1, 2, T, D, D + 8, "cpu", gated=False, scalar=True, bthd=C == 32)
    if not with_s0:
        del x["s0"]
    _compare(lambda x, form: _sgla(x, form, chunk_size=C), x, torch.float32, 1e-5)


@interpreter
@pytest.mark.parametrize("gated", [False, True])
def test_shared_qk_heads_interpreted(gated):
    """q and k with fewer heads than v (2 shared by 3 heads each): equal to repeating them per head,
    outputs and every gradient (dq, dk summed over the heads that share them)."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 2, 37, 16, generator=g) for _ in range(2))
    v = torch.randn(1, 6, 37, 24, generator=g)
    gate = F.logsigmoid(torch.randn(1, 6, 37, generator=g) + 2.0) if gated else None

    def run(shared):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)] + ([gate.clone().requires_grad_()] if gated else [])
        qq, kk = leaves[0], leaves[1]
        if not shared:
            qq, kk = qq.repeat_interleave(3, 1), kk.repeat_interleave(3, 1)
        g_ = leaves[3] if gated else None
        o, s = load_triton_chunk().chunk_triton(qq, kk, leaves[2], g_, None, scale=0.3, chunk_size=16)
        grads = torch.autograd.grad(o.square().sum() + s.sum(), leaves)
        return [o, s, *grads]
    for a, b in zip(run(True), run(False)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@interpreter
@pytest.mark.parametrize("gate", ["none", "channel", "scalar"])
def test_triton_form_compiles_in_one_graph(gate):
    """torch.compile(fullgraph=True) keeps the kernels inside the graph (two custom ops, no break):
    outputs and gradients equal to eager, and to the chunk form."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 37, 16, generator=g) for _ in range(3))
    s0 = torch.randn(1, 2, 16, 16, generator=g)
    log_g = {"none": None, "channel": F.logsigmoid(torch.randn(1, 2, 37, 16, generator=g) + 2.0),
             "scalar": F.logsigmoid(torch.randn(1, 2, 37, generator=g) + 2.0)}[gate]

    def step(q, k, v, s0, lg):
        o, s = load_triton_chunk().chunk_triton(torch.sin(q), k, v, lg, s0, scale=0.3, chunk_size=16)
        return o.square().sum() + (s * s0).sum()

    def run(fn):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, s0)] + ([] if log_g is None else [log_g.clone().requires_grad_()])
        loss = fn(*leaves[:4], leaves[4] if log_g is not None else None)
        return [loss, *torch.autograd.grad(loss, leaves)]

    torch._dynamo.reset()
    eager, compiled = run(step), run(torch.compile(step, fullgraph=True, backend="aot_eager"))
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@interpreter
@pytest.mark.parametrize("gate", ["none", "channel", "scalar"])
def test_triton_ops_pass_opcheck(gate):
    """The custom ops' schema, fake (shape) functions and autograd registration agree with the kernels."""
    from archlab.ops.linear_attn import triton_chunk as tc

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 20, 16, generator=g, requires_grad=True) for _ in range(3))
    lg = {"none": None, "channel": F.logsigmoid(torch.randn(1, 2, 20, 16, generator=g)).requires_grad_(),
          "scalar": F.logsigmoid(torch.randn(1, 2, 20, generator=g)).requires_grad_()}[gate]
    s0 = torch.randn(1, 2, 16, 16, generator=g, requires_grad=True)
    torch.library.opcheck(tc._fwd_op, (q, k, v, lg, s0, 0.3, 16, torch.float32),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    o, s, hs, A, b = tc._fwd_op(q.detach(), k.detach(), v.detach(), None if lg is None else lg.detach(), s0.detach(),
                                0.3, 16, torch.float32)
    torch.library.opcheck(tc._bwd_op, (q.detach(), k.detach(), v.detach(), b, s0.detach(), hs, A, torch.randn_like(o),
                                       torch.randn_like(s), 0.3, 16, True),
                          test_utils=("test_schema", "test_faketensor"))


@needs_triton
def test_shared_qk_heads_need_a_scalar_gate():
    q = torch.randn(1, 2, 8, 16)
    v = torch.randn(1, 4, 8, 16)
    with pytest.raises(ValueError, match="heads"):
        load_triton_chunk().chunk_triton(q, q, v, torch.zeros(1, 4, 8, 16), None, scale=1.0, chunk_size=16)


@interpreter
def test_scalar_gate_strong_decay_stays_finite():
    x = _inputs(1, 1, 32, 16, 16, "cpu", gated=False, scalar=True)
    x["g"] = torch.full_like(x["g"], -30.0)
    x["g"][..., ::5] = -0.01
    # 3e-5: the float32 chunk form in PyTorch is as far from float64 here (dg 1.5e-5 of its largest)
    _compare(lambda x, form: _sgla(x, form, chunk_size=32), x, torch.float32, 3e-5)


@interpreter
@pytest.mark.parametrize("op", ["linear_attn", "gla", "simple_gla"])
def test_triton_low_precision_interpreted(op):
    """float16 inputs: matmul operands and stored states in float16, float32 accumulation (the
    interpreter's bfloat16 tl.dot is wrong, so bfloat16 is covered by the GPU tests)."""
    x = _inputs(1, 2, 37, 16, 16, "cpu", gated=op == "gla", scalar=op == "simple_gla")
    fn = {"gla": lambda x, form: _gla(x, form), "simple_gla": lambda x, form: _sgla(x, form)}.get(op, _la)
    _compare(fn, x, torch.float16, 3e-3)


@interpreter
def test_gla_triton_strong_decay_stays_finite():
    """Log gates of -30 per step: within a chunk e^(b_j - b_i) would overflow float32 if the
    kernels factored it through the chunk's first row."""
    x = _inputs(1, 1, 32, 16, 16, "cpu", gated=True)
    x["g"] = torch.full_like(x["g"], -30.0)
    x["g"][..., ::5, :] = -0.01
    _compare(lambda x, form: _gla(x, form, chunk_size=32), x, torch.float32, 1e-5)


@pytest.mark.skipif(TRITON, reason="checks the error without triton")
def test_triton_form_without_triton_names_the_package():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ImportError, match="form='triton' needs the triton package"):
        linear_attn(q, q, q, form="triton", chunk_size=16)


@needs_triton
def test_triton_form_rejects_what_it_does_not_support():
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attn(q, q, q, form="triton", chunk_size=24)
    with pytest.raises(ValueError, match="float64"):
        gla(q.double(), q.double(), q.double(), q.double(), form="triton", chunk_size=16)
    if not INTERPRET:
        with pytest.raises(ValueError, match="CUDA"):
            linear_attn(q, q, q, form="triton", chunk_size=16)


def test_auto_form_keeps_its_pick_off_cuda():
    x = torch.zeros(1)
    assert auto_triton("auto", "chunk", 64, x) == "chunk"
    assert auto_triton("auto", "chunk_compiled", 64, x) == "chunk_compiled"


@pytest.mark.gpu
@on_gpu
def test_auto_form_picks_triton_on_cuda():
    x = torch.zeros(1, device="cuda")
    assert auto_triton("auto", "chunk_compiled", 64, x) == "triton"
    assert auto_triton("auto", "recurrent", 64, x) == "recurrent"  # one-token cached steps
    assert auto_triton("chunk_compiled", "chunk_compiled", 64, x) == "chunk_compiled"  # configured explicitly
    assert auto_triton("auto", "chunk_compiled", 48, x) == "chunk_compiled"  # chunk size the kernels lack
    assert auto_triton("auto", "chunk_compiled", 64, x.double()) == "chunk_compiled"


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("op", ["linear_attn", "linear_attn_norm", "gla", "simple_gla"])
@pytest.mark.parametrize("T,C", [(1000, 64), (2048, 64), (1000, 128)])
def test_triton_at_real_sizes_on_gpu(op, dtype, tol, T, C):
    """Against the chunk form in float64 (the parallel GLA reference would need [T, T, Dk] decays)."""
    x = _inputs(2, 4, T, 128, 128, "cuda", gated=op == "gla", scalar=op == "simple_gla")
    x["q"], x["k"] = x["q"] / 4, x["k"] / 4  # keep D=128 dot products in bf16 range
    fn = {"linear_attn": lambda x, f: _la(x, f, chunk_size=C),
          "gla": lambda x, f: _gla(x, f, chunk_size=C),
          "simple_gla": lambda x, f: _sgla(x, f, chunk_size=C)}.get(op)
    if op == "linear_attn_norm":
        x["s0"], x["z0"] = x["s0"].abs(), torch.rand(2, 4, 128, dtype=torch.float64, device="cuda")
        fn = lambda x, f: _la(x, f, normalize=True, chunk_size=C)  # noqa: E731
    _compare(fn, x, dtype, tol, ref_form="chunk")

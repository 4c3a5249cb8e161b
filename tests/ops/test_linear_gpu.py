"""GPU: the compiled chunk forms (form="chunk_compiled") and the Triton forms (form="triton", the
CUDA training path of linear_attn and gla) agree with the parallel reference, and a mixer on CUDA
(form="auto") decodes like its full forward."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.ops.delta_rule import gated_delta_rule, l2norm
from archlab.ops.gla import gla
from archlab.ops.linear_attn import linear_attn
from archlab.ops.simple_gla import simple_gla

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _inputs(dtype, T=100, Dk=32, Dv=32):
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    q, k, v = r(2, 2, T, Dk), r(2, 2, T, Dk), r(2, 2, T, Dv)
    return {"q": q.to(dtype), "k": k.to(dtype), "v": v.to(dtype),
            "gs": F.logsigmoid(r(2, 2, T) + 2), "gv": F.logsigmoid(r(2, 2, T, Dk) + 2) / 4,
            "beta": torch.rand(2, 2, T, device="cuda", generator=g)}


OPS = {
    "linear_attn": lambda a, form: linear_attn(a["q"], a["k"], a["v"], form=form, chunk_size=32),
    "linear_attn_norm": lambda a, form: linear_attn(F.elu(a["q"]) + 1, F.elu(a["k"]) + 1, a["v"], normalize=True,
                                                    form=form, chunk_size=32),
    "simple_gla": lambda a, form: simple_gla(a["q"], a["k"], a["v"], a["gs"], form=form, chunk_size=32),
    "gla": lambda a, form: gla(a["q"], a["k"], a["v"], a["gv"], form=form, chunk_size=32),
    "gated_delta_rule": lambda a, form: gated_delta_rule(l2norm(a["q"]), l2norm(a["k"]), a["v"], a["gs"], a["beta"],
                                                         form=form, chunk_size=32),
}


FAST_FORMS = [(op, "chunk_compiled") for op in OPS] + [(op, "triton") for op in ("linear_attn", "linear_attn_norm", "gla", "simple_gla")]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-3), (torch.bfloat16, 6e-2)])
@pytest.mark.parametrize("op,form", FAST_FORMS)
def test_fast_forms_match_parallel(op, form, dtype, tol):
    a = _inputs(dtype)
    leaves = [a["q"], a["k"], a["v"]]
    for x in leaves:
        x.requires_grad_()
    o, _ = OPS[op](a, form)
    go = torch.autograd.grad(o.float().square().sum(), leaves)
    ref = {n: (x.detach().double().requires_grad_() if x.is_floating_point() else x) for n, x in a.items()}
    r, _ = OPS[op](ref, "parallel")
    gr = torch.autograd.grad(r.square().sum(), [ref["q"], ref["k"], ref["v"]])
    scale = r.abs().max().item()
    torch.testing.assert_close(o.double(), r, rtol=tol, atol=tol * scale)
    for a_, b_ in zip(go, gr):
        torch.testing.assert_close(a_.double(), b_, rtol=tol, atol=tol * b_.abs().max().item())


@pytest.mark.parametrize("kind", ["linear", "gla", "gated_deltanet", "based", "retention"])
def test_mixer_auto_on_cuda_decodes_like_full_forward(kind):
    """kinds linear, gla, based and retention run the Triton form here when triton is installed
    (gated_deltanet the compiled chunk form)."""
    from archlab.linear import LinearAttentionConfig, build_mixer

    torch.manual_seed(0)
    m = build_mixer(LinearAttentionConfig(kind=kind, window=8), 64).cuda().eval()
    x = torch.randn(2, 40, 64, device="cuda")
    pos = torch.arange(40, device="cuda").expand(2, 40)
    with torch.no_grad():
        full = m(x, positions=pos)
        cache = m.new_cache(2, 40, torch.float32, "cuda")
        parts = [m(x[:, :33], positions=pos[:, :33], cache=cache)]
        parts += [m(x[:, t:t + 1], positions=pos[:, t:t + 1], cache=cache) for t in range(33, 40)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-3, atol=1e-3)

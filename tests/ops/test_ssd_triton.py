"""Mamba-2's SSD through the Triton kernels (ssd_triton) against the sequential reference:
outputs, final states and the gradients of x, dt, A, B, C and the initial state, grouped B/C,
lengths that do not divide the chunk; and the Mamba-2 mixer with backend="triton".

On a machine without CUDA the kernels run under Triton's interpreter (tests/conftest.py turns it
on when triton is installed; see triton_marks.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from archlab.errors import ConfigError
from archlab.ops.ssd import ssd_reference, ssd_triton
from archlab.ssm import SSMConfig, build_ssm_mixer
from triton_marks import interpreter, on_gpu

sys.path.insert(0, str(Path(__file__).parents[1] / "ssm"))
from test_ssm_mixers import assert_mixers_agree  # noqa: E402


def _inputs(B, T, H, P, G, N, device="cpu", seed=0, h0=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    x, B_, C = r(B, T, H, P), r(B, T, G, N) / N**0.5, r(B, T, G, N) / N**0.5
    dt = torch.nn.functional.softplus(r(B, T, H) - 1.0)
    A = -torch.rand(H, generator=g, dtype=torch.float64) * 4 - 0.1
    s = r(B, H, P, N) if h0 else None
    return [None if t is None else t.to(device) for t in (x, dt, A, B_, C, s)]


def _check(ins, dtype, chunk, tol):
    def run(fn, dt):
        leaves = [None if t is None else t.to(dt).requires_grad_() for t in ins]
        y, h = fn(*leaves)
        w = [torch.linspace(-1, 1, t.numel(), dtype=torch.float64, device=t.device).view_as(t) for t in (y, h)]
        loss = (y.double() * w[0]).sum() + (h.double() * w[1]).sum()
        used = [t for t in leaves if t is not None]
        return [y, h, *torch.autograd.grad(loss, used)]
    got = run(lambda *a: ssd_triton(*a, chunk_size=chunk), dtype)
    ref = run(ssd_reference, torch.float64)
    names = ["y", "final", "dx", "ddt", "dA", "dB", "dC", "dh0"]
    for name, a, b in zip(names, got, ref):
        err = ((a.double() - b).norm() / b.norm()).item()
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol}"


@interpreter
@pytest.mark.parametrize("T,chunk,G,h0", [(37, 16, 2, True), (64, 32, 1, False), (20, 16, 4, True)])
def test_ssd_triton_interpreted(T, chunk, G, h0):
    _check(_inputs(2, T, 4, 8, G, 16, h0=h0, seed=T), torch.float32, chunk, 1e-5)


@interpreter
def test_mamba2_mixer_triton_backend_interpreted():
    cfg = SSMConfig(kind="mamba2", d_state=16, head_dim=8, n_groups=2, chunk_size=16)
    torch.manual_seed(0)
    ref = build_ssm_mixer(cfg.replace(backend="chunked"), 32, layer_idx=0)
    fast = build_ssm_mixer(cfg.replace(backend="triton"), 32, layer_idx=0)
    fast.load_state_dict(ref.state_dict())
    assert_mixers_agree(ref, fast, torch.randn(2, 21, 32, requires_grad=True))


@interpreter
def test_mamba2_triton_backend_prefills_the_cache_like_the_full_forward():
    """Prefill through the kernels (with the cache's state in and out), then one-token steps."""
    cfg = SSMConfig(kind="mamba2", d_state=16, head_dim=8, n_groups=2, chunk_size=16, backend="triton")
    torch.manual_seed(0)
    m = build_ssm_mixer(cfg, 32, layer_idx=0)
    x = torch.randn(2, 23, 32)
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2, 23, torch.float32)
        parts = [m(x[:, :9], cache=cache), m(x[:, 9:20], cache=cache)]
        parts += [m(x[:, t:t + 1], cache=cache) for t in range(20, 23)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_triton_backend_config_is_checked():
    with pytest.raises(ConfigError, match="ssm.backend"):
        SSMConfig(kind="mamba", backend="triton")
    with pytest.raises(ConfigError, match="ssm.chunk_size"):
        SSMConfig(kind="mamba2", backend="triton", chunk_size=256)


def test_auto_backend_is_chunked_off_cuda():
    m = build_ssm_mixer(SSMConfig(kind="mamba2", d_state=16, head_dim=8), 32, layer_idx=0)
    assert m.cfg.backend == "auto" and m._backend(torch.zeros(1)) == "chunked"


@pytest.mark.gpu
@on_gpu
def test_auto_backend_picks_triton_on_cuda():
    m = build_ssm_mixer(SSMConfig(kind="mamba2", d_state=16, head_dim=8), 32, layer_idx=0)
    x = torch.zeros(1, device="cuda")
    assert m._backend(x) == "triton"
    assert m._backend(x.double()) == "chunked"  # the kernels take no float64
    odd = build_ssm_mixer(SSMConfig(kind="mamba2", d_state=16, head_dim=8, chunk_size=48), 32, layer_idx=0)
    assert odd._backend(x) == "chunked"  # a chunk size the kernels lack
    cfg = SSMConfig(kind="mamba2", d_state=16, head_dim=8, n_groups=2, chunk_size=16)
    torch.manual_seed(0)
    ref = build_ssm_mixer(cfg.replace(backend="chunked"), 32, layer_idx=0).cuda()
    auto = build_ssm_mixer(cfg, 32, layer_idx=0).cuda()
    auto.load_state_dict(ref.state_dict())
    assert_mixers_agree(ref, auto, torch.randn(2, 21, 32, device="cuda", requires_grad=True))


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_ssd_triton_at_real_size_on_gpu(dtype, tol):
    """The 545M benchmark's shape (64 heads of 64, state 128, one group), T not a multiple of the chunk."""
    _check(_inputs(1, 1000, 64, 64, 1, 128, device="cuda"), dtype, 64, tol)

"""On a CUDA device: every encoding and scaling kind runs with its buffers on the GPU,
cached decoding equals the full forward, and the per-call paths (length-dependent RoPE,
ALiBi, T5) need no host sync, so they can be captured in a CUDA graph."""
import pytest
import torch

import archlab
from archlab.position import PositionConfig, build_position

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

from test_position_in_model import LENGTH_DEPENDENT, ORIG, POSITIONS, decode, perturb, tiny  # noqa: E402


@pytest.mark.parametrize("name", list(POSITIONS))
def test_cached_equals_full_on_cuda(name):
    model = archlab.build(tiny(POSITIONS[name], "sdpa")).cuda().eval()
    perturb(model)
    T = ORIG if name in LENGTH_DEPENDENT else 3 * ORIG + 1
    ids = torch.randint(0, 53, (2, T), device="cuda")
    with torch.no_grad():
        full = model(ids)
        torch.testing.assert_close(decode(model, ids, 3), full, atol=2e-5, rtol=1e-4)
        cpu = archlab.build(tiny(POSITIONS[name], "sdpa")).eval()
        cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        torch.testing.assert_close(cpu(ids.cpu()), full.cpu(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["rope_dynamic", "rope_longrope_by_length", "rope_yarn", "alibi", "t5_shared"])
def test_position_calls_capture_in_a_cuda_graph(name):
    m = build_position(PositionConfig.from_dict(POSITIONS[name]), n_heads=3, head_dim=8, d_model=24).cuda()
    q, k = torch.randn(1, 3, 1, 8, device="cuda"), torch.randn(1, 1, 1, 8, device="cuda")
    pos = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    k_pos = torch.arange(40, device="cuda")[None]

    def step():
        return m.rotate(q, k, pos), m.bias(pos, k_pos)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        (qr, kr), b = step()
    for p in (5, ORIG + 7, 30):  # crosses the trained length: the frequencies must follow
        pos.fill_(p)
        g.replay()
        (want_q, want_k), want_b = step()
        torch.testing.assert_close(qr, want_q)
        torch.testing.assert_close(kr, want_k)
        if want_b is not None:
            torch.testing.assert_close(b, want_b)


@pytest.mark.parametrize("name", ["alibi", "t5_shared", "t5_per_layer", "rope_yarn"])
def test_flex_backend_matches_eager_outputs_and_gradients(name):
    shape = {"attention.heads": 4, "attention.kv_heads": 2, "attention.head_dim": 16}  # flex wants head_dim >= 16
    eager = archlab.build(tiny(POSITIONS[name], "eager").replace(**shape)).cuda()
    perturb(eager)
    flex = archlab.build(tiny(POSITIONS[name], "flex").replace(**shape)).cuda()
    flex.load_state_dict(eager.state_dict())
    ids = torch.randint(0, 53, (2, 40), device="cuda")
    out_e, out_f = eager(ids), flex(ids)
    torch.testing.assert_close(out_f, out_e, atol=2e-4, rtol=2e-4)
    out_e.square().mean().backward()
    out_f.square().mean().backward()
    for (n, pe), (_, pf) in zip(eager.named_parameters(), flex.named_parameters()):
        torch.testing.assert_close(pf.grad, pe.grad, atol=2e-4, rtol=2e-3, msg=n)

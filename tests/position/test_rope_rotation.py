"""RoPE rotation: RoFormer's complex-number formula, relative-position property, layouts.

Reference (Su et al. 2021, eq. 34): with pairs read as complex numbers z_i, the rotated
vector is z_i * exp(1j * m * theta_i), theta_i = base^(-2i / D_rot).
"""
import math

import pytest
import torch

from archlab.errors import ConfigError
from archlab.position import PositionConfig, build_position

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def rope(kind="rope", head_dim=16, n_heads=2, **kw):
    return build_position(PositionConfig(kind=kind, **kw), n_heads=n_heads, head_dim=head_dim, d_model=n_heads * head_dim)


def complex_reference(x, positions, theta, rot_dim, interleaved):
    """x [B, H, T, D] float64 -> rotated, written straight from the complex form."""
    out = x.clone()
    B, H, T, D = x.shape
    R = rot_dim // 2
    for i in range(R):
        freq = theta ** (-2 * i / rot_dim)
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + R)
        for bb in range(B):
            for t in range(T):
                ang = float(positions[bb, t]) * freq
                rot = complex(math.cos(ang), math.sin(ang))
                z = torch.complex(x[bb, :, t, a], x[bb, :, t, b]) * rot
                out[bb, :, t, a], out[bb, :, t, b] = z.real, z.imag
    return out


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25])
def test_matches_complex_reference(interleaved, fraction):
    torch.manual_seed(0)
    m = rope(interleaved=interleaved, rotary_fraction=fraction, theta=500.0)
    q, k = torch.randn(2, 2, 5, 16), torch.randn(2, 1, 5, 16)
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 9, 30, 31, 100]])
    qr, kr = m.rotate(q, k, pos)
    rot_dim = int(16 * fraction)
    torch.testing.assert_close(qr, complex_reference(q.double(), pos, 500.0, rot_dim, interleaved).float())
    torch.testing.assert_close(kr, complex_reference(k.double(), pos, 500.0, rot_dim, interleaved).float())
    assert torch.equal(qr[..., rot_dim:], q[..., rot_dim:])  # partial rotary: the rest passes through


@pytest.mark.parametrize("interleaved", [False, True])
def test_scores_depend_only_on_offset(interleaved):
    torch.manual_seed(0)
    m = rope(interleaved=interleaved)
    q, k = torch.randn(1, 2, 1, 16, dtype=torch.float64), torch.randn(1, 2, 1, 16, dtype=torch.float64)

    def score(i, j):
        qi, _ = m.rotate(q, q, torch.tensor([[i]]))
        _, kj = m.rotate(k, k, torch.tensor([[j]]))
        return (qi * kj).sum(-1)

    torch.testing.assert_close(score(5, 2), score(1005, 1002))
    torch.testing.assert_close(score(3, 3), (q * k).sum(-1))


def test_layouts_are_a_permutation_of_each_other():
    torch.manual_seed(0)
    half, inter = rope(interleaved=False), rope(interleaved=True)
    perm = torch.arange(16).view(2, 8).t().reshape(-1)  # interleaved slot 2i <- half slot i, 2i+1 <- i + 8
    q = torch.randn(1, 2, 4, 16)
    pos = torch.arange(4)[None] * 3
    qh, _ = half.rotate(q, q, pos)
    qi, _ = inter.rotate(q[..., perm], q[..., perm], pos)
    torch.testing.assert_close(qi, qh[..., perm])


def test_matches_transformers_llama_and_neox_partial():
    from transformers import GPTNeoXConfig, LlamaConfig
    from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
    from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as neox_apply
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 6, 16), torch.randn(2, 2, 6, 16)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [3, 8, 13, 21, 34, 55]])
    hf = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=16, rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    cos, sin = LlamaRotaryEmbedding(hf)(q, pos)
    want = apply_rotary_pos_emb(q, k, cos, sin)
    got = rope(n_heads=4, theta=1000.0).rotate(q, k, pos)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)

    neox = GPTNeoXConfig(hidden_size=64, num_attention_heads=4, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    cos, sin = GPTNeoXRotaryEmbedding(neox)(q, pos)
    want = neox_apply(q, k, cos, sin)
    got = rope(n_heads=4, rotary_fraction=0.25).rotate(q, k, pos)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_matches_transformers_gptj_interleaved():
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb, create_sinusoidal_positions

    torch.manual_seed(0)
    q = torch.randn(1, 2, 7, 16)
    pos = torch.arange(7)[None] * 5
    sincos = create_sinusoidal_positions(64, 8)[pos]  # GPT-J rotates rotary_dim=8 of 16
    sin, cos = sincos.chunk(2, dim=-1)
    q_bthd = q.transpose(1, 2)  # GPT-J works in [B, T, H, D]
    want = torch.cat((apply_rotary_pos_emb(q_bthd[..., :8], sin, cos), q_bthd[..., 8:]), dim=-1).transpose(1, 2)
    got, _ = rope(interleaved=True, rotary_fraction=0.5).rotate(q, q, pos)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_dtype_preserved_and_large_positions_accurate():
    m = rope()
    q = torch.randn(1, 2, 2, 16, dtype=torch.bfloat16)
    qr, kr = m.rotate(q, q, torch.tensor([[0, 1]]))
    assert qr.dtype == kr.dtype == torch.bfloat16
    # float64 angles: position 10^6 is still exact enough for a float32 rotation
    x = torch.randn(1, 1, 1, 16, dtype=torch.float64)
    got, _ = m.rotate(x.float(), x.float(), torch.tensor([[1_000_000]]))
    want = complex_reference(x, torch.tensor([[1_000_000]]), 10000.0, 16, False)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_no_state_dict_entries():
    assert rope().state_dict() == {}


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="position.theta"):
        PositionConfig(theta=0.0)
    with pytest.raises(ConfigError, match="position.rotary_fraction"):
        PositionConfig(rotary_fraction=1.5)
    with pytest.raises(ConfigError, match="kind.*rotary"):
        PositionConfig.from_dict({"kind": "rotary"})


@pytest.mark.parametrize("over", [{}, {"interleaved": True, "rotary_fraction": 0.5},
                                  {"max_positions": 8, "scaling": {"kind": "yarn", "factor": 4.0}}])
def test_gradients(over):
    m = rope(**over)
    q = torch.randn(1, 2, 3, 16, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 1, 3, 16, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[0, 4, 9]])
    assert torch.autograd.gradcheck(lambda a, b: m.rotate(a, b, pos), (q, k))


@pytest.mark.parametrize("T", [3, 40])  # few tokens: angles inline; more: the rope_cos_sin op
@pytest.mark.parametrize("scaling", ["none", "dynamic"])
def test_rotation_compiled_equals_eager_and_reference(T, scaling):
    """Both ways of making the angles give the complex formula's rotation, eager and under
    torch.compile (the op stays opaque to the compiler; inlined angles fuse)."""
    kw = {} if scaling == "none" else {"scaling": {"kind": "dynamic", "factor": 2.0, "original_max_positions": 16}}
    r = rope(head_dim=8, **kw)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 2, T, 8, generator=g), torch.randn(2, 2, T, 8, generator=g)
    positions = torch.stack([torch.arange(T), torch.arange(T) + 5])
    eager = r.rotate(q, k, positions)
    compiled = torch.compile(lambda q, k, p: r.rotate(q, k, p), fullgraph=True)(q, k, positions)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if scaling == "none":
        ref = complex_reference(q.double(), positions, 10000.0, 8, False)
        torch.testing.assert_close(eager[0].double(), ref, rtol=1e-5, atol=1e-5)

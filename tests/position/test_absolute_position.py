"""Sinusoidal (Vaswani et al. 2017, sec. 3.5) and learned absolute positions; NoPE."""
import math

import pytest
import torch

from archlab.errors import ConfigError
from archlab.position import PositionConfig, PositionOutOfRangeError, build_position


def build(kind, d_model=8, **kw):
    return build_position(PositionConfig(kind=kind, **kw), n_heads=2, head_dim=d_model // 2 or 1, d_model=d_model)


@pytest.mark.parametrize("d_model", [8, 7])
def test_sinusoidal_matches_the_papers_formula(d_model):
    m = build("sinusoidal", d_model=d_model)
    pos = torch.tensor([[0, 1, 5, 1000]])
    pe = m.embed(pos)
    assert pe.shape == (1, 4, d_model) and pe.dtype == torch.float32
    for t, p in enumerate([0, 1, 5, 1000]):
        for c in range(d_model):
            i = c // 2
            ang = p / 10000 ** (2 * i / d_model)
            want = math.sin(ang) if c % 2 == 0 else math.cos(ang)
            assert pe[0, t, c].item() == pytest.approx(want, abs=1e-6)


def test_sinusoidal_uses_theta_as_base_and_has_no_state():
    m = build("sinusoidal", theta=100.0)
    assert m.embed(torch.tensor([[3]]))[0, 0, 2].item() == pytest.approx(math.sin(3 / 100 ** (2 / 8)), abs=1e-6)
    assert m.state_dict() == {}
    assert m.rotate(1, 2, None) == (1, 2) and m.bias(None, None) is None


def test_learned_table_lookup_and_params():
    m = build("learned", max_positions=10)
    assert m.weight.shape == (10, 8)
    assert type(m).params(m.cfg, n_heads=2, head_dim=4, d_model=8) == 80
    pos = torch.tensor([[0, 9, 3]])
    torch.testing.assert_close(m.embed(pos), m.weight[[0, 9, 3]][None])
    m.embed(pos).sum().backward()
    assert m.weight.grad[[0, 3, 9]].ne(0).all() and m.weight.grad[1].eq(0).all()


def test_learned_past_the_table_is_a_clear_error():
    m = build("learned", max_positions=10)
    with pytest.raises(PositionOutOfRangeError, match=r"position\.max_positions.*0\.\.9.*got position 10"):
        m.embed(torch.tensor([[8, 9, 10]]))
    with pytest.raises(PositionOutOfRangeError, match=">= 0"):
        m.check_positions(torch.tensor([[-1]]))
    assert issubclass(PositionOutOfRangeError, ValueError)


def test_learned_needs_max_positions():
    with pytest.raises(ConfigError, match=r"position\.max_positions"):
        PositionConfig(kind="learned")


def test_nope_does_nothing():
    m = build("none")
    q = torch.randn(1, 2, 3, 4)
    assert m.embed(torch.arange(3)[None]) is None and m.bias(None, None) is None
    assert m.rotate(q, q, torch.arange(3)[None])[0] is q

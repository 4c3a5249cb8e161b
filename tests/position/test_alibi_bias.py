"""ALiBi (Press et al. 2022): slopes from the paper's rule, bias as a function of positions,
and BLOOM's ``build_alibi_tensor`` as the transformers reference."""
import pytest
import torch

from archlab.position import PositionConfig, build_position
from archlab.position.alibi import alibi_slopes


def alibi(n_heads):
    return build_position(PositionConfig(kind="alibi"), n_heads=n_heads, head_dim=8, d_model=8 * n_heads)


def test_slopes_8_heads_are_the_papers_sequence():
    # sec. 3: "for a model with 8 heads, the slopes are 1/2^1, 1/2^2, ..., 1/2^8"
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(h + 1) for h in range(8)], dtype=torch.float64))


def test_slopes_12_heads_take_the_8_head_sequence_then_every_other_16_head_slope():
    # 16 heads: 2^-0.5, 2^-1, 2^-1.5, ...; every other one from the first: 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    want = [2.0 ** -(h + 1) for h in range(8)] + [2.0 ** -0.5, 2.0 ** -1.5, 2.0 ** -2.5, 2.0 ** -3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(want, dtype=torch.float64))


def test_slopes_16_heads_start_at_two_to_minus_half():
    torch.testing.assert_close(alibi_slopes(16), torch.tensor([2.0 ** (-0.5 * (h + 1)) for h in range(16)], dtype=torch.float64))


def test_bias_is_minus_slope_times_distance():
    m = alibi(4)
    q_pos = torch.tensor([[5, 6]])
    k_pos = torch.tensor([[0, 3, 5, 6]])
    b = m.bias(q_pos, k_pos)
    assert b.shape == (1, 4, 2, 4) and b.dtype == torch.float32
    for h, slope in enumerate(alibi_slopes(4).tolist()):
        for i, qi in enumerate([5, 6]):
            for j, kj in enumerate([0, 3, 5, 6]):
                assert b[0, h, i, j].item() == pytest.approx(-slope * (qi - kj))


def test_bias_follows_positions_not_indices():
    """A ring-buffer cache hands keys out of order: the bias must permute with them."""
    m = alibi(4)
    q_pos = torch.tensor([[9]])
    k_pos = torch.tensor([[6, 7, 8, 9]])
    ring = torch.tensor([[8, 9, 6, 7]])
    torch.testing.assert_close(m.bias(q_pos, ring), m.bias(q_pos, k_pos)[..., [2, 3, 0, 1]])
    # translation invariance: only the offsets matter
    torch.testing.assert_close(m.bias(q_pos + 100, k_pos + 100), m.bias(q_pos, k_pos))


@pytest.mark.parametrize("n_heads", [1, 3, 6, 8, 12, 20])
def test_matches_bloom(n_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    T = 7
    bloom = build_alibi_tensor(torch.ones(1, T), n_heads, torch.float32).view(1, n_heads, 1, T)  # slope * j
    ours = alibi(n_heads).bias(torch.arange(T)[None], torch.arange(T)[None])  # -slope * (i - j)
    q = torch.arange(T, dtype=torch.float32)[:, None]
    # BLOOM drops the per-row constant slope * i, which softmax ignores
    torch.testing.assert_close(ours, bloom - alibi_slopes(n_heads).float()[None, :, None, None] * q)
    masked = torch.ones(T, T).tril().bool()
    torch.testing.assert_close(
        ours.masked_fill(~masked, float("-inf")).softmax(-1),
        bloom.expand(1, n_heads, T, T).masked_fill(~masked, float("-inf")).softmax(-1),
    )


def test_no_parameters_and_no_state():
    m = alibi(12)
    assert list(m.parameters()) == [] and m.state_dict() == {}


def grid(mod, H, T, S):
    """Evaluate a flex_attention score_mod on the whole [H, T, S] grid by broadcasting."""
    h = torch.arange(H)[:, None, None]
    return mod(torch.zeros(H, T, S), torch.zeros((), dtype=torch.long), h, torch.arange(T)[None, :, None], torch.arange(S)[None, None, :])


@pytest.mark.parametrize("offset", [0, 5])
def test_score_mod_equals_bias(offset):
    m = alibi(6)
    T, S = 3, 3 + offset
    want = m.bias(torch.arange(offset, offset + T)[None], torch.arange(S)[None])[0]
    torch.testing.assert_close(grid(m.score_mod(offset), 6, T, S), want)

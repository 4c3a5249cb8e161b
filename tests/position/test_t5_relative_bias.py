"""T5 relative position bias (Raffel et al. 2020), causal form: bucket edges from the formula,
transformers' ``T5Attention._relative_position_bucket`` as the reference, bias by position."""
import math

import pytest
import torch

from archlab.errors import ConfigError
from archlab.position import PositionConfig, build_position
from archlab.position.t5_bias import t5_bucket


def bucket_of(n, num_buckets=32, max_distance=128):
    """Plain-Python bucket of distance n >= 0 (half exact, half log-spaced, clipped)."""
    e = num_buckets // 2
    if n < e:
        return n
    return min(num_buckets - 1, e + int(math.log(n / e) / math.log(max_distance / e) * (num_buckets - e)))


def test_t5_default_bucket_boundaries():
    """32 buckets, max_distance 128: 0..15 exact, then 16 log-spaced buckets up to 128.

    Bucket 16 + k starts at distance 16 * 8^(k/16); the last one (k = 15, from 113) takes
    every larger distance."""
    n = torch.arange(0, 400)
    got = t5_bucket(n[None], torch.zeros(1, 1, dtype=torch.long), 32, 128)[0, :, 0]
    edges = [int(d) for d in range(1, 400) if got[d] != got[d - 1]]
    # first distance of each log bucket: ceil(16 * 8^(k/16)) for k = 1..15
    assert edges == list(range(1, 17)) + [math.ceil(16 * 8 ** (k / 16)) for k in range(1, 16)]
    assert edges[16:] == [19, 21, 24, 27, 31, 35, 40, 46, 52, 59, 67, 77, 87, 99, 113]
    assert got[112].item() == 30 and got[113:].eq(31).all()
    assert [bucket_of(d) for d in range(400)] == got.tolist()


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (16, 64), (7, 30), (2, 3)])
def test_matches_transformers(num_buckets, max_distance):
    from transformers.models.t5.modeling_t5 import T5Attention

    q = torch.arange(300)[:, None]
    k = torch.arange(300)[None, :]
    want = T5Attention._relative_position_bucket(k - q, bidirectional=False, num_buckets=num_buckets, max_distance=max_distance)
    got = t5_bucket(q.T, k, num_buckets, max_distance)[0]
    assert torch.equal(got, want)


def test_bias_gathers_per_head_table_by_distance():
    m = build_position(PositionConfig(kind="t5", num_buckets=8, max_distance=16), n_heads=3, head_dim=4, d_model=12)
    assert m.weight.shape == (8, 3)
    q_pos, k_pos = torch.tensor([[20, 21]]), torch.tensor([[0, 13, 19, 20, 21]])
    b = m.bias(q_pos, k_pos)
    assert b.shape == (1, 3, 2, 5)
    for i, qi in enumerate([20, 21]):
        for j, kj in enumerate([0, 13, 19, 20, 21]):
            torch.testing.assert_close(b[0, :, i, j], m.weight[bucket_of(max(qi - kj, 0), 8, 16)])
    ring = torch.tensor([[19, 20, 21, 0, 13]])  # a ring buffer's order
    torch.testing.assert_close(m.bias(q_pos, ring), b[..., [2, 3, 4, 0, 1]])
    torch.testing.assert_close(m.bias(q_pos + 50, k_pos + 50), b)


def test_sharing_and_parameter_count():
    shared = PositionConfig(kind="t5")
    per_layer = PositionConfig(kind="t5", shared_across_layers=False)
    cls = type(build_position(shared, n_heads=4, head_dim=8, d_model=32))
    assert cls.is_shared(shared) and not cls.is_shared(per_layer)
    assert cls.params(shared, n_heads=4, head_dim=8, d_model=32) == 32 * 4
    m = build_position(shared, n_heads=4, head_dim=8, d_model=32)
    assert sum(p.numel() for p in m.parameters()) == 32 * 4


def test_gradient_reaches_the_table():
    m = build_position(PositionConfig(kind="t5", num_buckets=4, max_distance=8), n_heads=2, head_dim=4, d_model=8)
    m.bias(torch.arange(6)[None], torch.arange(6)[None]).sum().backward()
    assert m.weight.grad is not None and (m.weight.grad != 0).all()


def test_bad_bucket_settings_name_their_field():
    with pytest.raises(ConfigError, match=r"position\.num_buckets"):
        PositionConfig(kind="t5", num_buckets=1)
    with pytest.raises(ConfigError, match=r"position\.max_distance"):
        PositionConfig(kind="t5", num_buckets=32, max_distance=16)


@pytest.mark.parametrize("offset", [0, 20])
def test_score_mod_equals_bias(offset):
    m = build_position(PositionConfig(kind="t5", num_buckets=8, max_distance=16), n_heads=3, head_dim=4, d_model=12)
    T, S = 4, 4 + offset
    h = torch.arange(3)[:, None, None]
    got = m.score_mod(offset)(torch.zeros(3, T, S), 0, h, torch.arange(T)[None, :, None], torch.arange(S)[None, None, :])
    want = m.bias(torch.arange(offset, offset + T)[None], torch.arange(S)[None])[0]
    torch.testing.assert_close(got, want)

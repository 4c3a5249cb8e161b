"""Cached decoding equals one full pass at the position-module level, for every encoding and
RoPE scaling kind, with keys handed back in ring-buffer order (not contiguous).

A tiny attention written here calls the modules the way attention does: ``rotate`` on the
new tokens before caching, ``bias(q_pos, k_pos)`` with the cached keys' positions. The
length-dependent kinds (dynamic NTK, LongRoPE by_length) are exact while the sequence stays
within the trained length; past it, each cached key keeps the frequencies it was rotated
with, which the last tests pin down.
"""
import pytest
import torch

from archlab.position import PositionConfig, build_position, scaled_inv_freq

H, HKV, D = 4, 2, 16
ORIG = 32
LONGF = tuple(1.0 + 0.4 * i for i in range(D // 2))
SHORTF = tuple(1.0 + 0.02 * i for i in range(D // 2))

CONFIGS = {
    "none": {"kind": "none"},
    "sinusoidal": {"kind": "sinusoidal"},
    "learned": {"kind": "learned", "max_positions": 64},
    "t5": {"kind": "t5", "num_buckets": 8, "max_distance": 16},
    "alibi": {"kind": "alibi"},
    "rope": {"kind": "rope"},
    "rope_interleaved_partial": {"kind": "rope", "interleaved": True, "rotary_fraction": 0.5},
    **{
        f"rope_{k}": {"kind": "rope", "max_positions": ORIG, "scaling": {"kind": k, "factor": 4.0}}
        for k in ("linear", "ntk", "dynamic", "yarn", "llama3")
    },
    **{
        f"rope_longrope_{sel}": {"kind": "rope", "max_positions": ORIG, "scaling": {
            "kind": "longrope", "factor": 4.0, "short_factor": SHORTF, "long_factor": LONGF, "longrope_select": sel}}
        for sel in ("long", "short", "by_length")
    },
}
LENGTH_DEPENDENT = {"rope_dynamic", "rope_longrope_by_length"}


def attend(pos_mod, q, k, v, q_pos, k_pos):
    """Eager causal attention over keys in any order; q [B, H, T, D], k/v [B, HKV, S, D]."""
    k, v = k.repeat_interleave(H // HKV, 1), v.repeat_interleave(H // HKV, 1)  # [B, H, S, D]
    s = q @ k.transpose(-1, -2) / D**0.5  # [B, H, T, S]
    b = pos_mod.bias(q_pos, k_pos)
    if b is not None:
        s = s + b
    s = s.masked_fill((k_pos[:, None, :] > q_pos[:, :, None])[:, None], float("-inf"))
    return s.softmax(-1) @ v


def run_full(m, q, k, v):
    pos = torch.arange(q.shape[2])[None].expand(q.shape[0], -1)
    qr, kr = m.rotate(q, k, pos)
    return attend(m, qr, kr, v, pos, pos)


def run_cached(m, q, k, v, prefill, gen):
    """Prefill, then one token at a time; the cache returns keys in a shuffled (ring) order."""
    B, T = q.shape[0], q.shape[2]
    ks, vs, ps, outs = [], [], [], []
    steps = [(0, prefill)] + [(t, t + 1) for t in range(prefill, T)]
    for a, b in steps:
        pos = torch.arange(a, b)[None].expand(B, -1)
        qr, kr = m.rotate(q[:, :, a:b], k[:, :, a:b], pos)
        ks.append(kr), vs.append(v[:, :, a:b]), ps.append(pos)
        order = torch.randperm(b, generator=gen)  # ring-buffer slots: any order
        K, V, P = torch.cat(ks, 2)[:, :, order], torch.cat(vs, 2)[:, :, order], torch.cat(ps, 1)[:, order]
        outs.append(attend(m, qr, K, V, pos, P))
    return torch.cat(outs, 2)


def inputs(T, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, H, T, D, generator=g, dtype=dtype), torch.randn(2, HKV, T, D, generator=g, dtype=dtype),
            torch.randn(2, HKV, T, D, generator=g, dtype=dtype))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("prefill", [1, 5])
def test_cached_equals_full(name, prefill):
    m = build_position(PositionConfig.from_dict(CONFIGS[name]), n_heads=H, head_dim=D, d_model=H * D)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()  # T5 table: make every bucket matter
    T = ORIG if name in LENGTH_DEPENDENT else 2 * ORIG + 3  # scaled kinds: run past the trained length
    q, k, v = inputs(T)
    full = run_full(m, q, k, v)
    cached = run_cached(m, q, k, v, prefill, torch.Generator().manual_seed(1))
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def rotate_ref(x, pos, inv_freq, af=1.0):
    """Half-split rotation with explicit frequencies: x [B, h, T, D] at positions [T]."""
    ang = pos.double()[:, None] * inv_freq  # [T, R]
    cos, sin = ang.cos() * af, ang.sin() * af
    x1, x2 = x.double().chunk(2, -1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), -1)


@pytest.mark.parametrize("name", sorted(LENGTH_DEPENDENT))
def test_length_dependent_cache_keeps_each_keys_rotation(name):
    """Past the trained length a cached key keeps the frequencies of the length at which it was
    written (as transformers' cache does); the query uses the current length's frequencies.
    So cached decoding equals that reference and differs from one full forward."""
    cfg = PositionConfig.from_dict(CONFIGS[name])
    m = build_position(cfg, n_heads=H, head_dim=D, d_model=H * D)
    T, prefill = 2 * ORIG, ORIG - 4
    q, k, v = inputs(T, torch.float64)
    cached = run_cached(m, q, k, v, prefill, torch.Generator().manual_seed(1))

    def freqs(length):
        return scaled_inv_freq(cfg, D, torch.tensor(length))

    want = []
    written = [prefill] * prefill + list(range(prefill + 1, T + 1))  # length when key j was cached
    for t in range(prefill - 1, T):
        L = max(t + 1, prefill)
        inv_q, af = freqs(L)
        qt = rotate_ref(q[:, :, t:t + 1], torch.tensor([t]), inv_q, af)
        kt = torch.cat([rotate_ref(k[:, :, j:j + 1], torch.tensor([j]), freqs(written[j])[0], af) for j in range(t + 1)], 2)
        pos = torch.arange(t + 1)[None].expand(2, -1)
        want.append(attend(m, qt, kt, v[:, :, : t + 1], pos[:, -1:], pos))
    torch.testing.assert_close(cached[:, :, prefill - 1:], torch.cat(want, 2), atol=1e-9, rtol=1e-9)
    # exact while the length stays within the trained context...
    short = run_full(m, q[:, :, :ORIG], k[:, :, :ORIG], v[:, :, :ORIG])
    torch.testing.assert_close(cached[:, :, :ORIG], short, atol=1e-9, rtol=1e-9)
    # ...not beyond it: one full forward rotates every key with the final length's frequencies
    assert (cached[:, :, ORIG:] - run_full(m, q, k, v)[:, :, ORIG:]).abs().max() > 1e-3

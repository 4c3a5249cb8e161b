"""Fewer q/k heads than value heads (``linear.key_heads``, Qwen3-Next's Gated DeltaNet): each q/k
head serves heads/key_heads consecutive value heads, so the mixer equals one with full q/k heads
whose projections (and short-conv taps) repeat per group. Also MoE after linear mixers (plan
letter ``X``): cached decoding equals the full forward."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab import ConfigError, ModelConfig
from archlab.config import LayerPlan
from archlab.linear import LinearAttentionConfig, build_mixer, cache_bytes, params
from archlab.moe.config import MoEConfig

C, T, H, HK, DK, DV = 32, 11, 4, 2, 6, 5


def cfg(kind: str, key_heads: int | None, **kw) -> LinearAttentionConfig:
    return LinearAttentionConfig(kind=kind, heads=H, key_heads=key_heads, head_dim=DK, value_head_dim=DV, chunk_size=4, **kw)


def perturbed(c: LinearAttentionConfig):
    torch.manual_seed(0)
    m = build_mixer(c, C)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def expand_heads(w: torch.Tensor) -> torch.Tensor:
    """[Hk*Dk, ...] rows per q/k head -> [H*Dk, ...], each head's rows repeated for its value heads."""
    return w.view(HK, DK, *w.shape[1:]).repeat_interleave(H // HK, dim=0).reshape(H * DK, *w.shape[1:])


def twin_state(grouped) -> dict[str, torch.Tensor]:
    state = dict(grouped.state_dict())
    state["q_proj.weight"], state["k_proj.weight"] = expand_heads(state["q_proj.weight"]), expand_heads(state["k_proj.weight"])
    if "conv.weight" in state:
        q, k, v = state["conv.weight"].split([HK * DK, HK * DK, H * DV])
        state["conv.weight"] = torch.cat([expand_heads(q), expand_heads(k), v])
    return state


@pytest.mark.parametrize("kind", ["gated_deltanet", "deltanet", "gla", "linear"])
def test_grouped_heads_equal_repeated_projections_outputs_and_grads(kind):
    grouped = perturbed(cfg(kind, HK))
    full = build_mixer(cfg(kind, None), C)
    full.load_state_dict(twin_state(grouped))
    x = torch.randn(2, T, C, generator=torch.Generator().manual_seed(1), requires_grad=True)
    pos = torch.arange(T).expand(2, T)
    y, ref = grouped(x, positions=pos), full(x, positions=pos)
    torch.testing.assert_close(y, ref)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    (y * w).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    (ref * w).sum().backward()
    torch.testing.assert_close(gx, x.grad)
    # a shared q/k row gets the gradient of every copy
    g_full = full.q_proj.weight.grad.view(HK, H // HK, DK, C).sum(1).reshape(HK * DK, C)
    torch.testing.assert_close(grouped.q_proj.weight.grad, g_full)
    torch.testing.assert_close(grouped.o_proj.weight.grad, full.o_proj.weight.grad)


@pytest.mark.parametrize("kind", ["gated_deltanet", "deltanet"])
def test_prefill_then_decode_equals_full_forward(kind):
    c = cfg(kind, HK)
    m = perturbed(c).eval()
    x = torch.randn(2, T, C, generator=torch.Generator().manual_seed(3))
    pos = torch.arange(T).expand(2, T)
    with torch.no_grad():
        full = m(x, positions=pos)
        cache = m.new_cache(batch_size=2, max_len=T)
        steps = [m(x[:, :5], positions=pos[:, :5], cache=cache)]
        steps += [m(x[:, t:t + 1], positions=pos[:, t:t + 1], cache=cache) for t in range(5, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.nbytes() == cache_bytes(c, C, T, 2, torch.float32)
    assert params(c, C) == sum(p.numel() for p in m.parameters())
    assert m.q_proj.weight.shape == (HK * DK, C) and cache.state.shape == (2, H, DK, DV)


def test_key_heads_must_divide_heads():
    with pytest.raises(ConfigError, match="linear.key_heads"):
        LinearAttentionConfig(heads=4, key_heads=3)
    with pytest.raises(ConfigError, match="linear.key_heads"):
        LinearAttentionConfig(heads=4, key_heads=0)


def test_moe_after_linear_mixers_decodes_like_the_full_forward():
    """Plan letter X = linear mixer + MoE FFN; with L, A and E it spans Qwen3-Next's four layer kinds."""
    model_cfg = ModelConfig(
        vocab_size=64, d_model=C, n_layers=4, plan=LayerPlan(pattern="XLAE"), linear=cfg("gated_deltanet", HK),
        moe=MoEConfig(num_experts=4, top_k=2, expert_hidden=16, shared_experts=1, shared_gate=True),
    )
    assert [(s.mixer, s.ffn) for s in model_cfg.plan.specs(4)] == [
        ("linear", "moe"), ("linear", "dense"), ("attention", "dense"), ("attention", "moe")]
    torch.manual_seed(0)
    m = archlab.build(model_cfg).eval()
    assert archlab.count_params(model_cfg).total == sum(p.numel() for p in m.parameters())
    ids = torch.randint(0, 64, (2, T), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = m(ids)
        cache = m.new_cache(batch_size=2, max_len=T)
        steps = [m(ids[:, :3], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(3, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    m.train()
    m(ids).sum().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if n.startswith("blocks.0."))

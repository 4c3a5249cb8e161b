"""The chunked head cross-entropy against the full-logits reference: loss and every gradient."""
from __future__ import annotations

import pytest
import torch

import archlab
from archlab.ops.cross_entropy import linear_cross_entropy


def _inputs(N=37, C=16, V=53, bias=True, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=g, dtype=dtype, requires_grad=True)
    w = (torch.randn(V, C, generator=g, dtype=dtype) * 0.5).requires_grad_()
    b = (torch.randn(V, generator=g, dtype=dtype) * 0.5).requires_grad_() if bias else None
    t = torch.randint(0, V, (N,), generator=g)
    return h, w, b, t


def _grads(form, h, w, b, t, **kw):
    for x in (h, w, b):
        if x is not None:
            x.grad = None
    loss = linear_cross_entropy(h, w, t, b, form=form, **kw)
    (loss * 1.7).backward()
    return [loss.detach()] + [x.grad.clone() for x in (h, w, b) if x is not None]


@pytest.mark.parametrize("chunk", [1, 8, 37, 100])
@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_equals_reference(chunk, softcap, bias):
    h, w, b, t = _inputs(bias=bias)
    t[::5] = -100  # ignored targets count neither in the loss nor in the mean
    ref = _grads("reference", h, w, b, t, softcap=softcap)
    got = _grads("chunked", h, w, b, t, softcap=softcap, chunk_size=chunk)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a.double(), r.double(), rtol=1e-9, atol=1e-10)


def test_bfloat16_close_to_float64():
    h, w, b, t = _inputs(N=64, C=32, V=300, bias=False, dtype=torch.float64)
    ref = _grads("reference", h, w, None, t)
    hb, wb = h.detach().bfloat16().requires_grad_(), w.detach().bfloat16().requires_grad_()
    got = _grads("chunked", hb, wb, None, t, chunk_size=24)
    assert got[1].dtype == torch.bfloat16 and got[2].dtype == torch.bfloat16
    for a, r in zip(got, ref):
        assert ((a.double() - r).norm() / r.norm()).item() < 2e-2


def test_only_the_needed_gradients_and_no_grad():
    h, w, _, t = _inputs(bias=False)
    w.requires_grad_(False)
    loss = linear_cross_entropy(h, w, t, chunk_size=10)
    loss.backward()
    assert h.grad is not None and w.grad is None
    with torch.no_grad():
        torch.testing.assert_close(linear_cross_entropy(h, w, t), linear_cross_entropy(h, w, t, form="reference"))


def test_bad_input_names_the_argument():
    h, w, _, t = _inputs(bias=False)
    with pytest.raises(ValueError, match="form"):
        linear_cross_entropy(h, w, t, form="fused")
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(h, w, t[:-1])
    with pytest.raises(ValueError, match="h, weight"):
        linear_cross_entropy(h, w[:, :-1], t)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(h, w, t, chunk_size=0)


@pytest.mark.parametrize("preset, extra", [("llama-3-debug", {}), ("gemma-2-debug", {}),
                                           ("llama-3-debug", {"tie_embeddings": True, "logit_softcap": 5.0})])
def test_model_forward_with_targets_is_the_mean_next_token_loss(preset, extra):
    torch.manual_seed(0)
    cfg = archlab.presets.get(preset).replace(**extra)
    a = archlab.build(cfg, dtype=torch.float64)
    b = archlab.build(cfg, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (2, 9))
    targets = torch.randint(0, cfg.vocab_size, (2, 9))
    targets[0, :3] = -100
    logits = a(ids)
    ref = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    got = b(ids, targets=targets)
    torch.testing.assert_close(got, ref)
    ref.backward()
    got.backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=lambda m: f"{n}: {m}")

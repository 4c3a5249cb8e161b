"""Packed projections: one matmul for layers that share an input, with nothing else changed."""
from __future__ import annotations

import copy

import pytest
import torch

import archlab
from archlab.packing import pack_projections
from archlab.train.weights import read_weights, save_weights


def _model(preset="llama-3-debug", **kw):
    torch.manual_seed(0)
    return archlab.build(archlab.presets.get(preset).replace(**kw)).eval()


@pytest.mark.parametrize("preset, kw", [("llama-3-debug", {}), ("gemma-2-debug", {}),
                                        ("llama-3-debug", {"attention.qkv_bias": True, "ffn.bias": True})])
def test_packed_model_gives_the_same_logits_and_cached_decoding(preset, kw):
    a = _model(preset, **kw)
    b = copy.deepcopy(a)
    assert pack_projections(b) == 2 * b.cfg.n_layers
    ids = torch.randint(0, a.cfg.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(b(ids), a(ids))
    torch.testing.assert_close(archlab.generate(b, ids[:, :4], max_new_tokens=6), archlab.generate(a, ids[:, :4], max_new_tokens=6))
    # the parameters are views of the packed rows: same names, shapes and values
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    blk = b.blocks[0]
    assert blk.mixer.k_proj.weight.untyped_storage().data_ptr() == blk.mixer.q_proj.weight.untyped_storage().data_ptr()


def test_training_through_a_packed_model_updates_the_packed_rows():
    a, b = _model(), _model()
    pack_projections(b)
    ids = torch.randint(0, a.cfg.vocab_size, (2, 9))
    for m in (a, b):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        m(ids, targets=ids).backward()
        opt.step()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, msg=lambda s: f"{n}: {s}")
    with torch.no_grad():  # the packed path reads the updated rows
        torch.testing.assert_close(b(ids), a(ids))


def test_replaced_parameters_and_conversion_drop_the_packing(tmp_path):
    a = _model()
    b = copy.deepcopy(a)
    pack_projections(b)
    ids = torch.randint(0, a.cfg.vocab_size, (1, 5))
    att = b.blocks[0].mixer
    with torch.no_grad():
        att.k_proj.weight = torch.nn.Parameter(att.k_proj.weight * 2)  # no longer a view
        a.blocks[0].mixer.k_proj.weight.mul_(2)
        torch.testing.assert_close(b(ids), a(ids))
    assert att._packed is None
    pack_projections(b)
    b.double()
    assert all(getattr(m, "_packed", None) is None for m in b.modules())
    # a packed model saves like any other (safetensors refuses shared memory; views are copied)
    c = copy.deepcopy(a)
    pack_projections(c)
    save_weights(c.state_dict(), tmp_path / "w.safetensors")
    for k, v in read_weights(tmp_path / "w.safetensors").items():
        torch.testing.assert_close(v, a.state_dict()[k])

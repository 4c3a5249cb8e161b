"""The fused decoding step (archlab.decode_fused): norms, SwiGLU and residual adds inside the
matrix-vector products. Its tokens and logits equal archlab.generate's, through the PyTorch
reference of the products (any machine), under torch.compile, with the Triton kernels under the
interpreter, and on the GPU."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

import archlab
from archlab.decode import GraphDecoder
from archlab.decode_fused import FusedStep, unsupported

sys.path.insert(0, str(Path(__file__).parent / "ops"))
from triton_marks import interpreter  # noqa: E402


def _model(**over):
    torch.manual_seed(1)
    m = archlab.build(archlab.presets.get("llama-3-debug").replace(**over))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(20)  # a peaked distribution so greedy paths are distinctive
    return m.eval()


@pytest.mark.parametrize("over", [{}, {"position.kind": "alibi"}, {"norm.unit_offset": True}, {"tie_embeddings": True}])
def test_fused_step_equals_generate(over):
    m = _model(**over)
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(0))
    ref = archlab.generate(m, ids, max_new_tokens=8)
    assert torch.equal(GraphDecoder(copy.deepcopy(m), 1, 14, use_graph=False, fused=True).generate(ids, 8), ref)


def test_fused_logits_equal_the_modules():
    m = _model()
    ids = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(2))
    plain = GraphDecoder(copy.deepcopy(m), 1, 8, use_graph=False)
    fused = GraphDecoder(copy.deepcopy(m), 1, 8, use_graph=False, fused=True)
    a, b = plain.prefill(ids), fused.prefill(ids)
    tok = a.argmax(-1)
    torch.testing.assert_close(fused.step(tok), plain.step(tok), rtol=1e-5, atol=1e-4)


def test_fused_compiled_step_equals_generate():
    m = _model()
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(3))
    ref = archlab.generate(m, ids, max_new_tokens=5)
    dec = GraphDecoder(copy.deepcopy(m), 1, 11, use_graph=False, fused=True, compile=True)
    assert torch.equal(dec.generate(ids, 5), ref)


@interpreter
def test_fused_triton_step_equals_generate_interpreted():
    m = _model()
    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(4))
    ref = archlab.generate(m, ids, max_new_tokens=5)
    dec = GraphDecoder(copy.deepcopy(m), 1, 11, use_graph=False, fused=True)
    dec._fn = FusedStep(dec.model, dec.cache, form="triton")
    assert torch.equal(dec.generate(ids, 5), ref)


@pytest.mark.parametrize("over,why", [
    ({"attention.qk_norm": "head"}, "QK-norm"),
    ({"norm.placement": "post"}, "pre-norm"),
    ({"ffn.kind": "mlp"}, "gated MLP"),
])
def test_unsupported_models_are_named(over, why):
    m = _model(**over)
    with pytest.raises(ValueError, match=why):
        GraphDecoder(m, 1, 8, use_graph=False, fused=True)
    assert unsupported(_model(), 2) is not None  # batch 1 only


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile", [False, True])
def test_fused_cuda_graph_decoder_equals_generate_on_gpu(compile):
    m = archlab.build(archlab.presets.get("llama-3-debug")).cuda().eval()
    ids = torch.randint(0, 256, (1, 7), device="cuda")
    ref = archlab.generate(m, ids, max_new_tokens=20)
    assert torch.equal(GraphDecoder(copy.deepcopy(m), 1, 27, compile=compile, fused=True).generate(ids, 20), ref)

import copy

import pytest
import torch

import archlab
from archlab.generation import sample_next


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    m = archlab.build(archlab.presets.get("llama-3-debug"))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(20)  # a peaked distribution so greedy paths are distinctive
    return m.eval()


def test_greedy_with_cache_equals_without(model):
    ids = torch.randint(0, 256, (2, 5))
    a = archlab.generate(model, ids, max_new_tokens=12)
    b = archlab.generate(model, ids, max_new_tokens=12, use_cache=False)
    assert a.shape == (2, 17) and torch.equal(a, b) and torch.equal(a[:, :5], ids)


def test_sampling_is_reproducible_with_a_seed(model):
    ids = torch.randint(0, 256, (1, 4))
    kw = dict(max_new_tokens=10, temperature=1.0, top_k=50, top_p=0.9)
    assert torch.equal(archlab.generate(model, ids, seed=3, **kw), archlab.generate(model, ids, seed=3, **kw))


def test_stream_and_eos(model):
    ids = torch.randint(0, 256, (1, 4))
    greedy = archlab.generate(model, ids, max_new_tokens=6)
    eos = int(greedy[0, 6])  # the third generated token
    seen = []
    out = archlab.generate(model, ids, max_new_tokens=6, eos_id=eos, stream=lambda t: seen.append(int(t[0])))
    assert out.shape[1] == 7 and seen == out[0, 4:].tolist() and seen[-1] == eos


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = {int(sample_next(logits, temperature=1.0, top_k=2, generator=g)) for _ in range(200)}
    assert draws == {0, 1}
    draws = {int(sample_next(logits, temperature=1.0, top_p=0.8, generator=g)) for _ in range(200)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8: the rest is cut
    draws = {int(sample_next(logits, temperature=1.0, top_p=0.81, generator=g)) for _ in range(300)}
    assert draws == {0, 1, 2}


@pytest.mark.parametrize("kw, field", [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"),
                                       ({"top_k": 0}, "top_k"), ({"max_new_tokens": -1}, "max_new_tokens")])
def test_bad_sampling_arguments(model, kw, field):
    args = {"max_new_tokens": 2, **kw}
    with pytest.raises(ValueError, match=field):
        archlab.generate(model, torch.zeros(1, 2, dtype=torch.long), **args)


def test_static_cache_decoder_equals_generate(model):
    from archlab.decode import GraphDecoder

    ids = torch.randint(0, 256, (2, 5))
    ref = archlab.generate(model, ids, max_new_tokens=9)
    dec = GraphDecoder(model, batch_size=2, max_len=14, use_graph=False)
    assert torch.equal(dec.generate(ids, 9), ref)
    with pytest.raises(ValueError, match="CUDA"):
        GraphDecoder(model, 1, 8, use_graph=True)


def test_compiled_static_step_equals_generate(model):
    """The compiled decode step (inductor, fullgraph) with packed projections: same greedy tokens."""
    from archlab.decode import GraphDecoder

    ids = torch.randint(0, 256, (1, 6), generator=torch.Generator().manual_seed(3))
    ref = archlab.generate(model, ids, max_new_tokens=7)
    assert torch.equal(GraphDecoder(copy.deepcopy(model), 1, 13, use_graph=False, compile=True).generate(ids, 7), ref)
    with pytest.raises(ValueError, match="compile"):
        GraphDecoder(model, 1, 8, use_graph=False, compile="reduce-overhead")


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True])
def test_cuda_graph_decoder_equals_generate_on_gpu(compile):
    from archlab.decode import GraphDecoder

    m = archlab.build(archlab.presets.get("llama-3-debug")).cuda().eval()
    ids = torch.randint(0, 256, (1, 7), device="cuda")
    ref = archlab.generate(m, ids, max_new_tokens=20)
    assert torch.equal(GraphDecoder(copy.deepcopy(m), 1, 27, compile=compile).generate(ids, 20), ref)

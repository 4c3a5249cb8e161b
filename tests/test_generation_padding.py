"""Batches of prompts of different lengths, left-padded: every row equals the row alone.

For each cache kind, token mixer and position encoding: the padded full forward, a padded
cached prefill followed by decode steps, and greedy generation give each row exactly what
it gives unpadded and alone (float64 models with every parameter perturbed, so no near-tie
flips a greedy pick).
"""
import pytest
import torch

import archlab
from archlab.generation import generate, left_pad

LENGTHS = (3, 7, 5)
NEW = 5
V = 61
# float64 models; some mixers compute parts in float32 (SSM dt, gates), which rounds at 1e-8:
# a pad leaking into a row moves its logits by far more
TOL = dict(rtol=1e-6, atol=1e-6)
BASE = archlab.ModelConfig.from_dict({
    "vocab_size": V, "d_model": 32, "n_layers": 2, "attention": {"heads": 4, "kv_heads": 2},
    "ffn": {"hidden": 64}, "init_std": 0.1,
})
MLA = {"kind": "mla", "heads": 4, "mla": {"kv_lora_rank": 16, "q_lora_rank": 12, "qk_nope_head_dim": 8,
                                        "qk_rope_head_dim": 4, "v_head_dim": 8}}
LONGROPE = {"kind": "longrope", "factor": 4.0, "original_max_positions": 6, "short_factor": [1.0, 1.5, 2.0, 2.5],
            "long_factor": [2.0, 3.0, 4.0, 5.0], "longrope_select": "by_length"}


def _linear(kind: str, **kw) -> dict:
    return {"plan": {"pattern": "L"}, "linear": {"kind": kind, "heads": 4, **kw}}


CASES = {
    # attention caches
    "kv-sdpa": {},
    "kv-eager": {"attention.backend": "eager"},
    "mqa-softcap": {"attention.kv_heads": 1, "attention.softcap": 5.0},
    "window": {"attention.window": 4},
    "window-sinks": {"attention.window": 4, "attention.sinks": 2},
    "block-sparse": {"attention.sparse_block": 4, "attention.global_tokens": 2},
    "int8": {"attention.cache_dtype": "int8"},
    "int8-window-sinks": {"attention.cache_dtype": "int8", "attention.window": 4, "attention.sinks": 2},
    "mla-naive": {"attention": {**MLA, "mla": {**MLA["mla"], "path": "naive"}}},
    "mla-absorbed": {"attention": {**MLA, "mla": {**MLA["mla"], "path": "absorbed"}}},
    "mla-int8": {"attention": {**MLA, "cache_dtype": "int8"}},
    # positions
    "rope-linear": {"position.scaling": {"kind": "linear", "factor": 2.0}},
    "rope-dynamic": {"position.scaling": {"kind": "dynamic", "factor": 2.0, "original_max_positions": 6}},
    "rope-yarn": {"position.scaling": {"kind": "yarn", "factor": 4.0, "original_max_positions": 6}},
    "rope-llama3": {"position.scaling": {"kind": "llama3", "factor": 8.0, "original_max_positions": 6}},
    "rope-longrope": {"position.scaling": LONGROPE},
    "rope-partial-interleaved": {"position.rotary_fraction": 0.5, "position.interleaved": True},
    "alibi": {"position": {"kind": "alibi"}},
    "t5": {"position": {"kind": "t5", "num_buckets": 8, "max_distance": 16}},
    "learned": {"position": {"kind": "learned", "max_positions": 32}},
    "sinusoidal": {"position": {"kind": "sinusoidal"}},
    "nope": {"position": {"kind": "none"}},
    # recurrent states
    "mamba": {"plan": {"pattern": "M"}, "ssm": {"kind": "mamba"}},
    "mamba2": {"plan": {"pattern": "M"}, "ssm": {"kind": "mamba2", "head_dim": 8}},
    "linear-elu": _linear("linear"),
    "linear-elu-conv": _linear("linear", conv_size=3),
    "linear-cosformer": _linear("linear", feature_map={"kind": "cosformer"}),
    "linear-hedgehog": _linear("linear", feature_map={"kind": "hedgehog"}),
    "retention": _linear("retention"),
    "gla": _linear("gla"),
    "deltanet": _linear("deltanet"),
    "gated-deltanet": _linear("gated_deltanet"),
    "based": _linear("based", window=4),
    # hybrids
    "hybrid-attention-mamba2": {"n_layers": 3, "plan": {"pattern": "AMA"}, "ssm": {"kind": "mamba2", "head_dim": 8}},
    "hybrid-window-linear": {"plan": {"pattern": "AL"}, "attention.window": 4, "linear": {"kind": "gated_deltanet"}},
}


def _model(overrides: dict) -> archlab.Model:
    torch.manual_seed(0)
    m = archlab.build(BASE.replace(**overrides), dtype=torch.float64).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0; perturb everything
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _prompts(seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, V, (n,), generator=g).tolist() for n in LENGTHS]


@pytest.mark.parametrize("name", list(CASES))
@torch.no_grad()
def test_padded_batch_equals_each_row_alone(name):
    m = _model(CASES[name])
    prompts = _prompts()
    ids, mask = left_pad(prompts)
    T = ids.shape[1]
    g = torch.Generator().manual_seed(1)
    follow = torch.randint(1, V, (3, NEW), generator=g)  # teacher-forced decode tokens
    # full forward (training / evaluation path)
    full = m(ids, attention_mask=mask)
    # cached: padded prefill, then one token per step
    cache = m.new_cache(3, T + NEW)
    steps = [m(ids, cache=cache, attention_mask=mask)] + [m(follow[:, i:i + 1], cache=cache) for i in range(NEW)]
    cached = torch.cat(steps, dim=1)  # [3, T + NEW, V]
    for b, p in enumerate(prompts):
        n, pad = len(p), T - len(p)
        alone = torch.tensor([p])
        torch.testing.assert_close(full[b, pad:], m(alone)[0], **TOL)
        c1 = m.new_cache(1, n + NEW)
        ref = torch.cat([m(alone, cache=c1)] + [m(follow[b:b + 1, i:i + 1], cache=c1) for i in range(NEW)], dim=1)
        torch.testing.assert_close(cached[b, pad:], ref[0], **TOL)
    # greedy generation: token lists and the padded tensor with its mask give the same rows
    out = generate(m, prompts, NEW)
    assert torch.equal(out, generate(m, ids, NEW, attention_mask=mask))
    for b, p in enumerate(prompts):
        alone = generate(m, torch.tensor([p]), NEW)
        assert out[b, T:].tolist() == alone[0, len(p):].tolist(), f"row {b}"
        assert out[b, T - len(p):T].tolist() == p


@pytest.mark.parametrize("name", ["kv-sdpa", "mamba2", "gla"])
@torch.no_grad()
def test_uncached_padded_generation_equals_cached(name):
    m = _model(CASES[name])
    prompts = _prompts(3)
    assert torch.equal(generate(m, prompts, NEW, use_cache=False), generate(m, prompts, NEW))


@pytest.mark.parametrize("name", ["kv-sdpa", "window-sinks", "mamba"])
@torch.no_grad()
def test_sampling_is_deterministic_per_row_whatever_the_padding(name):
    m = _model(CASES[name])
    prompts = _prompts(5)
    kw = dict(temperature=1.0, top_k=20, seed=7)
    a = generate(m, prompts, 8, **kw)
    assert torch.equal(a, generate(m, prompts, 8, **kw))
    # two more pad columns change no row's sample: the draws depend on the logits, not the layout
    ids, mask = left_pad(prompts)
    ids2 = torch.cat([torch.zeros(3, 2, dtype=torch.long), ids], dim=1)
    mask2 = torch.cat([torch.zeros(3, 2, dtype=torch.long), mask], dim=1)
    b = generate(m, ids2, 8, attention_mask=mask2, **kw)
    assert torch.equal(a[:, ids.shape[1]:], b[:, ids2.shape[1]:])
    assert not torch.equal(a, generate(m, prompts, 8, **{**kw, "seed": 8}))


@torch.no_grad()
def test_static_cache_takes_padding_with_per_row_positions():
    m = _model({})
    prompts = _prompts(2)
    ids, mask = left_pad(prompts)
    B, T = ids.shape
    n_pad = (mask == 0).sum(-1)
    cache = m.new_cache(B, T + NEW, static=True)
    pos = torch.arange(T)[None] - n_pad[:, None]
    logits = [m(ids, cache=cache, positions=pos, attention_mask=mask)[:, -1]]
    tokens = []
    for i in range(NEW):
        tok = logits[-1].argmax(-1)
        tokens.append(tok)
        logits.append(m(tok[:, None], cache=cache, positions=(T + i - n_pad)[:, None])[:, -1])
    got = torch.stack(tokens, 1)
    for b, p in enumerate(prompts):
        assert got[b].tolist() == generate(m, torch.tensor([p]), NEW)[0, len(p):].tolist()


@torch.no_grad()
def test_repetition_penalty_ignores_the_pad_id():
    m = _model({})
    prompts = _prompts(4)
    out = generate(m, prompts, NEW, repetition_penalty=1.5)
    T = out.shape[1] - NEW
    for b, p in enumerate(prompts):
        alone = generate(m, torch.tensor([p]), NEW, repetition_penalty=1.5)
        assert out[b, T:].tolist() == alone[0, len(p):].tolist()


@torch.no_grad()
def test_an_all_ones_mask_is_the_unpadded_path():
    m = _model({})
    ids = torch.randint(1, V, (2, 6))
    torch.testing.assert_close(m(ids, attention_mask=torch.ones_like(ids)), m(ids), rtol=0, atol=0)
    cache = m.new_cache(2, 8)
    m(ids, cache=cache, attention_mask=torch.ones_like(ids))
    assert cache.offsets is None


def test_bad_masks_are_named_errors():
    m = _model({})
    ids = torch.randint(1, V, (2, 5))
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="attention_mask: padding must be on the left"):
        m(ids, attention_mask=right)
    with pytest.raises(ValueError, match="attention_mask: expected a tensor of input_ids' shape"):
        m(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask: values must be 0"):
        m(ids, attention_mask=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match="attention_mask: row 1 has no real token"):
        m(ids, attention_mask=torch.tensor([[0, 1, 1, 1, 1], [0, 0, 0, 0, 0]]))
    cache = m.new_cache(2, 12)
    m(ids, cache=cache)
    with pytest.raises(ValueError, match="attention_mask: padding can only start an empty cache"):
        m(ids, cache=cache, attention_mask=torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="input_ids: every prompt needs at least one token"):
        generate(m, [[1, 2], []], 2)
    with pytest.raises(ValueError, match="attention_mask: give it with a padded tensor"):
        generate(m, [[1, 2], [3]], 2, attention_mask=torch.ones(2, 2))


@torch.no_grad()
def test_lm_eval_generation_batches_prompts_of_different_lengths():
    from archlab.data.tokenizer import ByteTokenizer
    from archlab.eval.lm_eval_adapter import LMEvalModel

    m = _model({"vocab_size": 258})
    tok = ByteTokenizer()
    reqs = [(ctx, {"until": ["\x00"], "max_gen_toks": 6}) for ctx in ("ab", "the quick", "hello")]
    batched = LMEvalModel(m, tok, batch_size=3).generate_until(reqs)
    assert batched == LMEvalModel(m, tok, batch_size=1).generate_until(reqs)
    assert all(batched)

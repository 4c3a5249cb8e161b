"""Conformance of every supported transformers family, in float32 on the CPU, offline.

For each case a tiny random model is built from the transformers config class, every parameter
is perturbed (random init leaves norms at 1 and biases at 0, which would hide mapping errors),
and the converted archlab model must give the same logits and gradients, the same greedy tokens
through its cache as transformers' own ``generate``, and, exported with ``to_hf``, load back into
transformers (``from_pretrained``) and into archlab (``from_hf(dir)``) with the same logits.
"""
from __future__ import annotations

import copy

import pytest
import torch

import archlab
from archlab.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")

V = 97
# shared small shape: 2 layers, width 32, 4 query heads, 2 key/value heads
LLAMA = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
TOKENS = dict(pad_token_id=0, bos_token_id=None, eos_token_id=None)  # no eos: both sides generate every token
HALF = 4  # rotary frequencies of head dim 8


def _rope(**rp):
    return {"rope_parameters": {"rope_theta": 500.0, **rp}}


# name -> (transformers config class name, kwargs, archlab.interop family)
CASES = {
    "llama": ("LlamaConfig", dict(LLAMA, attention_bias=True, mlp_bias=True, **_rope(rope_type="default")), "llama"),
    "llama_tied_gelu": ("LlamaConfig", dict(LLAMA, tie_word_embeddings=True, hidden_act="gelu_pytorch_tanh"), "llama"),
    "llama_linear": ("LlamaConfig", dict(LLAMA, **_rope(rope_type="linear", factor=2.0)), "llama"),
    # trained length 8 < the 11-token forward and 14-token generation: the NTK stretch is exercised
    "llama_dynamic": ("LlamaConfig", dict(LLAMA, max_position_embeddings=8, **_rope(rope_type="dynamic", factor=3.0)), "llama"),
    # Llama's attention uses mscale/mscale_all_dim for the cos/sin factor only (DeepSeek's also rescales the softmax)
    "llama_yarn": ("LlamaConfig", dict(LLAMA, **_rope(rope_type="yarn", factor=4.0, original_max_position_embeddings=16,
                                                     beta_fast=8.0, beta_slow=0.5, mscale=1.0, mscale_all_dim=0.5)), "llama"),
    "llama_llama3": ("LlamaConfig", dict(LLAMA, **_rope(rope_type="llama3", factor=8.0, original_max_position_embeddings=16,
                                                       low_freq_factor=1.0, high_freq_factor=4.0)), "llama"),
    # factor sets switch when the length passes 8, inside both the forward and the generation
    "llama_longrope": ("LlamaConfig", dict(LLAMA, max_position_embeddings=32, **_rope(
        rope_type="longrope", original_max_position_embeddings=8,
        short_factor=[1.0, 1.3, 1.7, 2.0][:HALF], long_factor=[1.5, 2.5, 4.0, 6.0][:HALF])), "llama"),
    "mistral": ("MistralConfig", dict(LLAMA, sliding_window=4), "mistral"),
    # layers 0 full, 1 sliding (max_window_layers=1): a non-uniform layer plan
    "qwen2": ("Qwen2Config", dict(LLAMA, use_sliding_window=True, sliding_window=5, max_window_layers=1), "qwen2"),
    "qwen3": ("Qwen3Config", dict(LLAMA, head_dim=16, attention_bias=True), "qwen3"),
    "phi3": ("Phi3Config", dict(LLAMA, sliding_window=6, partial_rotary_factor=0.5), "phi3"),
    "phi3_longrope": ("Phi3Config", dict(LLAMA, max_position_embeddings=32, original_max_position_embeddings=8, rope_parameters={
        "rope_type": "longrope", "rope_theta": 500.0, "short_factor": [1.0, 1.2, 1.4, 1.6], "long_factor": [2.0, 3.0, 4.0, 5.0]}), "phi3"),
    "gemma2": ("Gemma2Config", dict(LLAMA, head_dim=16, sliding_window=4, query_pre_attn_scalar=12,
                                    attn_logit_softcapping=5.0, final_logit_softcapping=3.0), "gemma2"),
    "olmo2": ("Olmo2Config", dict(LLAMA, attention_bias=True), "olmo2"),
    "gpt2": ("GPT2Config", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=32), "gpt2"),
    "gpt2_untied_relu": ("GPT2Config", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=32, n_inner=40,
                                            tie_word_embeddings=False, activation_function="relu"), "gpt2"),
    "gpt_neox": ("GPTNeoXConfig", dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       rope_parameters={"rope_theta": 500.0, "partial_rotary_factor": 0.5}), "gpt_neox"),
    "gpt_neox_sequential": ("GPTNeoXConfig", dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, use_parallel_residual=False, attention_bias=False), "gpt_neox"),
    "gptj": ("GPTJConfig", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64), "gptj"),
    "bloom": ("BloomConfig", dict(vocab_size=V, hidden_size=32, n_layer=2, n_head=4), "bloom"),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine the threads'
    spinning costs 10-50x the work itself."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)


def build_hf(case: str):
    cls_name, kwargs, _ = CASES[case]
    hf_cfg = getattr(transformers, cls_name)(**{**TOKENS, **copy.deepcopy(kwargs)})
    # eager: transformers 5.17 lets Gemma-2 pick SDPA, which drops the attention soft-cap
    hf = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(hf_cfg), attn_implementation="eager").eval()
    perturb(hf)
    return hf


@pytest.mark.parametrize("case", list(CASES))
def test_family_conformance(case, tmp_path):
    hf = build_hf(case)
    ours = from_hf(hf).eval()
    ids = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(1))

    # logits and gradients (the embedding is laid out alike in every family)
    ref = hf(ids).logits
    out = ours(ids)
    torch.testing.assert_close(out, ref)
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(ours.embed.weight.grad, hf.get_input_embeddings().weight.grad, atol=1e-4, rtol=1e-3)

    # greedy decoding through each side's own cache
    # Phi-3's generate rebuilds its cache when the length crosses the LongRoPE switch (and
    # transformers versions differ in how), so its prompt starts past the switch
    prompt = ids[:, :9] if case == "phi3_longrope" else ids[:, :6]
    with torch.no_grad():
        want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0)
    got = archlab.generate(ours, prompt, max_new_tokens=8)
    assert torch.equal(got, want), f"{case}: greedy tokens differ\nours {got.tolist()}\nhf   {want.tolist()}"

    # export, then load back with transformers and with archlab
    to_hf(ours, tmp_path / "hf", model_type=CASES[case][2])
    with torch.no_grad():
        reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
        assert reloaded.config.model_type == CASES[case][2]
        torch.testing.assert_close(reloaded(ids).logits, ref)
        again = from_hf(tmp_path / "hf")
        assert again.cfg == ours.cfg
        torch.testing.assert_close(again(ids), ref)

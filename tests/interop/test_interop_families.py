"""Conformance of every supported transformers family, in float32 on the CPU, offline.

For each case a tiny random model is built from the transformers config class, every parameter
is perturbed (random init leaves norms at 1 and biases at 0, which would hide mapping errors),
and the converted archlab model must give the same logits and gradients, the same greedy tokens
through its cache as transformers' own ``generate``, and, exported with ``to_hf``, load back into
transformers (``from_pretrained``) and into archlab (``from_hf(dir)``) with the same logits.
"""
from __future__ import annotations

import pytest
import torch

from conformance import build_hf, check_conformance

transformers = pytest.importorskip("transformers")

V = 97
# shared small shape: 2 layers, width 32, 4 query heads, 2 key/value heads
LLAMA = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
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


@pytest.mark.parametrize("case", list(CASES))
def test_family_conformance(case, tmp_path):
    cls_name, kwargs, model_type = CASES[case]
    # Phi-3's generate rebuilds its cache when the length crosses the LongRoPE switch (and
    # transformers versions differ in how), so its prompt starts past the switch
    check_conformance(build_hf(cls_name, kwargs), model_type, V, tmp_path,
                      prompt_len=9 if case == "phi3_longrope" else 6)

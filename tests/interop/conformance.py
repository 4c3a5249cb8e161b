"""The conformance check every transformers family is held to (float32, CPU, offline).

A tiny random model is built from the transformers config class, every parameter is perturbed
(random init leaves norms at 1 and biases at 0, which would hide mapping errors), and the converted
archlab model must give the same logits and gradients, the same greedy tokens through its cache as
transformers' own ``generate``, and, exported with ``to_hf``, load back into transformers
(``from_pretrained``) and into archlab (``from_hf(dir)``) with the same logits.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

import archlab
from archlab.interop import from_hf, to_hf

TOKENS = dict(pad_token_id=0, bos_token_id=None, eos_token_id=None)  # no eos: both sides generate every token


def perturb(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)


def build_hf(cls_name: str, kwargs: dict, attn_implementation: str | None = "eager"):
    import transformers

    hf_cfg = getattr(transformers, cls_name)(**{**TOKENS, **copy.deepcopy(kwargs)})
    # eager: transformers 5.17 lets Gemma-2 pick SDPA, which drops the attention soft-cap
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    hf = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(hf_cfg), **extra).eval()
    perturb(hf)
    return hf


def check_conformance(hf, model_type: str, vocab: int, tmp_path: Path, *, prompt_len: int = 6, new_tokens: int = 8,
                      seq_len: int = 11, atol: float | None = None, rtol: float | None = None,
                      grad_atol: float = 1e-4) -> None:
    """Logits, embedding gradients, greedy generation, and the to_hf / from_hf round trip.

    ``grad_atol``: absolute tolerance of the embedding gradients, for models whose gradients are
    large enough (hundreds) that float32 rounding alone passes 1e-4 on their small entries."""
    import transformers

    tol = {} if atol is None else {"atol": atol, "rtol": rtol}
    ours = from_hf(hf).eval()
    ids = torch.randint(0, vocab, (2, seq_len), generator=torch.Generator().manual_seed(1))

    # logits and gradients (the embedding is laid out alike in every family)
    ref = hf(ids).logits
    out = ours(ids)
    torch.testing.assert_close(out, ref, **tol)
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(ours.embed.weight.grad, hf.get_input_embeddings().weight.grad, atol=grad_atol, rtol=1e-3)

    # greedy decoding through each side's own cache
    prompt = ids[:, :prompt_len]
    with torch.no_grad():
        want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0)
    got = archlab.generate(ours, prompt, max_new_tokens=new_tokens)
    assert torch.equal(got, want), f"{model_type}: greedy tokens differ\nours {got.tolist()}\nhf   {want.tolist()}"

    # export, then load back with transformers and with archlab
    to_hf(ours, tmp_path / "hf", model_type=model_type)
    with torch.no_grad():
        reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
        assert reloaded.config.model_type == model_type
        torch.testing.assert_close(reloaded(ids).logits, ref, **tol)
        again = from_hf(tmp_path / "hf")
        assert again.cfg == ours.cfg
        torch.testing.assert_close(again(ids), ref, **tol)

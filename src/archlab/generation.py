"""Autoregressive generation with the model's cache.

Greedy when temperature is 0; otherwise temperature, top-k and nucleus (top-p) sampling
from a seeded generator, so a seed reproduces a sample.
"""
from __future__ import annotations

from typing import Callable

import torch

from archlab.model import Model


def sample_next(logits: torch.Tensor, *, temperature: float = 0.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> next token ids [B]."""
    if temperature == 0.0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already hold top_p of the mass
        drop = probs.cumsum(-1) - probs >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check(temperature: float, top_k: int | None, top_p: float | None, max_new_tokens: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k: must be a positive integer or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: must be in (0, 1], got {top_p}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: must be >= 0, got {max_new_tokens}")


@torch.no_grad()
def generate(model: Model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             eos_id: int | None = None, stream: Callable[[torch.Tensor], None] | None = None,
             use_cache: bool = True) -> torch.Tensor:
    """Continue input_ids [B, T] by up to max_new_tokens; returns [B, T + n].

    ``stream`` is called with each new token column [B] as soon as it is chosen. Rows that
    produced ``eos_id`` keep emitting it; generation stops once every row has.
    """
    _check(temperature, top_k, top_p, max_new_tokens)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    B, T = input_ids.shape
    device = input_ids.device
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        out = input_ids
        done = torch.zeros(B, dtype=torch.bool, device=device)
        cache = model.new_cache(B, T + max_new_tokens) if use_cache else None
        step_in = input_ids
        for _ in range(max_new_tokens):
            logits = model(step_in, cache=cache)[:, -1] if use_cache else model(out)[:, -1]
            nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
            if eos_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                done = done | (nxt == eos_id)
            out = torch.cat([out, nxt[:, None]], dim=1)
            if stream is not None:
                stream(nxt)
            if eos_id is not None and bool(done.all()):
                break
            step_in = nxt[:, None]
        return out
    finally:
        model.train(was_training)

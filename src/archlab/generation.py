"""Autoregressive generation with the model's cache.

Greedy when temperature is 0; otherwise temperature, top-k and nucleus (top-p) sampling
from a seeded generator, so a seed reproduces a sample. A repetition penalty (Keskar et al.
2019, "CTRL", sec. 4.1) discounts tokens already in the sequence; stop strings end a row once
its decoded continuation contains one. Rows of a batch share one prompt length (no padding).
"""
from __future__ import annotations

from typing import Callable, Sequence

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


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: logits [B, V] of tokens present in seen [B, L] are divided by ``penalty``
    where positive and multiplied by it where negative, so > 1 always makes them less likely."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(-1, seen)  # [B, L]
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(-1, seen, picked)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


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
             use_cache: bool = True, *, repetition_penalty: float = 1.0, stop: Sequence[str] | None = None,
             decode: Callable[[list[int]], str] | None = None) -> torch.Tensor:
    """Continue input_ids [B, T] by up to max_new_tokens; returns [B, T + n].

    ``stream`` is called with each new token column [B] as soon as it is chosen. Rows that
    produced ``eos_id`` keep emitting it; generation stops once every row has.
    ``repetition_penalty`` > 1 discounts every token already in the row (prompt included).
    ``stop``: strings that end a row once ``decode(new tokens)`` contains one (``decode`` is
    required with it, e.g. ``tokenizer.decode``); a finished row is padded with ``eos_id``
    (0 without one) and the text can be cut with :func:`truncate_at_stop`.
    """
    _check(temperature, top_k, top_p, max_new_tokens)
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty: must be > 0 (1 = off), got {repetition_penalty}")
    stop = [stop] if isinstance(stop, str) else [s for s in (stop or ()) if s]
    if stop and decode is None:
        raise ValueError("decode: stop strings need a decode function (token ids -> text), e.g. tokenizer.decode")
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
        pad = eos_id if eos_id is not None else 0  # what a finished row emits
        cache = model.new_cache(B, T + max_new_tokens) if use_cache else None
        step_in = input_ids
        for _ in range(max_new_tokens):
            logits = model(step_in, cache=cache)[:, -1] if use_cache else model(out)[:, -1]
            logits = apply_repetition_penalty(logits, out, repetition_penalty)
            nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
            if eos_id is not None or stop:
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            if eos_id is not None:
                done = done | (nxt == eos_id)
            out = torch.cat([out, nxt[:, None]], dim=1)
            if stop:
                for b in range(B):
                    if not done[b] and any(s in decode(out[b, T:].tolist()) for s in stop):
                        done[b] = True
            if stream is not None:
                stream(nxt)
            if (eos_id is not None or stop) and bool(done.all()):
                break
            step_in = nxt[:, None]
        return out
    finally:
        model.train(was_training)

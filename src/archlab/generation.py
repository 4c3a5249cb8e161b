"""Autoregressive generation with the model's cache.

Greedy when temperature is 0; otherwise temperature, top-k and nucleus (top-p) sampling
from a seeded generator, so a seed reproduces a sample. A repetition penalty (Keskar et al.
2019, "CTRL", sec. 4.1) discounts tokens already in the sequence; stop strings end a row once
its decoded continuation contains one.

Prompts of different lengths form one batch with left padding (a list of token lists, or a
padded tensor with ``attention_mask``): each row's first real token is position 0, no real
token attends to a pad and pads never enter a recurrent state, so every row continues
exactly as it would alone -- for every cache kind and token mixer. Sampling draws one
multinomial per row from the seeded generator, so the amount of padding changes no draw. The
CUDA-graph decoder (``archlab.decode``) takes batches without padding; padded ones go here.
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


def _without_pads(out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """out [B, L] with each pad replaced by its row's first real token, so a penalty over the
    row's tokens never counts the pad id."""
    if mask is None:
        return out
    first = out.gather(1, (~mask).sum(-1, keepdim=True))  # [B, 1]
    pads = torch.cat([~mask, mask.new_zeros(out.shape[0], out.shape[1] - mask.shape[1])], dim=1)
    return torch.where(pads, first, out)


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


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of any lengths -> ids [B, T] and attention_mask [B, T] (1 = real token),
    each row padded on the left with ``pad_id`` up to the longest."""
    rows = [list(p) for p in prompts]
    if not rows or any(not r for r in rows):
        raise ValueError("input_ids: every prompt needs at least one token (got an empty list)")
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows], dtype=torch.int64, device=device)
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows], dtype=torch.int64, device=device)
    return ids, mask


def _prompts(input_ids, attention_mask: torch.Tensor | None, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ids [B, T] and a bool mask [B, T], or None when no row is padded."""
    if isinstance(input_ids, (list, tuple)):
        if attention_mask is not None:
            raise ValueError("attention_mask: give it with a padded tensor, not with token lists (those are padded here)")
        input_ids, attention_mask = left_pad(input_ids, device=device)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
        attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
    if attention_mask is None:
        return input_ids, None
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask: expected input_ids' shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
    mask = attention_mask.to(input_ids.device) != 0
    return input_ids, None if bool(mask.all()) else mask


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
def generate(model: Model, input_ids: torch.Tensor | Sequence[Sequence[int]], max_new_tokens: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             eos_id: int | None = None, stream: Callable[[torch.Tensor], None] | None = None,
             use_cache: bool = True, *, repetition_penalty: float = 1.0, stop: Sequence[str] | None = None,
             decode: Callable[[list[int]], str] | None = None,
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Continue input_ids [B, T] by up to max_new_tokens; returns [B, T + n].

    ``input_ids`` may also be a list of token lists of different lengths (left-padded here
    with id 0), or a left-padded tensor with ``attention_mask`` [B, T] (1 = real token, 0 =
    pad); the result keeps the padding: row b's continuation is ``out[b, T:]`` either way.

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
    device = model.embed.weight.device if isinstance(input_ids, (list, tuple)) else input_ids.device
    input_ids, mask = _prompts(input_ids, attention_mask, device)
    B, T = input_ids.shape
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
        pad_kw = {} if mask is None else {"attention_mask": mask}  # the prefill's (or, uncached, every call's)
        for _ in range(max_new_tokens):
            if use_cache:
                logits = model(step_in, cache=cache, **pad_kw)[:, -1]
                pad_kw = {}  # the cache remembers the padding
            else:
                if mask is not None:
                    pad_kw = {"attention_mask": torch.cat([mask, mask.new_ones(B, out.shape[1] - T)], dim=1)}
                logits = model(out, **pad_kw)[:, -1]
            logits = apply_repetition_penalty(logits, _without_pads(out, mask), repetition_penalty)
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

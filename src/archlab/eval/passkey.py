"""Passkey retrieval (Mohtashami & Jaggi 2023, "Landmark Attention", sec. 4.2): a random number
hidden at a chosen depth in repetitive filler text, asked for at the end.

The prompt is the paper's: an instruction, filler sentences ("The grass is green. The sky is
blue. ..."), the needle "The pass key is 12345. Remember it. 12345 is the pass key." placed
after a share ``depth`` of the filler, more filler, and "What is the pass key? The pass key
is". The model decodes greedily; a trial is correct when the digits it produces equal the key.
Accuracy over a grid of context lengths x depths is the needle-in-a-haystack picture.

Prompts of one cell run as one batch: with the byte tokenizer they have the same token count
(keys have a fixed number of digits); with other tokenizers they may differ and are
left-padded (each row decodes as it would alone). Shapes: B batch, T prompt tokens.
"""
from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.eval.common import check_positive_int, model_device, progress_bar

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
         "I will quiz you about the important information there.")
FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
UNDEFINED = "not defined past max_positions"


@dataclass(frozen=True)
class PasskeyPrompt:
    ids: list[int]  # prompt tokens (prefix token included)
    key: str  # the digits to retrieve
    depth: float  # share of the filler before the needle
    needle_at: int  # token index where the needle starts


def make_prompt(tokenizer, length: int, depth: float, key: str, prefix: list[int] | None = None) -> PasskeyPrompt:
    """The longest prompt of whole filler sentences with at most ``length`` tokens."""
    if not 0.0 <= depth <= 1.0:
        raise ConfigError(f"depths: each depth must be in [0, 1], got {depth}")
    prefix = list(prefix or [])
    head = tokenizer.encode(INTRO)
    needle = tokenizer.encode(" " + NEEDLE.format(key=key))
    tail = tokenizer.encode(" " + QUESTION)
    fixed = len(prefix) + len(head) + len(needle) + len(tail)
    sentences = [tokenizer.encode(" " + s) for s in FILLER]
    budget = length - fixed
    if budget < 0:
        raise ConfigError(f"lengths: {length} tokens cannot hold the instruction, needle and question "
                          f"({fixed} tokens); use lengths >= {fixed}")
    filler: list[list[int]] = []
    used = 0
    while used + len(sentences[len(filler) % len(sentences)]) <= budget:
        s = sentences[len(filler) % len(sentences)]
        filler.append(s)
        used += len(s)
    cut = round(depth * len(filler))
    before = [t for s in filler[:cut] for t in s]
    after = [t for s in filler[cut:] for t in s]
    ids = prefix + head + before + needle + after + tail
    return PasskeyPrompt(ids=ids, key=key, depth=depth, needle_at=len(prefix) + len(head) + len(before))


def min_length(tokenizer, n_digits: int = 5) -> int:
    """Tokens of a prompt without filler (plus a prefix token): the shortest usable length."""
    key = "9" * n_digits
    return 1 + sum(len(tokenizer.encode(t)) for t in (INTRO, " " + NEEDLE.format(key=key), " " + QUESTION))


def read_key(text: str) -> str:
    """The digits a continuation starts with (after spaces), e.g. ' 12345. Remember' -> '12345'."""
    m = re.match(r"\s*(\d+)", text)
    return m.group(1) if m else ""


@dataclass(frozen=True)
class PasskeyResult:
    lengths: tuple[int, ...]  # requested context lengths (rows)
    depths: tuple[float, ...]  # needle depths (columns)
    accuracy: tuple[tuple[float | None, ...], ...]  # [length][depth]; None where not defined
    prompt_tokens: tuple[int, ...]  # actual prompt length of each row (whole sentences: <= requested)
    n_trials: int  # keys tried per cell
    n_digits: int
    scaling: str = "none"
    note: str | None = None
    examples: tuple[dict, ...] = ()  # a few (key, answer) pairs per row, to see what the model says

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        from archlab.cli import table

        rows = [[f"{n} ({t})"] + ["n/a" if a is None else f"{a:.2f}" for a in accs]
                for n, t, accs in zip(self.lengths, self.prompt_tokens, self.accuracy)]
        out = table(rows, ["length (actual)"] + [f"depth {d:g}" for d in self.depths])
        return out + (f"\n{self.note}" if self.note else "")


@torch.no_grad()
def passkey_grid(model: nn.Module, tokenizer, *, lengths: Sequence[int] = (256, 512, 1024),
                 depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), n_trials: int = 8, n_digits: int = 5,
                 batch_size: int = 8, seed: int = 0, prefix: str = "eos", use_cache: bool = True,
                 progress: bool = True, scaling: str = "none") -> PasskeyResult:
    """Greedy passkey accuracy for each (length, depth) cell over ``n_trials`` random keys.

    ``prefix``: token put before the prompt -- "eos" (the document separator the data layer
    appends, so the prompt reads as a new document), "bos", or "none".
    """
    from archlab.eval.positions import learned_limit
    from archlab.generation import generate, left_pad

    check_positive_int("n_trials", n_trials)
    check_positive_int("n_digits", n_digits)
    check_positive_int("batch_size", batch_size)
    if not lengths or not depths:
        raise ConfigError("lengths and depths: give at least one of each")
    for n in lengths:
        check_positive_int("lengths", n)
    pre = {"eos": tokenizer.eos_id, "bos": tokenizer.bos_id, "none": None}
    if prefix not in pre:
        raise ConfigError(f"prefix: {prefix!r} is not accepted; choose eos, bos or none")
    prefix_ids = [] if pre[prefix] is None else [int(pre[prefix])]
    rng = random.Random(seed)
    limit = learned_limit(model.cfg) if hasattr(model, "cfg") else None
    new_tokens = len(tokenizer.encode(" " + "9" * n_digits)) + 1
    device = model_device(model)
    grid: list[tuple[float | None, ...]] = []
    actual: list[int] = []
    examples: list[dict] = []
    bar = progress_bar(len(lengths) * len(depths) * n_trials, "passkey", progress)
    try:
        for n in lengths:
            row: list[float | None] = []
            row_len = 0
            for d in depths:
                prompts = [make_prompt(tokenizer, n, d, str(rng.randrange(10 ** (n_digits - 1), 10 ** n_digits)),
                                       prefix_ids) for _ in range(n_trials)]
                row_len = max(row_len, max(len(p.ids) for p in prompts))
                if limit is not None and row_len + new_tokens > limit:
                    row.append(None)
                    bar.update(n_trials)
                    continue
                correct = 0
                for lo in range(0, len(prompts), batch_size):
                    chunk = prompts[lo: lo + batch_size]
                    ids, mask = left_pad([p.ids for p in chunk], device=device)  # [B, T], left-padded if lengths differ
                    out = generate(model, ids, max_new_tokens=new_tokens, use_cache=use_cache, attention_mask=mask)
                    for p, seq in zip(chunk, out[:, ids.shape[1]:].tolist()):
                        answer = read_key(tokenizer.decode(seq))
                        correct += answer == p.key
                        if len(examples) < 3 * len(lengths) and d == depths[0] and len(examples) < 3 * (len(actual) + 1):
                            examples.append({"length": n, "depth": d, "key": p.key, "answer": tokenizer.decode(seq)})
                    bar.update(len(chunk))
                row.append(correct / n_trials)
            grid.append(tuple(row))
            actual.append(row_len)
    finally:
        bar.close()
    note = None
    if any(a is None for r in grid for a in r):
        note = f"n/a = {UNDEFINED} ({limit}): learned absolute positions cannot score longer prompts"
    return PasskeyResult(lengths=tuple(lengths), depths=tuple(float(d) for d in depths), accuracy=tuple(grid),
                         prompt_tokens=tuple(actual), n_trials=n_trials, n_digits=n_digits, scaling=scaling,
                         note=note, examples=tuple(examples))

"""An lm-evaluation-harness model backed by an archlab model: ``LMEvalModel``.

lm-eval (extra ``lmeval``) calls three methods with lists of requests, each request an
``lm_eval.api.instance.Instance`` whose ``args`` tuple holds the inputs (plain tuples are
accepted too):
- ``loglikelihood``: ``(context, continuation)`` -> ``(log p(continuation | context), is_greedy)``;
- ``loglikelihood_rolling``: ``(text,)`` -> log p(text), scored in windows of ``max_length``
  tokens that each predict new tokens with as much context as fits (lm-eval's rule);
- ``generate_until``: ``(context, gen_kwargs)`` -> the greedy (or sampled) continuation, cut
  at the first of ``gen_kwargs["until"]``.

Scoring batches are right-padded: with a causal model, padding after a row's last real token
never changes that row's logits. Generation batches prompts of different lengths with left
padding (``archlab.generate`` gives each row what it would produce alone), grouping only
requests that share stop strings, token budget and sampling. When lm-eval is installed the class
subclasses its ``LM`` base and registers as model ``archlab``; without it the class is
duck-typed to the same interface.

Shapes: B batch, T tokens, V vocabulary.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ConfigError
from archlab.eval.common import model_device, progress_bar

try:  # optional: the harness's base class and registry
    from lm_eval.api.model import LM as _Base
    from lm_eval.api.registry import register_model as _register
except ImportError:  # duck-typed stand-in: same methods, no harness needed
    class _Base:  # type: ignore[no-redef]
        def __init__(self) -> None:
            self._rank, self._world_size = 0, 1

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size

    def _register(*names):  # type: ignore[no-redef]
        return lambda cls: cls


def _args(request: Any) -> tuple:
    """An Instance's ``args`` (or a plain tuple request)."""
    return tuple(request.args) if hasattr(request, "args") else tuple(request)


def rolling_windows(tokens: list[int], prefix: int, max_len: int) -> Iterable[tuple[list[int], list[int]]]:
    """(input, predicted) windows that predict every token once: the first window predicts the
    first ``max_len`` tokens after ``prefix``; each later one the next up to ``max_len`` tokens,
    with the input reaching back a full ``max_len`` tokens (so the last window has full context)."""
    n = len(tokens)
    if n == 0:
        return
    first = min(max_len, n)
    yield [prefix] + tokens[: first - 1], tokens[:first]
    done = first
    while done < n:
        m = min(max_len, n - done)
        end = done + m
        yield tokens[max(0, end - 1 - max_len): end - 1], tokens[end - m: end]
        done = end


@_register("archlab")
class LMEvalModel(_Base):
    """lm-eval's model interface over ``(model, tokenizer)`` or a run directory.

    ``max_length`` defaults to the learned position table, else the training length, else 2048.
    ``prefix_token`` conditions empty contexts and rolling windows: default eos (the separator
    the data layer puts between documents), else bos.
    """

    def __init__(self, model: nn.Module | str | None = None, tokenizer: Any = None, *, pretrained: str | None = None,
                 batch_size: int | str = 8, max_length: int | None = None, max_gen_toks: int = 256,
                 prefix_token: int | None = None, device: str | None = None, progress: bool = False, **_: Any):
        super().__init__()
        if model is None:
            model = pretrained
        train_len = None
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from archlab.eval.runner import load_target

            target = load_target(model)
            model, tokenizer, train_len = target.model, target.tokenizer, target.train_len
        if not isinstance(model, nn.Module) or tokenizer is None:
            raise ConfigError("LMEvalModel: pass (model, tokenizer) or a run directory (pretrained=RUN_DIR)")
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        from archlab.eval.positions import learned_limit

        limit = learned_limit(model.cfg) if hasattr(model, "cfg") else None
        self.max_length = int(max_length or limit or train_len or 2048)
        self.max_gen_toks = int(max_gen_toks)
        pre = prefix_token if prefix_token is not None else (
            tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.bos_id)
        if pre is None:
            raise ConfigError("prefix_token: the tokenizer has neither eos nor bos; pass prefix_token=")
        self.prefix_token = int(pre)
        self.progress = progress

    # -- lm-eval's optional attributes --------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.prefix_token

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "spec", type(self.tokenizer).__name__)).replace("/", "__")

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def _hook(self, name: str, args: tuple, result: Any) -> None:
        hook = getattr(self, "cache_hook", None)
        if hook is not None:
            hook.add_partial(name, args, result)

    # -- scoring -------------------------------------------------------------------------------
    @torch.no_grad()
    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]], desc: str = "scoring"
                     ) -> list[tuple[float, bool]]:
        """For each (input, predicted) pair: the last ``len(predicted)`` positions of ``input``
        predict ``predicted``; returns (summed log-probability, every token was the argmax)."""
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]))  # similar lengths batch together
        out: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        device = self.device
        bar = progress_bar(len(pairs), desc, self.progress)
        try:
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo: lo + self.batch_size]
                width = max(len(pairs[i][0]) for i in idx)
                batch = torch.zeros(len(idx), width, dtype=torch.int64)  # [B, T], right-padded
                for r, i in enumerate(idx):
                    inp = pairs[i][0]
                    batch[r, : len(inp)] = torch.tensor(inp, dtype=torch.int64)
                logp = F.log_softmax(self.model(batch.to(device)).float(), dim=-1)  # [B, T, V]
                for r, i in enumerate(idx):
                    inp, pred = pairs[i]
                    k = len(pred)
                    rows = logp[r, len(inp) - k: len(inp)]  # [k, V]
                    tgt = torch.tensor(pred, dtype=torch.int64, device=device)
                    out[i] = (float(rows.gather(-1, tgt[:, None]).sum()), bool((rows.argmax(-1) == tgt).all()))
                bar.update(len(idx))
        finally:
            bar.close()
        return out

    def _context_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        # trailing spaces of the context belong to the continuation (lm-eval's convention),
        # so the tokenizer sees " word" together where it merges spaces into words
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        if context:
            ctx = self.tokenizer.encode(context)
            whole = self.tokenizer.encode(context + continuation)
            cont = whole[len(ctx):] if whole[: len(ctx)] == ctx else self.tokenizer.encode(continuation)
        else:
            ctx, cont = [self.prefix_token], self.tokenizer.encode(continuation)
        if not cont:
            raise ConfigError(f"loglikelihood: the continuation {continuation!r} encodes to no tokens")
        if len(cont) > self.max_length:
            raise ConfigError(f"loglikelihood: a continuation of {len(cont)} tokens exceeds max_length={self.max_length}")
        full = ctx + cont
        return full[-(self.max_length + 1):][:-1], cont  # inputs keep the latest max_length tokens

    def loglikelihood(self, requests: list) -> list[tuple[float, bool]]:
        pairs = [self._context_pair(*_args(r)[:2]) for r in requests]
        results = self.score_tokens(pairs, "loglikelihood")
        for r, res in zip(requests, results):
            self._hook("loglikelihood", _args(r), res)
        return results

    def loglikelihood_rolling(self, requests: list) -> list[float]:
        pairs: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        for j, r in enumerate(requests):
            for w in rolling_windows(self.tokenizer.encode(_args(r)[0]), self.prefix_token, self.max_length):
                pairs.append(w)
                owner.append(j)
        scores = self.score_tokens(pairs, "loglikelihood_rolling")
        totals = [0.0] * len(requests)
        for j, (lp, _) in zip(owner, scores):
            totals[j] += lp
        for r, t in zip(requests, totals):
            self._hook("loglikelihood_rolling", _args(r), t)
        return totals

    # -- generation ----------------------------------------------------------------------------
    def generate_until(self, requests: list) -> list[str]:
        from archlab.generation import generate, left_pad, truncate_at_stop

        tok = self.tokenizer
        results: list[str] = [""] * len(requests)
        groups: dict[tuple, list[int]] = {}
        prepared = []
        for i, r in enumerate(requests):
            context, kw = _args(r)[:2]
            kw = dict(kw or {})
            until = kw.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kw.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(kw.pop("do_sample", False))
            temperature = float(kw.pop("temperature", 0.0)) if do_sample else 0.0
            if do_sample and temperature == 0.0:
                temperature = 1.0
            sampling = (temperature, kw.pop("top_k", None), kw.pop("top_p", None), kw.pop("seed", None))
            budget = max(1, self.max_length - max_new)
            ids = (tok.encode(context) if context else [self.prefix_token])[-budget:]
            prepared.append((ids, until, max_new, sampling))
            groups.setdefault((tuple(until), max_new, sampling), []).append(i)
        bar = progress_bar(len(requests), "generate_until", self.progress)
        try:
            for (until, max_new, (temp, top_k, top_p, seed)), idx in groups.items():
                idx = sorted(idx, key=lambda i: len(prepared[i][0]))  # similar lengths together: less padding
                for lo in range(0, len(idx), self.batch_size):
                    chunk = idx[lo: lo + self.batch_size]
                    ids, mask = left_pad([prepared[i][0] for i in chunk], device=self.device)  # [B, n]
                    n = ids.shape[1]
                    out = generate(self.model, ids, attention_mask=mask, max_new_tokens=max_new, temperature=temp,
                                   top_k=None if top_k is None else int(top_k),
                                   top_p=None if top_p is None else float(top_p),
                                   seed=None if seed is None else int(seed), eos_id=tok.eos_id,
                                   stop=list(until), decode=tok.decode,
                                   use_cache=hasattr(self.model, "new_cache"))
                    for i, seq in zip(chunk, out[:, n:].tolist()):
                        if tok.eos_id is not None and tok.eos_id in seq:
                            seq = seq[: seq.index(tok.eos_id)]
                        results[i] = truncate_at_stop(tok.decode(seq), until)
                        self._hook("generate_until", _args(requests[i]), results[i])
                    bar.update(len(chunk))
        finally:
            bar.close()
        return results

"""Matching a variant to its comparison's budget by moving one knob.

Every run of a sweep trains on the same number of tokens. A comparison may also match the
variants on a size (``budget.match``): total parameters, active parameters (MoE), parameters
outside the embedding and head, or forward FLOPs per token at the training length. The rule
(``budget.adjust``) says which knob moves to get there:

- ``ffn``: every FFN hidden width (``ffn.hidden``, ``moe.expert_hidden``, ``moe.shared_expert_hidden``)
  scaled by one factor, each rounded to a multiple of ``budget.multiple``;
- ``width``: ``d_model`` (a multiple of ``budget.multiple`` and of what the heads need), with the
  FFN widths scaled in proportion;
- ``depth``: ``n_layers`` (a multiple of the layer pattern's length).

The candidate closest to the target is kept (ties: the one nearest the unadjusted value);
the result records the target, the value reached and the relative error, and the report
flags matches further off than ``budget.tolerance``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from archlab.config import ModelConfig
from archlab.errors import ConfigError
from archlab.sweep.spec import BudgetSpec


@dataclass(frozen=True)
class BudgetMatch:
    match: str  # the matched quantity (params, active_params, ...) or "none"
    adjust: str | None  # the knob moved (ffn, width, depth), None when nothing was matched
    target: float | None  # the reference variant's value
    before: float | None  # this variant's value before adjusting
    after: float | None  # its value after adjusting
    knob_before: float | None  # the knob's value before (FFN factor 1.0, d_model or n_layers)
    knob_after: float | None  # ... and after
    rel_error: float | None  # after / target - 1
    within_tolerance: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def measure(cfg: ModelConfig, match: str, seq_len: int) -> float:
    """The quantity ``match`` names, from the config alone."""
    from archlab.analysis import count_params, flops_per_token

    if match == "flops":
        return float(flops_per_token(cfg, seq_len))
    p = count_params(cfg)
    if match == "params":
        return float(p.total)
    if match == "active_params":
        return float(p.active)
    if match == "non_embedding_params":
        return float(p.total - p.embedding - p.head)
    raise ConfigError(f"budget.match: {match!r} is not accepted; choose none, params, active_params, "
                      f"non_embedding_params or flops")


def _round(x: float, multiple: int) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def _scale_ffn(cfg: ModelConfig, factor: float, multiple: int) -> ModelConfig:
    sets: dict = {"ffn.hidden": _round(cfg.ffn.hidden_size(cfg.d_model) * factor, multiple)}
    if cfg.moe is not None:
        sets["moe.expert_hidden"] = _round(cfg.moe.expert_hidden * factor, multiple)
        if cfg.moe.shared_expert_hidden is not None:
            sets["moe.shared_expert_hidden"] = _round(cfg.moe.shared_expert_hidden * factor, multiple)
    return cfg.replace(**sets)


def _width_multiple(cfg: ModelConfig, multiple: int) -> int:
    """d_model must keep every head width whole (and even, for rotary dims) when head sizes follow d_model."""
    import math

    m = multiple
    if cfg.attention.head_dim is None and cfg.attention.mla is None:
        m = math.lcm(m, 2 * cfg.attention.heads)
    if cfg.linear is not None and (cfg.linear.head_dim is None or cfg.linear.value_head_dim is None):
        m = math.lcm(m, cfg.linear.heads)
    return m


def _candidates(cfg: ModelConfig, adjust: str, multiple: int) -> tuple[float, list[tuple[float, Callable[[], ModelConfig]]]]:
    """(knob value now, [(knob value, build the config)]) over a range around the current value."""
    if adjust == "ffn":
        factors = sorted({round(f / 64, 4) for f in range(16, 257)})  # 0.25x .. 4x in steps of 1/64
        return 1.0, [(f, (lambda f=f: _scale_ffn(cfg, f, multiple))) for f in factors]
    if adjust == "width":
        m = _width_multiple(cfg, multiple)
        d = cfg.d_model
        widths = range(m, 4 * d + m, m)
        hidden = cfg.ffn.hidden_size(d)

        def at(w: int) -> ModelConfig:
            out = cfg.replace(d_model=w, **{"ffn.hidden": _round(hidden * w / d, multiple)})
            if cfg.moe is not None:
                out = out.replace(**{"moe.expert_hidden": _round(cfg.moe.expert_hidden * w / d, multiple)})
            return out

        return float(d), [(float(w), (lambda w=w: at(w))) for w in widths if w >= d // 4]
    if adjust == "depth":
        n = len(cfg.plan.pattern) if cfg.plan.layers is None else None
        if n is None:
            raise ConfigError("budget.adjust: depth cannot change an explicit plan.layers list; use ffn or width")
        return float(cfg.n_layers), [(float(L), (lambda L=L: cfg.replace(n_layers=L))) for L in range(n, 4 * cfg.n_layers + n, n)]
    raise ConfigError(f"budget.adjust: {adjust!r} is not accepted; choose ffn, width or depth")


def match_budget(cfg: ModelConfig, budget: BudgetSpec, target: float | None, seq_len: int) -> tuple[ModelConfig, BudgetMatch]:
    """``cfg`` with ``budget.adjust`` moved so its ``budget.match`` quantity is closest to ``target``."""
    if budget.match == "none" or target is None:
        return cfg, BudgetMatch("none", None, None, None, None, None, None, None)
    before = measure(cfg, budget.match, seq_len)
    knob0, cands = _candidates(cfg, budget.adjust, budget.multiple)
    cache: dict[int, tuple[ModelConfig, float] | None] = {}

    def at(i: int) -> tuple[ModelConfig, float] | None:
        if i not in cache:
            try:
                c = cands[i][1]()
                cache[i] = (c, measure(c, budget.match, seq_len))
            except ConfigError:
                cache[i] = None  # a knob value the config rejects (e.g. indivisible heads) is not a candidate
        return cache[i]

    # the quantity grows with the knob: a coarse pass finds the bracket around the target, a fine
    # pass looks at every candidate in it
    stride = max(1, len(cands) // 24)
    coarse = sorted(set(range(0, len(cands), stride)) | {len(cands) - 1})
    vals = [(i, at(i)) for i in coarse]
    vals = [(i, r[1]) for i, r in vals if r is not None]
    below = [i for i, v in vals if v <= target]
    above = [i for i, v in vals if v >= target]
    lo = max(below) if below else 0
    hi = min(above) if above else len(cands) - 1
    best: tuple[float, float, ModelConfig, float, float] | None = None
    for i in range(max(0, min(lo, hi) - stride), min(len(cands), max(lo, hi) + stride + 1)):
        r = at(i)
        if r is None:
            continue
        c, v = r
        knob = cands[i][0]
        key = (abs(v / target - 1.0), abs(knob - knob0))
        if best is None or key < best[:2]:
            best = (key[0], key[1], c, v, knob)
    if best is None:
        raise ConfigError(f"budget.adjust: no value of {budget.adjust} gives a valid config to match {budget.match}")
    _, _, out, after, knob = best
    # keep the variant untouched when moving the knob does not bring it closer
    if abs(before / target - 1.0) <= abs(after / target - 1.0):
        out, after, knob = cfg, before, knob0
    err = after / target - 1.0
    return out, BudgetMatch(budget.match, budget.adjust, target, before, after, knob0, knob, err,
                            abs(err) <= budget.tolerance)

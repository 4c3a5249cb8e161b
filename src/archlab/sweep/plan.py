"""From a spec to the jobs of a sweep: each variant's model config (budget-matched), or the
reason it is skipped, and the training runs it needs.

A variant's config is ``base`` -> ``base.set`` -> the comparison's ``set`` -> the variant's
``set``, with the vocabulary of the spec's tokenizer, then moved to its comparison's budget.
A variant whose config does not validate (an unknown key, a component not registered yet, a
shape that does not divide) is kept in the plan with the error as its reason: the store and
the report show it as skipped, never silently dropped.

Runs are keyed by content (kind, model, training settings, seed, lr), so a variant shared by
several comparisons (the baseline of each) is trained once, and a sweep started again finds
the runs it already has.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from archlab.config import ModelConfig
from archlab.errors import ConfigError
from archlab.sweep.budget import BudgetMatch, match_budget, measure
from archlab.sweep.spec import ComparisonSpec, SweepSpec
from archlab.sweep.store import content_hash, set_seed_lr

CONTEXTS = (4096, 32768, 131072)  # per-request cache bytes are reported at these lengths
LM_EVALS = ("ppl", "positions", "passkey", "throughput")


@dataclass
class PlannedVariant:
    comparison: str
    name: str
    position: int
    overrides: dict  # the variant's own dotted overrides
    note: str = ""
    config: ModelConfig | None = None  # None when invalid
    error: str | None = None  # why the variant is skipped
    budget: BudgetMatch | None = None
    evals: tuple[str, ...] = ()

    @property
    def config_hash(self) -> str | None:
        return None if self.config is None else content_hash(self.config.to_dict())


@dataclass
class SweepPlan:
    spec: SweepSpec
    variants: list[PlannedVariant]
    vocab_size: int
    train: Any  # the TrainConfig of every run (seed, lr set per run)
    groups: list[dict] = field(default_factory=list)  # rows for the store's groups table
    runs: list[dict] = field(default_factory=list)  # rows for the store's runs table
    variant_groups: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (comparison, name) -> kind -> group

    def valid(self) -> list[PlannedVariant]:
        return [v for v in self.variants if v.config is not None]

    def skipped(self) -> list[PlannedVariant]:
        return [v for v in self.variants if v.config is None]


def base_config(spec: SweepSpec) -> ModelConfig:
    from archlab import presets

    b = spec.base
    if b.preset is not None:
        cfg = presets.get(b.preset)
    elif b.model is not None:
        cfg = ModelConfig.from_dict(_plain(b.model))
    else:
        cfg = ModelConfig()
    return cfg.replace(**_plain(b.set)) if b.set else cfg


def _plain(x: Any) -> Any:
    """Mapping proxies and tuples from a frozen spec back to plain dicts/lists."""
    if hasattr(x, "items"):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if not isinstance(e, ConfigError) else str(e)


def _variant_config(base: ModelConfig, comparison: ComparisonSpec, sets: dict, vocab: int,
                    built: dict[str, None] | None) -> ModelConfig:
    cfg = base
    if comparison.set:
        cfg = cfg.replace(**_plain(comparison.set))
    if sets:
        cfg = cfg.replace(**_plain(sets))
    cfg = cfg.replace(vocab_size=vocab, name=None)
    if built is not None:
        h = content_hash(cfg.to_dict())
        if h not in built:
            # components that validate only when built fail here, not in a worker; small models are
            # built for real (the meta device's first use imports torch._dynamo: seconds)
            import archlab
            from archlab.analysis import count_params

            archlab.build(cfg, device="cpu" if count_params(cfg).total < 50_000_000 else "meta")
            built[h] = None
    return cfg


def train_config(spec: SweepSpec):
    """The TrainConfig of every run: the spec's train section, the run length from budget.tokens."""
    tc = spec.train_config()
    if spec.budget.tokens is not None:
        per_step = tc.batch_size * tc.seq_len
        tc = tc.replace(steps=max(1, round(spec.budget.tokens / per_step)))
    # the worker sets the device; logs and checkpoints are the sweep's business
    return tc.replace(device="auto", tensorboard=False)


def plan_sweep(spec: SweepSpec, vocab_size: int, *, build_check: bool = True) -> SweepPlan:
    """Resolve every variant of ``spec`` and list its runs (see the module docstring).

    ``build_check`` also builds each distinct model on the meta device (no memory), so a component
    that fails only when built is a skipped variant rather than a failed run."""
    tc = train_config(spec)
    base_error = None
    try:
        base = base_config(spec)
    except (ConfigError, ValueError, TypeError, KeyError) as e:
        base, base_error = None, f"base: {_error_text(e)}"
    plan = SweepPlan(spec=spec, variants=[], vocab_size=vocab_size, train=tc)
    pos = 0
    built: dict[str, None] | None = {} if build_check else None
    for comp in spec.comparisons:
        budget = spec.comparison_budget(comp)
        evals = spec.comparison_evals(comp)
        found: list[PlannedVariant] = []
        for v in comp.all_variants():
            pv = PlannedVariant(comp.name, v.name, pos, _plain(v.set), note=v.note, evals=evals)
            pos += 1
            if base_error is not None:
                pv.error = base_error
            else:
                try:
                    pv.config = _variant_config(base, comp, _plain(v.set), vocab_size, built)
                except Exception as e:  # noqa: BLE001 -- any failure to configure or build is the variant's recorded reason
                    pv.error = _error_text(e)
            found.append(pv)
        _match(found, budget, tc.seq_len, comp)
        plan.variants.extend(found)
    _runs(plan)
    return plan


def _match(found: list[PlannedVariant], budget, seq_len: int, comp: ComparisonSpec) -> None:
    if budget.match == "none":
        return
    ref_name = budget.reference or found[0].name
    ref = next(v for v in found if v.name == ref_name)
    if ref.config is None:
        for v in found:
            if v.config is not None:
                v.error = f"budget: the reference variant {ref_name!r} of {comp.name} is skipped ({ref.error}), so " \
                          f"nothing to match {budget.match} to"
                v.config = None
        return
    target = measure(ref.config, budget.match, seq_len)
    for v in found:
        if v.config is None:
            continue
        if v is ref:
            v.budget = BudgetMatch(budget.match, budget.adjust, target, target, target, None, None, 0.0, True)
            continue
        try:
            v.config, v.budget = match_budget(v.config, budget, target, seq_len)
        except ConfigError as e:
            v.config, v.error = None, f"budget: {e}"


def lm_job(cfg: ModelConfig, tc, evals: dict[str, dict], seed: int, lr: float) -> dict:
    return set_seed_lr({"kind": "lm", "model": cfg.to_dict(), "train": tc.to_dict(), "evals": evals}, "lm", seed, lr)


def mqar_job(cfg: ModelConfig, mqar, seed: int, lr: float) -> dict:
    model = cfg.replace(**_plain(mqar.set)) if mqar.set else cfg
    return set_seed_lr({"kind": "mqar", "model": model.to_dict(), "task": mqar.task.to_dict(),
                        "recipe": mqar.recipe.to_dict()}, "mqar", seed, lr)


def _runs(plan: SweepPlan) -> None:
    """Groups (one per config and kind) and their runs: the whole grid on every seed
    (lr_search every_seed) or on the first seed only (first_seed; the store adds the others)."""
    spec = plan.spec
    # evaluations of a config shared by comparisons: the union of theirs
    wanted: dict[str, set[str]] = {}
    configs: dict[str, ModelConfig] = {}
    for v in plan.valid():
        h = v.config_hash
        configs[h] = v.config
        wanted.setdefault(h, set()).update(v.evals)
    mqar = spec.evals.mqar
    for h, cfg in configs.items():
        lm_evals = {n: _plain(getattr(spec.evals, n).to_dict()) for n in LM_EVALS if n in wanted[h]}
        kinds = [("lm", spec.lrs, lambda s, lr: lm_job(cfg, plan.train, lm_evals, s, lr))]
        if "mqar" in wanted[h] and mqar is not None:
            kinds.append(("mqar", mqar.lrs or (mqar.recipe.lr,), lambda s, lr: mqar_job(cfg, mqar, s, lr)))
        for kind, lrs, make in kinds:
            template = make(0, 0.0)
            section = "train" if kind == "lm" else "recipe"
            del template[section]["seed"], template[section]["lr"]
            gkey = content_hash(template)
            plan.groups.append({"key": gkey, "kind": kind, "config_hash": h, "template": json.dumps(template),
                                "seeds": json.dumps(list(spec.seeds)), "lrs": json.dumps(list(lrs)),
                                "lr_search": spec.lr_search if len(lrs) > 1 else "every_seed"})
            for v in plan.valid():
                if v.config_hash == h:
                    plan.variant_groups.setdefault((v.comparison, v.name), {})[kind] = gkey
            seeds = spec.seeds if (spec.lr_search == "every_seed" or len(lrs) == 1) else spec.seeds[:1]
            for seed in seeds:
                for lr in lrs:
                    job = make(seed, float(lr))
                    plan.runs.append({"key": content_hash(job), "group_key": gkey, "kind": kind, "config_hash": h,
                                      "seed": int(seed), "lr": float(lr), "phase": 0, "spec": json.dumps(job)})


def config_row(cfg: ModelConfig, seq_len: int) -> dict:
    """The configs-table row: analytic sizes of a model (FLOPs per token at ``seq_len``, bf16 caches)."""
    import torch

    from archlab.analysis import cache_bytes, cache_bytes_per_token, count_params, flops_per_token

    p = count_params(cfg)
    row = {"hash": content_hash(cfg.to_dict()), "model": json.dumps(cfg.to_dict()), "params_total": p.total,
           "params_active": p.active, "params_embedding": p.embedding + p.head,
           "flops_per_token": float(flops_per_token(cfg, seq_len)),
           "cache_bytes_per_token": cache_bytes_per_token(cfg, torch.bfloat16)}
    for n, col in zip(CONTEXTS, ("cache_4k", "cache_32k", "cache_128k")):
        row[col] = cache_bytes(cfg, n, 1, torch.bfloat16)
    return row

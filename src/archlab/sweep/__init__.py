"""Design-space sweeps under a matched budget, with an SQLite results store.

    from archlab.sweep import load_spec, run_sweep
    spec = load_spec("chapter")                       # a built-in spec, or a YAML path
    result = run_sweep(spec, "runs/chapter", workers=2, device="cpu")
    # then: archlab report runs/chapter/results.db

Command line: ``archlab sweep SPEC [--out DIR] [--workers N] [--device cpu|cuda] [--scale gpu]``.
Specs are described in ``archlab.sweep.spec``; the database in ``archlab.sweep.store``.
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

_EXPORTS = {
    "SweepSpec": "archlab.sweep.spec",
    "ComparisonSpec": "archlab.sweep.spec",
    "VariantSpec": "archlab.sweep.spec",
    "BudgetSpec": "archlab.sweep.spec",
    "EvalsSpec": "archlab.sweep.spec",
    "load_spec": "archlab.sweep.spec",
    "builtin_specs": "archlab.sweep.spec",
    "plan_sweep": "archlab.sweep.plan",
    "SweepPlan": "archlab.sweep.plan",
    "match_budget": "archlab.sweep.budget",
    "BudgetMatch": "archlab.sweep.budget",
    "Store": "archlab.sweep.store",
    "run_sweep": "archlab.sweep.runner",
    "SweepResult": "archlab.sweep.runner",
    "worker_loop": "archlab.sweep.runner",
    "run_job": "archlab.sweep.jobs",
    "JobResult": "archlab.sweep.jobs",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)

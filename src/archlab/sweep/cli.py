"""``archlab sweep SPEC [--out DIR] [--workers N] [--device cpu|cuda] [--scale gpu]``."""
from __future__ import annotations

import argparse
import time

from archlab.errors import ConfigError


def add_sweep_parser(sub) -> None:
    from archlab.sweep.spec import builtin_specs

    p = sub.add_parser("sweep", help="train and evaluate every variant of a sweep spec under a matched budget",
                       description="Run every (variant, seed, learning rate) job of a sweep spec; results go to "
                                   "OUT/results.db (SQLite). Killed and started again, a sweep skips finished jobs and "
                                   "redoes the interrupted ones. At the end the report is written and its tables printed.")
    p.add_argument("spec", nargs="?", default="chapter",
                   help=f"a built-in spec ({', '.join(builtin_specs())}) or a YAML file (default: chapter)")
    p.add_argument("--out", default=None, help="folder for results.db, logs and the report (default: runs/<spec name>)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 2 on the CPU, one per visible GPU with --device cuda)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--scale", default=None, help="a named scale of the spec, e.g. gpu (sizes for one H200)")
    p.add_argument("--only", default=None, help="comma-separated comparison names to run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override of the spec, repeatable: seeds=[0], budget.tokens=100000, lrs=[0.003]")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores / workers)")
    p.add_argument("--retry-failed", action="store_true", help="run failed jobs again (e.g. after fixing a bug)")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--list", action="store_true", help="list the built-in specs and exit")
    p.add_argument("--dry-run", action="store_true", help="plan the sweep and print its variants, sizes and runs; train nothing")
    p.set_defaults(fn=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from archlab.cli import parse_sets
    from archlab.sweep.spec import builtin_specs, load_spec

    if args.list:
        for name in builtin_specs():
            spec = load_spec(name)
            scales = f" [scales: {', '.join(spec.scales)}]" if spec.scales else ""
            print(f"{name:12s} {spec.description.splitlines()[0] if spec.description else ''}{scales}")
        return 0
    spec = load_spec(args.spec, scale=args.scale, sets=parse_sets(args.set))
    if args.only:
        spec = spec.only([s.strip() for s in args.only.split(",") if s.strip()])
    workers = args.workers
    if workers is None:
        if args.device == "cuda":
            import torch

            workers = max(1, torch.cuda.device_count())
        else:
            workers = 2
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    if args.dry_run:
        return _dry_run(spec)
    from archlab.sweep.runner import run_sweep

    t0 = time.time()
    try:
        result = run_sweep(spec, args.out, workers=workers, device=args.device, threads=args.threads,
                           retry_failed=args.retry_failed, say=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept; run the same command again to continue", flush=True)
        return 130
    wall = time.time() - t0
    c = result.counts
    print(f"\nsweep {spec.name}: {c['done']} runs done, {c['failed']} failed, {c['pending'] + c['running']} not finished; "
          f"{wall / 60:.1f} min; results {result.db}")
    if args.no_report:
        return 0 if c["pending"] + c["running"] == 0 else 1
    from archlab.report.data import load_results
    from archlab.report.render import summary_text, write_report

    paths = write_report(result.db, result.out / "report")
    res = load_results(result.db)
    try:
        print("\n" + summary_text(res))
    finally:
        res.close()
    print(f"\nreport: {paths.html.resolve()}\n        {paths.markdown.resolve()}")
    return 0 if c["pending"] + c["running"] == 0 else 1


def _dry_run(spec) -> int:
    from archlab.cli import table
    from archlab.report.tables import fmt_bytes, fmt_count
    from archlab.sweep.plan import config_row, plan_sweep, train_config
    from archlab.sweep.runner import _describe
    from archlab.sweep.jobs import dataset_for

    tc = train_config(spec)
    ds = dataset_for(tc.data)
    plan = plan_sweep(spec, int(ds.vocab_size))
    rows = []
    for v in plan.variants:
        if v.config is None:
            rows.append([f"{v.comparison}/{v.name}", "skipped", "", "", "", (v.error or "")[:70]])
            continue
        r = config_row(v.config, tc.seq_len)
        b = v.budget
        match = "" if b is None or b.match == "none" else f"{b.match} {100 * (b.rel_error or 0):+.1f}%"
        rows.append([f"{v.comparison}/{v.name}", fmt_count(r["params_total"]), fmt_count(r["params_active"]),
                     fmt_count(r["flops_per_token"]), fmt_bytes(r["cache_32k"]), match])
    print(table(rows, ["variant", "params", "active", "FLOPs/token", "cache @32k", "budget match"]))
    kinds = {}
    for r in plan.runs:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"\ndata: {_describe(ds)}\n{tc.steps} steps x {tc.batch_size} x {tc.seq_len} tokens per run; first runs: "
          + ", ".join(f"{n} {k}" for k, n in kinds.items())
          + (f" (+ {len(spec.seeds) - 1} more seeds per group once its lr grid is done)" if spec.lr_search == "first_seed"
             and len(spec.seeds) > 1 else ""))
    return 0

"""Running a sweep: plan it, record the plan, then let workers take jobs until none is left.

    result = run_sweep("chapter", out="runs/chapter", workers=2, device="cpu")

Every worker is its own process with its own SQLite connection (``--workers 1`` runs the
jobs in the calling process). A worker claims the next pending job atomically, runs it, and
writes everything it produced in one transaction; one that finds nothing pending while
other workers still run waits, since a finished learning-rate grid releases the other seeds'
runs. Stopping a sweep at any moment (Ctrl-C, SIGKILL, a crash) loses only the jobs in
flight; ``run_sweep`` again skips finished jobs and redoes those.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from archlab.errors import ConfigError
from archlab.sweep.spec import SweepSpec, load_spec
from archlab.sweep.store import Store

DB_NAME = "results.db"


@dataclass
class SweepResult:
    db: Path  # the results database
    out: Path  # the sweep's folder
    counts: dict[str, int]  # runs by status
    seconds: float  # wall time of this call
    skipped: list[tuple[str, str, str]]  # (comparison, variant, reason) of variants that did not validate


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare(spec: SweepSpec, out: Path, *, say: Callable[[str], None] = print) -> tuple[Path, Any]:
    """Plan ``spec`` and record the plan in ``out/results.db`` (created if missing)."""
    from archlab.data.stats import unigram_entropy
    from archlab.sweep.jobs import dataset_for
    from archlab.sweep.plan import plan_sweep, train_config

    tc = train_config(spec)
    ds = dataset_for(tc.data)
    plan = plan_sweep(spec, int(ds.vocab_size))
    unigram = unigram_entropy(ds, "val") if hasattr(ds, "val") else None
    db = out / DB_NAME
    with Store(db) as store:
        added = record_plan(store, plan, data=_describe(ds), unigram=unigram)
        counts = store.counts()
    n_models = len({v.config_hash for v in plan.valid()})
    say(f"sweep {spec.name}{' (scale ' + spec.scale + ')' if spec.scale else ''}: {len(spec.comparisons)} comparisons, "
        f"{len(plan.valid())} variants ({n_models} distinct models), {len(plan.skipped())} skipped; {tc.steps} steps x "
        f"{tc.batch_size} x {tc.seq_len} tokens per run; runs: {added} new, {counts['done']} done, "
        f"{counts['pending'] + counts['running']} to do")
    for v in plan.skipped():
        say(f"  skipped {v.comparison}/{v.name}: {v.error}")
    return db, plan


def record_plan(store: Store, plan: Any, *, data: dict, unigram: float | None) -> int:
    """Write a plan (``archlab.sweep.plan.plan_sweep``) to the store; returns the number of new runs."""
    import archlab
    from archlab.sweep.plan import config_row

    spec, tc = plan.spec, plan.train
    seen: dict[str, Any] = {}
    for v in plan.valid():
        seen.setdefault(v.config_hash, v.config)
    variants = []
    for v in plan.variants:
        groups = plan.variant_groups.get((v.comparison, v.name), {})
        variants.append({"comparison": v.comparison, "name": v.name, "position": v.position,
                         "status": "ok" if v.config is not None else "invalid", "reason": v.error,
                         "overrides": json.dumps(v.overrides, default=str), "config_hash": v.config_hash,
                         "budget": json.dumps(v.budget.to_dict()) if v.budget else None,
                         "lm_group": groups.get("lm"), "mqar_group": groups.get("mqar"), "note": v.note})
    comparisons = [{"name": c.name, "position": i, "title": c.title or c.name, "question": c.question,
                    "budget": json.dumps(spec.comparison_budget(c).to_dict()),
                    "evals": json.dumps(list(spec.comparison_evals(c)))} for i, c in enumerate(spec.comparisons)]
    meta = {"spec": spec.to_yaml(), "spec_name": spec.name, "scale": spec.scale or "default",
            "description": spec.description, "archlab_version": archlab.__version__,
            "torch_version": __import__("torch").__version__, "data": json.dumps(data),
            "unigram_entropy": json.dumps(unigram), "train": tc.to_json(), "seq_len": str(tc.seq_len),
            "steps": str(tc.steps), "tokens": str(tc.steps * tc.batch_size * tc.seq_len),
            "seeds": json.dumps(list(spec.seeds)), "lrs": json.dumps(list(spec.lrs)), "lr_search": spec.lr_search}
    if "created" not in store.meta():
        meta["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return store.write_plan(meta=meta, configs=[config_row(c, tc.seq_len) for c in seen.values()],
                            comparisons=comparisons, variants=variants, groups=plan.groups, runs=plan.runs)


def _describe(ds: Any) -> dict:
    d = ds.describe() if hasattr(ds, "describe") else {}
    corpus = d.get("corpus", {}) if isinstance(d.get("corpus"), dict) else {}
    tok = d.get("tokenizer", {}) if isinstance(d.get("tokenizer"), dict) else {}
    return {"corpus": corpus.get("name"), "fingerprint": corpus.get("fingerprint"), "tokenizer": tok.get("spec"),
            "train_tokens": d.get("train_tokens"), "val_tokens": d.get("val_tokens"), "vocab_size": ds.vocab_size}


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: accepted: cpu, cuda, auto")
    return device


def worker_loop(db: Path, out: Path, *, device: str, name: str = "w0", threads: int | None = None,
                keep_checkpoints: bool = False, poll_s: float = 1.0, max_jobs: int | None = None,
                say: Callable[[str], None] = print) -> int:
    """Take jobs from ``db`` until none is pending or running; returns the number this worker ran."""
    import torch

    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _work(db, out, device=device, name=name, keep_checkpoints=keep_checkpoints, poll_s=poll_s,
                     max_jobs=max_jobs, say=say)
    finally:
        torch.set_num_threads(threads_before)


def _work(db: Path, out: Path, *, device: str, name: str, keep_checkpoints: bool, poll_s: float,
          max_jobs: int | None, say: Callable[[str], None]) -> int:
    from archlab.sweep.jobs import run_job

    done = 0
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with Store(db) as store:
        while max_jobs is None or done < max_jobs:
            job = store.claim(device=device)
            if job is None:
                c = store.counts()
                if c["running"] == 0 and c["pending"] == 0:
                    break
                time.sleep(poll_s)  # others are running: a finished lr grid may release more runs
                continue
            label = f"{job.kind} {job.config_hash[:8]} seed {job.seed} lr {job.lr:g}"
            say(f"[{name}] start {label} (run {job.id}, attempt {job.attempts})")
            t0 = time.perf_counter()
            log_file = open(logs / f"run-{job.id:04d}.log", "a")
            last = [time.monotonic()]

            def beat(job=job) -> None:
                if time.monotonic() - last[0] > 10:  # keep the heartbeat cheap
                    last[0] = time.monotonic()
                    store.heartbeat(job)

            try:
                result = run_job(job.spec, device=device, run_dir=out / "runs" / job.key,
                                 say=lambda s: (log_file.write(s + "\n"), log_file.flush()), beat=beat)
            except KeyboardInterrupt:
                store.release(job, "interrupted (Ctrl-C); redone")
                raise
            except Exception as e:  # noqa: BLE001 -- a failing job is recorded, and the sweep goes on
                tb = traceback.format_exc()
                log_file.write(tb)
                store.fail(job, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
                say(f"[{name}] FAILED {label}: {type(e).__name__}: {str(e)[:300]}")
            else:
                secs = time.perf_counter() - t0
                if store.complete(job, metrics=result.metrics, evals=result.evals, summary=result.summary,
                                  seconds=secs):
                    c = store.counts()
                    say(f"[{name}] done  {label} in {secs:.0f} s: " + _brief(job.kind, result.summary)
                        + f"  [{c['done']} done, {c['running']} running, {c['pending']} pending]")
                else:
                    say(f"[{name}] {label}: the job was handed to another worker meanwhile; result dropped")
                _tidy(out / "runs" / job.key, keep=keep_checkpoints)
            finally:
                log_file.close()
            done += 1
    return done


def _brief(kind: str, s: dict) -> str:
    if kind == "mqar":
        return f"accuracy {s.get('accuracy', 0):.3f} after {s.get('steps')} steps"
    parts = []
    if s.get("val_loss") is not None:
        parts.append(f"val loss {s['val_loss']:.4f}")
    if s.get("ppl") is not None:
        parts.append(f"ppl {s['ppl']:.3f}")
    if s.get("train_tokens_per_s"):
        parts.append(f"{s['train_tokens_per_s']:,.0f} tok/s")
    return ", ".join(parts)


def _tidy(run_dir: Path, keep: bool) -> None:
    import shutil

    if not keep and (run_dir / "checkpoints").is_dir():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _set_pdeathsig() -> None:
    """Linux: the worker gets SIGKILL when its parent dies, so no orphan keeps training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def run_sweep(spec: str | Path | SweepSpec | Mapping[str, Any], out: str | Path | None = None, *, workers: int = 1,
              device: str = "cpu", scale: str | None = None, sets: Mapping[str, Any] | None = None,
              only: list[str] | None = None, threads: int | None = None, retry_failed: bool = False,
              say: Callable[[str], None] = print) -> SweepResult:
    """Run every job of ``spec`` not finished yet in ``out`` (default ``runs/<spec name>``)."""
    t0 = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec, scale=scale, sets=sets)
    elif sets:
        spec = spec.replace(**dict(sets))
    if only:
        spec = spec.only(only)
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    device = _resolve_device(device)
    out = Path(out) if out is not None else Path("runs") / spec.name
    db, plan = prepare(spec, out, say=say)
    with Store(db) as store:
        if retry_failed:
            n = store.retry_failed()
            if n:
                say(f"retrying {n} failed runs")
        released = store.release_dead()
        if released:
            say(f"{released} interrupted runs will be redone")
    if device == "cpu" and threads is None:
        threads = max(1, _cores() // workers)
    if workers == 1:
        worker_loop(db, out, device=device, name="w0", threads=threads, keep_checkpoints=spec.keep_checkpoints, say=say)
    else:
        _spawn(db, out, workers, device, threads, spec.keep_checkpoints, say)
    with Store(db) as store:
        counts = store.counts()
    skipped = [(v.comparison, v.name, v.error or "") for v in plan.skipped()]
    return SweepResult(db, out, counts, time.perf_counter() - t0, skipped)


def _spawn(db: Path, out: Path, workers: int, device: str, threads: int | None, keep: bool,
           say: Callable[[str], None]) -> None:
    """Start ``workers`` worker processes (one GPU each with --device cuda) and wait for them."""
    import torch

    n_gpu = torch.cuda.device_count() if device == "cuda" else 0
    procs = []
    for i in range(workers):
        env = dict(os.environ)
        if n_gpu:
            visible = env.get("CUDA_VISIBLE_DEVICES")
            ids = visible.split(",") if visible else [str(k) for k in range(n_gpu)]
            env["CUDA_VISIBLE_DEVICES"] = ids[i % len(ids)]
        cmd = [sys.executable, "-m", "archlab.sweep.worker", str(db), str(out), "--device", device, "--name", f"w{i}"]
        if threads:
            cmd += ["--threads", str(threads)]
        if keep:
            cmd.append("--keep-checkpoints")
        procs.append(subprocess.Popen(cmd, env=env, preexec_fn=_set_pdeathsig if sys.platform == "linux" else None))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    bad = [c for c in codes if c != 0]
    if bad:
        say(f"warning: {len(bad)} worker(s) exited with status {bad}; run the sweep again to finish their jobs")

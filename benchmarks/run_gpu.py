"""Run every GPU benchmark (and the GPU tests) in one command and write RESULTS.md.

    python benchmarks/run_gpu.py [--out-dir DIR] [--only decode,train_step] [--skip ...] [--tests] [--all]
    python benchmarks/run_gpu.py --assemble [--out-dir benchmarks]

By default it runs the core set: each GPU performance goal's workload with our fastest path and its
reference. On a fresh H200 the core set took 544 s in one run (ceilings 9 s, sliding window 42, decode 72,
training step 136, matrix-vector products 13, MoE 33, Mamba-2 83, linear attention 149); on the same
machine right after a run, with every kernel compiled and tuned, 241 s. Most of a fresh run is compiling:
torch.compile of the models, and flash-linear-attention's autotuned Triton kernels, which fla's first calls
would compile one config after another (more than 468 s in an earlier run). Those and our linear-attention
kernels are compiled in the background from the start (``linear_attention_gpu.py --precompile-only``: parallel
processes at the lowest CPU priority that compile without launching or timing anything; 151 s of the fresh
run, hidden behind the benchmarks before it), paused while a host-bound benchmark (decode) runs. Triton keeps
the compiled kernels and the autotuning results on disk (TRITON_CACHE_AUTOTUNING, set here), so later runs on
the machine skip both. Each benchmark's output is kept in DIR/NAME.log, every line stamped with the seconds
since its start.
``--all`` adds the other benchmarks (cache memory, a 125M training run) and every variant row (the fused
decoding step, each Mamba-2 compilation mode).

Each benchmark runs in its own process group with a time limit, so one failure or hang costs only
its own row: past the limit, or when this script is interrupted or terminated, the whole group is
killed, with whatever the benchmark started. Its Markdown section, with the command that made it, is
written to DIR/results/NAME.md; DIR/RESULTS.md is then assembled from every section there, in the
order below, so a partial run (``--only``) replaces its own sections and keeps the others.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (script, extra args, time limit in seconds, in the core set); core-set times on an H200 are in the
# docstring; with --all: decode 162 s (with --fused), ssm ~450 s (all rows), cache_memory 59 s, train_125m 78 s
BENCHMARKS = {
    "ceilings": ("ceilings_gpu.py", [], 60, True),
    "attention_window": ("attention_window_gpu.py", [], 150, True),
    "decode": ("decode_gpu.py", ["--compile"], 360, True),
    "train_step": ("train_step_gpu.py", [], 300, True),
    "gemv": ("gemv_gpu.py", [], 120, True),
    "moe": ("moe_gpu.py", [], 150, True),
    "ssm": ("ssm_gpu.py", ["--rows", "transformers,ours-triton-graphs@1,ours-triton-compiled@4"], 480, True),
    # 149 s on a fresh machine after its kernels were compiled in the background (PRECOMPILE); 466 s
    # when it compiled them itself, hence the long limit; last of the core set, so a --deadline cuts it
    "linear_attention": ("linear_attention_gpu.py", ["--forms", "triton"], 1200, True),
    "cache_memory": ("cache_memory_gpu.py", [], 120, False),
    "train_125m": ("train_gpu.py", [], 150, False),
}
# with --all: these arguments replace or extend the core ones
ALL_ARGS = {"decode": ["--compile", "--unpacked", "--fused"], "ssm": []}
# compiling that times nothing, started in the background at the beginning of a run for a benchmark
# that runs later (its script's arguments); the benchmark then gets the ones after it
PRECOMPILE = {"linear_attention": (["--precompile-only"], ["--precompile-workers", "0"])}
# benchmarks whose timings are host-bound (eager decoding) or single runs rather than medians: the
# background work is paused while they run
QUIET = {"decode"}


ORDER = ["tests", *BENCHMARKS]


def assemble(out: Path) -> Path:
    """RESULTS.md from the sections in out/results (benchmarks in BENCHMARKS order, then any other)."""
    res = out / "results"
    have = {p.stem: p for p in sorted(res.glob("*.md"))} if res.exists() else {}
    names = [n for n in ORDER if n in have] + [n for n in have if n not in ORDER]
    text = ("# GPU benchmark results\n\nProduced by `python benchmarks/run_gpu.py --tests` (each section names its "
            "script and the date it ran).\n\n" + "\n".join(have[n].read_text().rstrip() + "\n" for n in names))
    dst = out / "RESULTS.md"
    tmp = dst.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(dst)
    return dst


def _save(out: Path, name: str, text: str) -> None:
    res = out / "results"
    res.mkdir(parents=True, exist_ok=True)
    tmp = res / f"{name}.md.tmp"
    tmp.write_text(text)
    tmp.replace(res / f"{name}.md")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_group(cmd: list[str], *, env: dict, cwd: Path, timeout: float, log: Path | None = None) -> tuple[int | None, str]:
    """Run cmd in its own process group; (exit code, or None when it ran past timeout, and its output).
    Past the timeout, or when this process is interrupted or terminated (see main), the whole group is
    killed, so processes the benchmark started (compile workers, say) cannot go on sharing the GPU with
    the next benchmark, nor hold its output pipe open; so is whatever the benchmark left running when it
    exits. With ``log``, the output is also written there, each line stamped with the seconds since the
    start (where a benchmark's time goes)."""
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    t0 = time.time()
    lines: list[tuple[float, str]] = []

    def read():
        for line in p.stdout:
            lines.append((time.time() - t0, line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
    except BaseException:  # Ctrl-C, or SIGTERM turned into SystemExit: the group goes with us
        _kill_group(p.pid)
        raise
    _kill_group(p.pid)
    p.wait()
    reader.join(timeout=30)
    p.stdout.close()
    if log is not None:
        log.write_text("".join(f"[{t:7.1f} s] {line}" for t, line in lines))
    return code, "".join(line for _, line in lines)


class Background:
    """Work that times nothing (compiling a later benchmark's kernels), run beside the benchmarks in its
    own process group at the lowest CPU priority; paused while a host-bound benchmark runs."""

    def __init__(self):
        self.jobs: dict[str, tuple[subprocess.Popen, Path, float]] = {}

    def start(self, name: str, cmd: list[str], *, env: dict, cwd: Path, log: Path) -> None:
        with open(log, "w") as f:
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True, preexec_fn=lambda: os.nice(19))
        self.jobs[name] = (p, log, time.time())

    def _signal(self, sig) -> None:
        for p, _, _ in self.jobs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def finish(self, name: str, timeout: float) -> tuple[bool, str]:
        """Wait for name's job (at normal priority now, where allowed: nothing else runs) up to timeout,
        killing it past that; (whether it succeeded, its output's last lines and how long it took)."""
        p, log, t0 = self.jobs.pop(name)
        try:
            os.setpriority(os.PRIO_PGRP, p.pid, 0)
        except OSError:
            pass
        try:
            code = p.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            code = None
        _kill_group(p.pid)
        p.wait()
        tail = "; ".join(line.strip() for line in log.read_text().splitlines()[-2:])
        how = "timed out" if code is None else "ok" if code == 0 else f"exit {code}"
        return code == 0, f"{how} after {time.time() - t0:.0f} s: {tail}"

    def kill(self) -> None:
        for p, _, _ in self.jobs.values():
            _kill_group(p.pid)
            p.wait()
        self.jobs.clear()


def exit_on_sigterm() -> None:
    """Turn SIGTERM (from ``timeout``, a job scheduler) into SystemExit, so run_group kills its group."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(HERE))
    ap.add_argument("--only", default="")
    ap.add_argument("--skip", default="")
    ap.add_argument("--tests", action="store_true", help="also run pytest -m gpu first")
    ap.add_argument("--all", action="store_true", help="every benchmark and every variant row, not only the core set")
    ap.add_argument("--assemble", action="store_true", help="only rebuild RESULTS.md from out-dir/results")
    ap.add_argument("--deadline", type=float, default=None, help="seconds for the whole run: each benchmark's "
                    "limit is cut to what is left, and one with under 30 s left is skipped")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=ARGS",
                    help="more arguments for one benchmark, e.g. --extra 'moe=--profile'")
    args = ap.parse_args()
    exit_on_sigterm()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.assemble:
        print(f"wrote {assemble(out)}")
        return 0
    t_run = time.time()
    left = lambda: float("inf") if args.deadline is None else args.deadline - (time.time() - t_run)  # noqa: E731
    more = {k: v.split() for k, v in (e.split("=", 1) for e in args.extra)}
    only = [s for s in args.only.split(",") if s]
    skip = set(s for s in args.skip.split(",") if s)
    unknown = sorted(set(only) - set(BENCHMARKS), key=only.index) + sorted(skip - set(BENCHMARKS))
    if unknown:
        ap.error(f"--only/--skip: unknown benchmark(s) {', '.join(unknown)}; accepted: {', '.join(BENCHMARKS)}")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    # Triton keeps autotuning results in its disk cache: a second run on the same machine skips
    # flash-linear-attention's first-call autotuning (about 300 s of the linear attention run on an H200)
    env.setdefault("TRITON_CACHE_AUTOTUNING", "1")
    import torch

    stamp = (f"{time.strftime('%Y-%m-%d')}, {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
             f"torch {torch.__version__}")
    plan = []  # (name, script, its arguments, time limit)
    for name, (script, extra, limit, core) in BENCHMARKS.items():
        if (only and name not in only) or name in skip or not (HERE / script).exists():
            continue
        if not (core or args.all or name in only):
            continue
        if args.all:
            extra = ALL_ARGS.get(name, extra)
        plan.append((name, script, [*extra, *more.get(name, [])], limit))
    background = Background()
    try:
        for name, script, extra, _ in plan:
            if name in PRECOMPILE:
                cmd = [sys.executable, str(HERE / script), *extra, *PRECOMPILE[name][0]]
                print(f"=== {name}: compiling in the background: {' '.join(cmd[1:])}", flush=True)
                background.start(name, cmd, env=env, cwd=HERE, log=out / f"{name}.precompile.log")
        if args.tests:
            run_tests(out, env, stamp, left)
        for name, script, extra, limit in plan:
            limit = min(limit, left() - 5)
            if limit < 30:
                print(f"=== {name}: skipped, {left():.0f} s left of --deadline", flush=True)
                continue
            added, note = [], ""
            if name in background.jobs:  # its kernels: wait for them, leaving the benchmark a minute at least
                ok, how = background.finish(name, min(limit, left()) - 60)
                print(f"=== {name}: background compiling {how}", flush=True)
                if ok:
                    note = f"its kernels compiled in the background while the benchmarks before it ran ({how})"
                    added = [*PRECOMPILE[name][1], "--note", note]
                limit = min(limit, left() - 5)
            md = out / f"{name}.md"
            md.unlink(missing_ok=True)
            cmd = [sys.executable, str(HERE / script), "--out", str(md), *extra, *added]
            print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
            t = time.time()
            if name in QUIET:
                background.pause()
            try:
                code, log = run_group(cmd, env=env, cwd=HERE, timeout=limit, log=out / f"{name}.log")
            finally:
                background.resume()
            status = f"timed out after {limit:.0f} s" if code is None else "ok" if code == 0 else f"exit {code}"
            print(log[-3000:], flush=True)
            body = md.read_text() if md.exists() else f"## {name}\n\n(no table: {status})\n\n```\n{log[-1500:]}\n```\n"
            md.unlink(missing_ok=True)
            _save(out, name, body.rstrip() + f"\n\n`python benchmarks/{script} {' '.join(extra)}` -- {status}, "
                                              f"{time.time() - t:.0f} s{'; ' + note if note else ''}; {stamp}\n")
    finally:
        background.kill()
    print(f"wrote {assemble(out)}; the whole run took {time.time() - t_run:.0f} s", flush=True)
    return 0


def run_tests(out: Path, env: dict, stamp: str, left) -> None:
    t = time.time()
    limit = min(600, max(30, left() - 60))
    code, log = run_group([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           str(HERE.parent / "tests")], env=env, cwd=HERE.parent, timeout=limit)
    tail = "\n".join(log.strip().splitlines()[-15:])
    print(log[-8000:], flush=True)
    took = f"timed out after {limit:.0f} s" if code is None else f"{time.time() - t:.0f} s"
    _save(out, "tests", f"## GPU tests\n\n`python -m pytest -m gpu tests` -- {stamp}, {took}\n\n"
                        f"```\n{tail}\n```\n")


if __name__ == "__main__":
    sys.exit(main())

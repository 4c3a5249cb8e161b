"""Run every GPU benchmark (and the GPU tests) in one command and write RESULTS.md.

    python benchmarks/run_gpu.py [--out-dir DIR] [--only decode,train_step] [--skip ...] [--tests] [--all]
    python benchmarks/run_gpu.py --assemble [--out-dir benchmarks]

By default it runs the core set: each GPU performance goal's workload with our fastest path and its
reference. On a fresh H200 everything but linear attention took 551 s in one run (ceilings 6 s,
sliding window 31, decode 123, training step 174, matrix-vector products 15, MoE 43, Mamba-2 151 before
the run's deadline stopped its batch-4 row). Linear attention took 466 s on a fresh machine, 302 of them
compiling flash-linear-attention's autotuned kernels in parallel processes before its first calls
(fla_precompile.py; without that, fla's first calls alone took more than 468 s in an earlier run). So a run on a
fresh machine takes about 17 minutes. Triton keeps the compiled kernels and the autotuning results on disk
(TRITON_CACHE_AUTOTUNING, set here), so later runs on the machine skip both (not yet timed as a whole).
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
    "ssm": ("ssm_gpu.py", ["--rows", "transformers,ours-triton-graphs"], 480, True),
    # 466 s on a fresh machine (302 s compiling fla's kernels in parallel first), hence the long limit;
    # last of the core set, so a --deadline cuts it rather than the others
    "linear_attention": ("linear_attention_gpu.py", ["--forms", "triton"], 1200, True),
    "cache_memory": ("cache_memory_gpu.py", [], 120, False),
    "train_125m": ("train_gpu.py", [], 150, False),
}
# with --all: these arguments replace or extend the core ones
ALL_ARGS = {"decode": ["--compile", "--unpacked", "--fused"], "ssm": []}


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


def run_group(cmd: list[str], *, env: dict, cwd: Path, timeout: float) -> tuple[int | None, str]:
    """Run cmd in its own process group; (exit code, or None when it ran past timeout, and its output).
    Past the timeout, or when this process is interrupted or terminated (see main), the whole group is
    killed, so processes the benchmark started (compile workers, say) cannot go on sharing the GPU with
    the next benchmark, nor hold its output pipe open."""
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)

    def kill_group():
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        kill_group()
        out, _ = p.communicate()
        return None, out
    except BaseException:  # Ctrl-C, or SIGTERM turned into SystemExit: the group goes with us
        kill_group()
        raise


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
    if args.tests:
        t = time.time()
        limit = min(600, max(30, left() - 60))
        code, log = run_group([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                               str(HERE.parent / "tests")], env=env, cwd=HERE.parent, timeout=limit)
        tail = "\n".join(log.strip().splitlines()[-15:])
        print(log[-8000:], flush=True)
        took = f"timed out after {limit:.0f} s" if code is None else f"{time.time() - t:.0f} s"
        _save(out, "tests", f"## GPU tests\n\n`python -m pytest -m gpu tests` -- {stamp}, {took}\n\n"
                            f"```\n{tail}\n```\n")
    for name, (script, extra, limit, core) in BENCHMARKS.items():
        if (only and name not in only) or name in skip or not (HERE / script).exists():
            continue
        if not (core or args.all or name in only):
            continue
        if args.all:
            extra = ALL_ARGS.get(name, extra)
        limit = min(limit, left() - 5)
        if limit < 30:
            print(f"=== {name}: skipped, {left():.0f} s left of --deadline", flush=True)
            continue
        extra = [*extra, *more.get(name, [])]
        md = out / f"{name}.md"
        md.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / script), "--out", str(md), *extra]
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t = time.time()
        code, log = run_group(cmd, env=env, cwd=HERE, timeout=limit)
        status = f"timed out after {limit:.0f} s" if code is None else "ok" if code == 0 else f"exit {code}"
        print(log[-3000:], flush=True)
        (out / f"{name}.log").write_text(log)  # the whole output (profiles, tracebacks)
        body = md.read_text() if md.exists() else f"## {name}\n\n(no table: {status})\n\n```\n{log[-1500:]}\n```\n"
        md.unlink(missing_ok=True)
        _save(out, name, body.rstrip() + f"\n\n`python benchmarks/{script} {' '.join(extra)}` -- {status}, "
                                          f"{time.time() - t:.0f} s; {stamp}\n")
    print(f"wrote {assemble(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

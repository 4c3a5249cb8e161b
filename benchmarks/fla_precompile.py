"""Compile flash-linear-attention's autotuned Triton kernels in parallel processes before they are timed.

On a machine whose Triton cache lacks them, fla's first call of an op autotunes every kernel by
compiling each of its configs one after another in one process: 108 s for ``chunk_linear_attn`` and
over 360 s for ``chunk_gla`` on an H200. The compiled kernels land in Triton's disk cache, so the
benchmark's own first call, which still autotunes every config on a quiet GPU, then only loads them.

Each worker process takes every Pth config index: in round i it makes every autotuned kernel compile
its i-th config alone (of those the autotuner's own pruning keeps), on the benchmark's shapes at its
shortest length (no fla kernel or heuristic in these ops depends on the length; the batch, head count
and head size are compile-time constants of some). The autotuned kernels are compiled, not launched
(Triton's warm-up mode), so the workers time nothing and hardly use the GPU: they can run beside other
benchmarks. A config that fails to compile is left out, as the autotuner's own timing leaves it out;
an op that fla itself refuses is skipped. Workers write no autotuning results; only compiled kernels
are shared.

When Triton's cache already holds fla's autotuning results for these kernels (an earlier run on the
machine), there is nothing to gain and the workers are not started.

    python benchmarks/fla_precompile.py [--workers 16] [--batch 4 --heads 16 --dim 128 --length 2048]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def autotuners(prefix: str = "fla."):
    """Every Triton Autotuner reachable from the loaded modules named prefix* (through heuristics wrappers)."""
    from triton.runtime.autotuner import Autotuner

    found = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith(prefix) or mod is None:
            continue
        for obj in list(vars(mod).values()):
            for _ in range(4):  # heuristics -> autotuner -> jit
                if isinstance(obj, Autotuner):
                    found[id(obj)] = obj
                    break
                obj = getattr(obj, "fn", None)
                if obj is None:
                    break
    return list(found.values())


def compile_rounds(ops, tuners, index: int, workers: int, log=print) -> int:
    """Run every op once per config round index, index + workers, ...: each of the tuners compiles its
    round-th config (of those its own pruning keeps) alone, without launching or timing it (the op's
    other kernels run as usual; the tuned kernels' outputs are left unwritten). Returns how many op
    runs passed."""
    from triton.compiler.errors import CompileTimeAssertionFailure
    from triton.runtime.errors import OutOfResources, PTXASError

    config_errors = (OutOfResources, CompileTimeAssertionFailure, PTXASError)  # what the autotuner's timing skips
    bad: dict[int, list] = {id(t): [] for t in tuners}
    state = {"last": None, "round": 0, "picked": None}
    used: dict[int, int] = {}  # the tuners the ops run -> their config counts

    def patch(tuner):
        def prune_configs(kwargs):
            state["last"] = tuner
            used[id(tuner)] = len(tuner.configs)
            pruned = type(tuner).prune_configs(tuner, kwargs)  # the autotuner's own pruning first
            keep = [c for c in pruned if c not in bad[id(tuner)]] or pruned[:1]
            state["picked"] = keep[state["round"] % len(keep)]
            return [state["picked"]]

        def bench(*args, config, **meta):  # where a one-config autotune still times it (older Triton): compile
            tuner.fn.run(*args, **dict(meta, **config.all_kwargs()))
            return [0.0, 0.0, 0.0]

        run = tuner.run

        def compile_only(*args, **kwargs):  # Triton's warm-up mode: compile the config, launch nothing
            return run(*args, **dict(kwargs, warmup=True))
        tuner.prune_configs, tuner._bench, tuner.run = prune_configs, bench, compile_only

    for t in tuners:
        patch(t)
    ran, broken, i = 0, set(), index
    while i == index or i < max(used.values(), default=0):  # the first round finds out which tuners the ops use
        for n, op in enumerate(ops):
            while n not in broken:
                state["round"], state["last"] = i, None
                for t in tuners:
                    t.cache.clear()
                try:
                    op()
                    if torch.cuda.is_available():
                        torch.cuda.synchronize()
                    ran += 1
                    break
                except config_errors as exc:  # this config cannot compile: drop it, run the op again
                    if state["last"] is None or state["picked"] in bad[id(state["last"])]:
                        raise
                    log(f"round {i}: {state['last'].base_fn.__name__} {state['picked']}: {type(exc).__name__}")
                    bad[id(state["last"])].append(state["picked"])
                except Exception as exc:  # noqa: BLE001 - the op itself refuses (fla's own checks): skip it
                    log(f"op {n} skipped: {type(exc).__name__}: {str(exc)[:300]}")
                    broken.add(n)
        i += workers
    return ran


def fla_ops(B, H, T, D):
    """fla's three ops on the benchmark's inputs ([B, T, H, D] layout): each forward alone, then
    forward + backward (so that an op whose backward fla refuses still has every forward config
    compiled: the benchmark calls its forward)."""
    from fla.ops.gla import chunk_gla
    from fla.ops.linear_attn import chunk_linear_attn
    from fla.ops.simple_gla import chunk_simple_gla

    def make(shape, fn=None):
        x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        return (x if fn is None else fn(x)).detach().requires_grad_(True)

    def forward(fn, *inputs):
        with torch.no_grad():
            fn(*inputs)

    def step(fn, *inputs):
        out = fn(*inputs)[0]
        out.backward(torch.ones_like(out))

    bthd = (B, T, H, D)
    la = lambda: (lambda q, k, v: chunk_linear_attn(q, k, v, normalize=False),  # noqa: E731
                  make(bthd), make(bthd), make(bthd))
    gla = lambda: (chunk_gla, make(bthd), make(bthd), make(bthd),  # noqa: E731
                   make(bthd, lambda x: F.logsigmoid(x.float()).div(16).to(torch.bfloat16)))
    sgla = lambda: (chunk_simple_gla, make(bthd), make(bthd), make(bthd),  # noqa: E731
                    make((B, T, H), lambda x: F.logsigmoid(x.float()).div(16)))
    return [(lambda run=run, args=args: run(*args())) for args in (la, gla, sgla) for run in (forward, step)]


def tuned_before(tuners, cache_dir: str | Path | None = None) -> bool:
    """Whether Triton's cache holds autotuning results for any of these kernels (a benchmark run tunes
    all of its kernels at its first call, so any is a sign of an earlier run)."""
    if cache_dir is None:
        from triton import knobs

        cache_dir = knobs.cache.dir
    names = {t.base_fn.__name__ for t in tuners}
    have = {p.name.removesuffix(".autotune.json") for p in Path(cache_dir).glob("*/*.autotune.json")}
    return bool(names & have)


def precompile(workers: int, B: int, H: int, T: int, D: int, timeout: float = 420) -> str:
    """Run the workers as subprocesses (unless an earlier run left its autotuning results); a one-line summary."""
    fla_ops(B, H, T, D)  # imports fla's ops, so their autotuners can be listed
    if tuned_before(autotuners()):
        return "fla's autotuning results were already in Triton's cache (no precompiling)"
    t0 = time.time()
    env = {**os.environ, "TRITON_CACHE_AUTOTUNING": "0", "FLA_CACHE_RESULTS": "0", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, __file__, "--batch", str(B), "--heads", str(H), "--dim", str(D), "--length", str(T),
           "--workers", str(workers)]
    procs = [subprocess.Popen([*cmd, "--index", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(workers)]
    failed = 0
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, timeout - (time.time() - t0)))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        if p.returncode != 0:
            failed += 1
            print(out[-2000:], file=sys.stderr)
    return f"fla kernels precompiled by {workers} processes in {time.time() - t0:.0f} s ({failed} failed)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--index", type=int, default=None, help="run as worker INDEX of --workers")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--length", type=int, default=2048)
    args = ap.parse_args()
    if args.index is None:
        print(precompile(args.workers, args.batch, args.heads, args.length, args.dim))
    else:
        ops = fla_ops(args.batch, args.heads, args.length, args.dim)
        n = compile_rounds(ops, autotuners(), args.index, args.workers, log=lambda s: print(s, flush=True))
        print(f"worker {args.index}: {n} op runs")


if __name__ == "__main__":
    main()

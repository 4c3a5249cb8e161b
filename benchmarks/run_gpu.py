"""Run every GPU benchmark (and the GPU tests) in one command and write RESULTS.md.

    python benchmarks/run_gpu.py [--out-dir benchmarks] [--only decode,train_step] [--skip ...] [--tests]

Each benchmark runs in its own process with a time limit, so one failure or hang costs
only its own row; its Markdown section lands in RESULTS.md with the command that made it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (script, extra args, time limit in seconds)
BENCHMARKS = {
    "ceilings": ("ceilings_gpu.py", [], 60),
    "attention_window": ("attention_window_gpu.py", [], 150),
    "decode": ("decode_gpu.py", [], 180),
    "train_step": ("train_step_gpu.py", [], 300),
    "moe": ("moe_gpu.py", [], 150),
    "linear_attention": ("linear_attention_gpu.py", [], 240),
    "ssm": ("ssm_gpu.py", [], 200),
    "cache_memory": ("cache_memory_gpu.py", [], 120),
    "train_125m": ("train_gpu.py", [], 150),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(HERE))
    ap.add_argument("--only", default="")
    ap.add_argument("--skip", default="")
    ap.add_argument("--tests", action="store_true", help="also run pytest -m gpu first")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    only = [s for s in args.only.split(",") if s]
    skip = set(s for s in args.skip.split(",") if s)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    sections = []
    if args.tests:
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", str(HERE.parent / "tests")],
                           env=env, capture_output=True, text=True, timeout=600)
        tail = "\n".join(r.stdout.strip().splitlines()[-15:])
        print(r.stdout[-6000:], r.stderr[-2000:], flush=True)
        sections.append(f"## GPU tests (`pytest -m gpu`), {time.time() - t:.0f} s\n\n```\n{tail}\n```\n")
    for name, (script, extra, limit) in BENCHMARKS.items():
        if (only and name not in only) or name in skip or not (HERE / script).exists():
            continue
        md = out / f"{name}.md"
        md.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / script), "--out", str(md), *extra]
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t = time.time()
        try:
            r = subprocess.run(cmd, env=env, cwd=HERE, timeout=limit, capture_output=True, text=True)
            status = "ok" if r.returncode == 0 else f"exit {r.returncode}"
            log = r.stdout[-3000:] + r.stderr[-3000:]
        except subprocess.TimeoutExpired as e:
            status, log = f"timed out after {limit} s", ((e.stdout or b"")[-3000:]).decode(errors="replace") if isinstance(e.stdout, bytes) else str(e.stdout)[-3000:]
        print(log, flush=True)
        body = md.read_text() if md.exists() else f"## {name}\n\n(no table: {status})\n\n```\n{log[-1500:]}\n```\n"
        sections.append(body + f"\n`python benchmarks/{script} {' '.join(extra)}` -- {status}, {time.time() - t:.0f} s\n")
    (out / "RESULTS.md").write_text("# GPU benchmark results\n\n" + "\n".join(sections))
    print(f"wrote {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

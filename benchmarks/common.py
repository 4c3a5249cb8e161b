"""Shared helpers for the GPU benchmarks: timing with CUDA events, the two ceilings, tables."""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def bench(fn, *, warmup: int = 3, rep: int = 10) -> float:
    """Median milliseconds of fn() over rep runs after warmup, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rep):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_ceilings(n: int = 8192) -> tuple[float, float]:
    """(bf16 matmul TFLOP/s, device copy GB/s counting bytes read + written) on random data."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = bench(lambda: a @ b, warmup=5, rep=20)
    tflops = 2 * n**3 / (ms * 1e-3) / 1e12
    x = torch.randn(1 << 30, device="cuda", dtype=torch.bfloat16)  # 2 GiB
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x), warmup=3, rep=10)
    gbs = 2 * x.numel() * 2 / (ms * 1e-3) / 1e9
    del a, b, x, y
    torch.cuda.empty_cache()
    return tflops, gbs


def md_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def emit(title: str, text: str, out: str | None) -> None:
    """Print a section and, with --out, write it as Markdown (atomically)."""
    block = f"## {title}\n\n{text}\n"
    print(block, flush=True)
    if out:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(block)
        os.replace(tmp, p)


def device_line() -> str:
    import transformers

    return (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | transformers {transformers.__version__} | "
            f"{time.strftime('%Y-%m-%d')}")

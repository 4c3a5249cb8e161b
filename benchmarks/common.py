"""Shared helpers for the GPU benchmarks: timing with CUDA events, the two ceilings, tables."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def bench(fn, *, warmup: int = 3, rep: int = 10) -> float:
    """Median milliseconds of fn() over rep runs after warmup, timed with CUDA events."""
    from archlab.bench.timing import median_ms

    return median_ms(fn, torch.device("cuda"), warmup=warmup, rep=rep)


def measure_ceilings(n: int = 8192) -> tuple[float, float]:
    """(bf16 matmul TFLOP/s, device copy GB/s counting bytes read + written) on random data."""
    from archlab.bench.timing import measure_ceilings as measure

    c = measure(torch.device("cuda"), torch.bfloat16, matmul_n=n, copy_bytes=2 << 30, warmup=3, rep=10)
    return c.tflops, c.copy_gbs


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

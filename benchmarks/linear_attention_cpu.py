"""CPU benchmark: the chunkwise forms against the quadratic (parallel) reference, forward.

    python benchmarks/linear_attention_cpu.py [--lengths 512 1024 2048 4096 8192] [--backward]

For each op and length T prints the median wall time of the parallel reference (the masked
kernel matrix, O(T^2)) and of the chunk form (O(T)), and their ratio. Float32, B=1, H=4, D=64.
The GLA reference materialises a [T, T, Dk] tensor and is skipped past --gla-max.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from archlab.ops.gla import gla  # noqa: E402
from archlab.ops.linear_attn import linear_attn  # noqa: E402
from archlab.ops.simple_gla import simple_gla  # noqa: E402


def timed(fn, backward: bool, repeats: int) -> float:
    def once():
        out = fn()
        if backward:
            out.sum().backward()
    once()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backward", action="store_true", help="time forward + backward")
    ap.add_argument("--gla-max", type=int, default=1024, help="longest T for GLA's [T, T, Dk] reference")
    args = ap.parse_args()
    torch.manual_seed(0)
    H, D, C = args.heads, args.dim, args.chunk_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B=1 H={H} D={D} float32, "
          f"chunk_size={C}, {'forward+backward' if args.backward else 'forward'}")
    header = f"{'op':<12}{'T':>7}{'parallel ms':>14}{'chunk ms':>11}{'parallel/chunk':>16}"
    print(header)
    print("-" * len(header))
    for T in args.lengths:
        x = lambda *s: torch.randn(*s).requires_grad_(args.backward)  # noqa: E731
        q, k, v = x(1, H, T, D), x(1, H, T, D), x(1, H, T, D)
        g_s = F.logsigmoid(torch.randn(1, H, T) + 3).requires_grad_(args.backward)
        g_v = F.logsigmoid(torch.randn(1, H, T, D) + 3).requires_grad_(args.backward)
        ops = {
            "linear_attn": lambda form: linear_attn(q, k, v, form=form, chunk_size=C)[0],
            "simple_gla": lambda form: simple_gla(q, k, v, g_s, form=form, chunk_size=C)[0],
            "gla": lambda form: gla(q, k, v, g_v, form=form, chunk_size=C)[0],
        }
        for name, op in ops.items():
            ref = "skipped" if name == "gla" and T > args.gla_max else None
            if ref is None:
                ref = timed(lambda: op("parallel"), args.backward, args.repeats)
            ours = timed(lambda: op("chunk"), args.backward, args.repeats)
            ratio = f"{ref / ours:.2f}x" if isinstance(ref, float) else "-"
            ref_s = f"{ref:.1f}" if isinstance(ref, float) else ref
            print(f"{name:<12}{T:>7}{ref_s:>14}{ours:>11.1f}{ratio:>16}", flush=True)


if __name__ == "__main__":
    main()

"""``archlab bench [--device auto|cpu|cuda] [--only NAMES] [--size small|full] [--out FILE.md]``."""
from __future__ import annotations

import argparse


def add_bench_parser(sub) -> None:
    from archlab.bench.suite import DEVICES, ROWS

    p = sub.add_parser("bench", help="benchmark archlab beside transformers (and fla) on the device present",
                       description="Runs each row -- archlab and the reference in the same process -- and prints "
                                   "both figures, the speed-up and each as a fraction of the measured ceiling "
                                   "(matmul rate in the model dtype, or copy bandwidth).")
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--only", default=None, metavar="NAMES", help=f"comma-separated rows: {', '.join(ROWS)}")
    p.add_argument("--size", default=None, choices=("small", "full", "tiny"), metavar="{small,full}",
                   help="small: seconds per row (the CPU default); full: one large GPU (the CUDA default)")
    p.add_argument("--out", default=None, metavar="FILE.md", help="also write the report as Markdown")
    p.set_defaults(fn=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from archlab.bench.suite import run_suite, select_rows, write_markdown

    select_rows(args.only)  # a bad name fails before the ceilings are measured
    report = run_suite(args.device, args.size, args.only, say=lambda s: print(s, flush=True))
    if args.out:
        print(f"wrote {write_markdown(report.markdown(), args.out)}")
    failed = [s.name for s in report.sections if s.error]
    return 1 if failed else 0

"""One sweep worker process: ``python -m archlab.sweep.worker DB OUT --device cpu`` (started by run_sweep)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("db", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="w0")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep-checkpoints", action="store_true")
    args = ap.parse_args(argv)
    from archlab.sweep.runner import worker_loop

    try:
        worker_loop(args.db, args.out, device=args.device, name=args.name, threads=args.threads,
                    keep_checkpoints=args.keep_checkpoints, say=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

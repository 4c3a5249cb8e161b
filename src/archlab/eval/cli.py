"""``archlab eval RUN_DIR --tasks ppl,positions,mqar,passkey [--scaling yarn:4]``."""
from __future__ import annotations

import argparse

from archlab.errors import ConfigError


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run: perplexity, loss by position, passkey, MQAR...",
                       description="Run evaluations on a run or checkpoint directory; results are printed and "
                                   "merged into eval.json beside the checkpoint.")
    p.add_argument("run_dir", help="run directory (latest checkpoint), checkpoint directory or .safetensors file")
    p.add_argument("--tasks", default="ppl", help="comma-separated: ppl, positions, passkey, mqar, copy, induction")
    p.add_argument("--scaling", action="append", default=[], metavar="KIND[:FACTOR]",
                   help="inference-time RoPE scaling for positions/passkey, repeatable: yarn:4, ntk:4, linear:4, dynamic")
    p.add_argument("--corpus", default=None, help="evaluate on this corpus (default: the run's own data)")
    p.add_argument("--train-len", type=int, default=None, help="training length, if the run does not record it")
    p.add_argument("--seq-len", type=int, default=None, help="ppl: window length (default: the training length)")
    p.add_argument("--k", type=float, default=4, help="positions: evaluate up to k x the training length")
    p.add_argument("--max-windows", type=int, default=256, help="positions: validation windows scored")
    p.add_argument("--max-tokens", type=int, default=None, help="ppl: stop after about this many tokens")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lengths", default=None, help="passkey: comma-separated prompt lengths (default 0.5-4x train)")
    p.add_argument("--trials", type=int, default=8, help="passkey: keys per (length, depth) cell")
    p.add_argument("--mqar-setting", default="cpu", help="mqar: cpu (minutes on a CPU) or zoology (the paper's, GPU)")
    p.add_argument("--mqar-steps", type=int, default=None, help="mqar: override the setting's step count")
    p.add_argument("--plot", action="store_true", help="positions: save positions.png beside the checkpoint (extra plot)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument("--no-write", action="store_true", help="print only; do not update eval.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from archlab.eval.mqar import MQAR_SETTINGS
    from archlab.eval.runner import evaluate, load_target

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.mqar_setting not in MQAR_SETTINGS:
        raise ConfigError(f"--mqar-setting: {args.mqar_setting!r}; accepted: {', '.join(MQAR_SETTINGS)}")
    target = load_target(args.run_dir, device=args.device)
    if args.train_len is not None:
        target.train_len = args.train_len
    opts = {"corpus": args.corpus, "seq_len": args.seq_len, "k": args.k, "max_windows": args.max_windows,
            "max_tokens": args.max_tokens, "batch_size": args.batch_size, "n_trials": args.trials,
            "plot": args.plot, "mqar_setting": args.mqar_setting,
            "mqar_recipe": {"steps": args.mqar_steps} if args.mqar_steps else {}}
    if args.lengths:
        try:
            opts["lengths"] = tuple(int(x) for x in args.lengths.split(","))
        except ValueError:
            raise ConfigError(f"--lengths: {args.lengths!r}; expected comma-separated integers, e.g. 256,512") from None
    evaluate(target, tasks, scaling=args.scaling, write=not args.no_write, progress=not args.quiet, **opts)
    if target.directory is not None and not args.no_write:
        print(f"results: {target.directory / 'eval.json'}")
    return 0

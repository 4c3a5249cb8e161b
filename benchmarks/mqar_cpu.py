"""MQAR on the CPU: softmax attention vs elu+1 linear attention vs a hybrid, one recipe.

Each model is trained from scratch on fresh MQAR batches (``archlab.eval.recipe.train_on_task``)
with the ``cpu`` setting of ``archlab.eval.mqar.MQAR_SETTINGS`` unless overridden, and held-out
accuracy is printed every ``eval_every`` steps and in a final table. The models share width,
depth, heads and MLP; only the token mixers differ:
  softmax  plan "AA" (RoPE softmax attention, 4 heads)
  linear   plan "LL" (kind linear, elu+1 feature map, normalised; 4 heads)
  hybrid   plan "AL" (softmax attention, then linear attention)

    python benchmarks/mqar_cpu.py                       # all three, one after the other, 1 torch thread
    python benchmarks/mqar_cpu.py --only softmax        # one
    python benchmarks/mqar_cpu.py --setting cpu-narrow  # the earlier width-64 recipe (3,000 steps)
    python benchmarks/mqar_cpu.py --table               # the table from saved results
    python benchmarks/mqar_cpu.py --setting zoology --device cuda --lrs 1e-4,4.6e-4,2.15e-3,1e-2   # the paper's (GPU)

Results are saved as JSON under --out, so separate runs can be tabulated afterwards. The table
gives wall and CPU seconds of each run: on a shared machine the wall time grows with the load,
the CPU time of a one-thread run hardly does. Chance is 1/(V/2) per query; a model that only
learns which values occur sits near 1/n_pairs.

Measured at the default ``cpu`` setting (vocabulary 128, length 64, 8 pairs; 2 layers x 128,
4 heads; 1,000 steps x 64, lr 1e-3, wsd, stop at 99%; seed 0), ``python benchmarks/mqar_cpu.py``:
1 thread each, one run after the other, on the 2-core CPU shared with other jobs (load 4-8, so
wall > CPU time; on a quiet machine a one-thread run's wall time is about its CPU time):

    mixer    layers  steps  accuracy  wall s  CPU s  accuracy every 100 steps
    softmax  AA        900     0.995     592    231  .13 .15 .15 .18 .18 .37 .97 .99 .99
    linear   LL       1000     0.130     377    276  .13 .13 .13 .13 .13 .13 .13 .12 .14 .13
    hybrid   AL       1000     0.255     592    260  .13 .14 .14 .14 .15 .14 .17 .18 .23 .26

Softmax passes 95% at step 700 (about 175 s of CPU); elu+1 linear attention stays at 1/n_pairs
and the hybrid (its one softmax layer first) has only begun to rise.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import archlab
from archlab.cli import table
from archlab.eval.mqar import MQAR_SETTINGS
from archlab.eval.recipe import sweep_lr, train_on_task

MODELS = {
    "softmax": {"plan": {"pattern": "A"}},  # cycled to every layer: AA
    "linear": {"plan": {"pattern": "L"}, "linear": {"kind": "linear", "heads": 4}},  # LL
    "hybrid": {"plan": {"pattern": "AL"}, "linear": {"kind": "linear", "heads": 4}},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="cpu", choices=sorted(MQAR_SETTINGS))
    ap.add_argument("--only", choices=sorted(MODELS), action="append", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lrs", default=None, help="comma-separated learning rates: train once each and keep the best "
                                                 "(Zoology: 1e-4,4.6e-4,2.15e-3,1e-2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on a busy CPU; "
                                                             "0 = torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", action="store_true", help="only print the table of saved results")
    ap.add_argument("--out", type=Path, default=Path("runs/mqar_cpu"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = MQAR_SETTINGS[args.setting]
    recipe = setting.recipe.replace(**{k: v for k, v in (("steps", args.steps), ("lr", args.lr)) if v is not None})
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for name in args.only or list(MODELS):
            cfg = archlab.ModelConfig.from_dict({**setting.model, **MODELS[name]})
            t0, c0 = time.perf_counter(), time.process_time()
            kw = dict(device=args.device, label=name, on_eval=lambda row, n=name: print(f"{n} {row}", flush=True))
            if args.lrs:
                r = sweep_lr(cfg, setting.task, recipe, [float(x) for x in args.lrs.split(",")], **kw)
            else:
                r = train_on_task(cfg, setting.task, recipe, **kw)
            r.seconds = round(time.perf_counter() - t0, 1)
            row = {**r.to_dict(), "cpu_seconds": round(time.process_time() - c0, 1)}
            (args.out / f"{args.setting}-{name}.json").write_text(json.dumps(row, indent=1))
    rows = []
    for name in MODELS:
        path = args.out / f"{args.setting}-{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        curve = " ".join(f"{h['accuracy']:.2f}" for h in r["history"] if "accuracy" in h)
        pattern = r["model"]["plan"]["pattern"]
        layers = (pattern * r["model"]["n_layers"])[: r["model"]["n_layers"]]  # the letter of each layer
        rows.append([name, layers, f"{r['params']:,}", str(r["steps"]), f"{r['accuracy']:.3f}",
                     f"{r['best_accuracy']:.3f}", f"{r['seconds']:.0f}", f"{r.get('cpu_seconds', float('nan')):.0f}", curve])
    t = setting.task
    print(f"\nMQAR vocab {t.vocab_size}, length {t.seq_len}, {t.n_pairs} pairs, {t.query} queries, {t.filler} filler; "
          f"recipe: {recipe.steps} steps x batch {recipe.batch_size}, lr {recipe.lr:g} ({recipe.schedule}), "
          f"held-out {recipe.eval_examples} sequences (accuracy every {recipe.eval_every} steps)")
    print(table(rows, ["mixer", "layers", "params", "steps", "accuracy", "best", "wall s", "CPU s", "accuracy curve"]))


if __name__ == "__main__":
    main()

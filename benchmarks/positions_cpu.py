"""Loss by position past the training length: RoPE vs ALiBi vs RoPE + YaRN (inference-time).

Trains two small byte-level models on the built-in corpus (``stdlib``) at a short length,
identical except for ``position.kind``, then scores windows of k x train_len tokens of the
validation split. RoPE + YaRN is the RoPE model rebuilt with ``position.scaling`` = yarn x k
and the same weights. Prints the bucket table (the training length marked) and saves a plot.

    python benchmarks/positions_cpu.py                      # train both, evaluate, print
    python benchmarks/positions_cpu.py --only rope          # train one (run two processes in parallel)
    python benchmarks/positions_cpu.py --eval-only          # evaluate the saved models

A minimal training loop lives here (AdamW, warmup + cosine) so the script does not depend on
the trainer; weights are saved to --out as ``<kind>.pt``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import archlab
from archlab.data import prepare_dataset
from archlab.eval.positions import compare_table, loss_by_position, plot_loss_by_position


def model_config(kind: str, args) -> archlab.ModelConfig:
    return archlab.ModelConfig(vocab_size=258, d_model=args.d_model, n_layers=args.layers,
                               name=f"pos-{kind}").replace(**{"attention.heads": args.heads, "position.kind": kind})


def train(kind: str, ds, args) -> None:
    torch.manual_seed(0)
    model = archlab.build(model_config(kind, args))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    t0 = time.perf_counter()
    for step, batch in zip(range(args.steps), ds.batches(args.batch, args.train_len, seed=0)):
        warm = min(1.0, (step + 1) / 100)
        cos = 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * (0.1 + 0.9 * cos)
        logits = model(batch[:, :-1])  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 100 == 0:
            print(f"{kind} step {step + 1} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / f"{kind}.pt")


def load(kind: str, args):
    model = archlab.build(model_config(kind, args))
    model.load_state_dict(torch.load(args.out / f"{kind}.pt"))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-len", type=int, default=64)
    ap.add_argument("--k", type=float, default=4)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--windows", type=int, default=128, help="validation windows scored")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 avoids oversubscription on a busy CPU)")
    ap.add_argument("--only", choices=["rope", "alibi"], default=None, help="train this model only")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/positions_cpu"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = prepare_dataset(corpus="stdlib", tokenizer="byte")
    kinds = [args.only] if args.only else ["rope", "alibi"]
    if not args.eval_only:
        for kind in kinds:
            train(kind, ds, args)
        if args.only:
            return
    rope, alibi = load("rope", args), load("alibi", args)
    kw = dict(train_len=args.train_len, k=args.k, max_windows=args.windows, batch_size=8)
    results = [
        loss_by_position(rope, ds, label="rope", **kw),
        loss_by_position(alibi, ds, label="alibi", **kw),
        loss_by_position(rope, ds, scaling=("yarn", args.k), label=f"rope+yarn:{args.k:g}", **kw),
        loss_by_position(rope, ds, scaling=("ntk", args.k), label=f"rope+ntk:{args.k:g}", **kw),
    ]
    print(f"\nbyte-level models, {args.layers} layers x {args.d_model}, {args.heads} heads, trained {args.steps} steps "
          f"x {args.batch} x {args.train_len} tokens on stdlib; {results[0].n_windows} validation windows of "
          f"{results[0].eval_len} tokens")
    print(compare_table(results))
    inside = [sum(r.per_position[: args.train_len]) / args.train_len for r in results]
    outside = [sum(r.per_position[args.train_len:]) / (r.eval_len - args.train_len) for r in results]
    print("\nmean loss   " + "  ".join(f"{r.label}: {a:.3f} within / {b:.3f} past" for r, a, b in zip(results, inside, outside)))
    try:
        print("plot:", plot_loss_by_position(results, str(args.out / "positions.png")))
    except ImportError as e:
        print(f"(no plot: {e})")


if __name__ == "__main__":
    main()

"""Training throughput and MFU of archlab's trainer on a 124M GPT-2, beside bare loops, same run.

gpt2-124m (12 layers x 768, vocabulary 50257, learned positions, tied head), batch 16 x 1024
synthetic tokens, float32 master weights under bf16 autocast, fused AdamW, gradient clipping.
Rows: the trainer (``archlab.train.Trainer``, eager and compiled); a bare hand-written loop on
the same archlab model (what the trainer costs on top); the same bare loop on transformers'
GPT2LMHeadModel of the same shape (a reference implementation). FLOPs per token =
3 x archlab.flops_per_token (the same count for every row); MFU against the datasheet peak the
trainer uses (989 TFLOP/s on an H100/H200 SXM) and against the bf16 matmul rate measured here.

    python benchmarks/train_gpu.py [--out train_gpu.md] [--no-compile] [--steps 20]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from common import emit, md_table, measure_ceilings

import archlab
from archlab.train import RunConfig, TokenTensorDataset, TrainConfig, Trainer
from archlab.train.mfu import peak_flops, training_flops_per_token

B, T = 16, 1024
WARMUP = 5


def trainer_tps(cfg, ds, steps: int, compile_: bool) -> float:
    run = RunConfig(model=cfg, train=TrainConfig(
        steps=100_000, batch_size=B, seq_len=T, lr=6e-4, warmup_steps=10, eval_every=0, save_every=0,
        log_every=10_000, compile=compile_, tensorboard=False))
    t = Trainer(run, None, dataset=ds, progress=False, say=lambda s: None)
    try:
        t.fit(until_step=WARMUP)  # compilation and allocator warm-up
        torch.cuda.synchronize()
        return t.fit(until_step=WARMUP + steps).tokens_per_s
    finally:
        t.close()


def bare_tps(model, ds, steps: int, logits_of) -> float:
    """The same step without the trainer: autocast forward, float32 loss, backward, clip, fused AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

    def step(i: int) -> float:
        w = ds.batch(i, B, T, 0).to("cuda", non_blocking=True)  # [B, T+1]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = logits_of(model, w[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # the trainer syncs once per step for its log too

    for i in range(WARMUP):
        step(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        step(i)
    return B * T * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per row (after 5 warm-up steps)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("train_gpu.py needs a CUDA device")
    measured, _ = measure_ceilings()
    cfg = archlab.presets.get("gpt2-124m")
    V = cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    ds = TokenTensorDataset(torch.randint(0, V, (4_000_000,), generator=g), vocab_size=V)
    flops_tok = training_flops_per_token(cfg, T)
    peak = peak_flops(torch.device("cuda"))
    rows, tps = [], {}

    def add(label: str, fn) -> None:
        try:
            v = fn()
        except Exception as e:  # a row that cannot run is reported, not fatal
            rows.append([label, f"failed: {type(e).__name__}: {str(e)[:120]}", "", "", ""])
            return
        finally:
            torch.cuda.empty_cache()
        tps[label] = v
        tf = v * flops_tok / 1e12
        rows.append([label, f"{v:,.0f}", f"{tf:.0f}", f"{v * flops_tok / peak:.1%}" if peak else "n/a",
                     f"{tf / measured:.1%}"])

    add("archlab Trainer (eager)", lambda: trainer_tps(cfg, ds, args.steps, False))
    if not args.no_compile:
        add("archlab Trainer (compiled)", lambda: trainer_tps(cfg, ds, args.steps, True))

    def bare_archlab():
        torch.manual_seed(0)
        return bare_tps(archlab.build(cfg, device="cuda"), ds, args.steps, lambda m, x: m(x))

    add("bare loop, archlab model (eager)", bare_archlab)
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        rows.append(["bare loop, transformers GPT2LMHeadModel", "transformers not installed", "", "", ""])
    else:
        def bare_hf():
            torch.manual_seed(0)
            hf = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                                            attn_implementation="sdpa")).to("cuda")
            return bare_tps(hf, ds, args.steps, lambda m, x: m(input_ids=x).logits)

        add("bare loop, transformers GPT2LMHeadModel (eager)", bare_hf)

    head = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {time.strftime('%Y-%m-%d')}\n\n"
            f"gpt2-124m ({archlab.count_params(cfg).total / 1e6:.1f}M parameters), batch {B} x {T} synthetic tokens, "
            f"bf16 autocast, fused AdamW, clip 1.0; {flops_tok / 1e9:.3f} GFLOP/token (training); "
            f"datasheet peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s, measured bf16 matmul "
            f"{measured:.0f} TFLOP/s; {args.steps} timed steps per row\n\n")
    text = head + md_table(rows, ["run", "tokens/s", "TFLOP/s", "MFU (datasheet)", "of measured matmul"])
    ours, bare = tps.get("archlab Trainer (eager)"), tps.get("bare loop, archlab model (eager)")
    hf = tps.get("bare loop, transformers GPT2LMHeadModel (eager)")
    if ours and bare:
        text += f"\n\nTrainer / bare loop on the same model (eager): {ours / bare:.2f}x"
    if ours and hf:
        text += f"\nTrainer (eager) / transformers bare loop (eager): {ours / hf:.2f}x"
    emit("Training throughput, gpt2-124m (archlab.train)", text, args.out)


if __name__ == "__main__":
    main()

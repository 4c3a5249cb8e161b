"""Training step of a Llama-style 1.1B beside transformers' LlamaForCausalLM, same run.

hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 32000; batch 4 x 2048; bf16
weights; fused AdamW. FLOPs per token = 3 x archlab.flops_per_token (forward matmuls incl.
causal attention and the head), the same count for both; fraction of the measured matmul rate.

    python benchmarks/train_step_gpu.py [--out train_step.md] [--no-compile]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import bench, device_line, emit, md_table, measure_ceilings

import archlab
from decode_gpu import cfg_1b

B, T = 4, 2048


def step_fn(model, opt, ids, loss_of):
    def step():
        loss = loss_of(model, ids[:, :-1], ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    peak, _ = measure_ceilings()
    cfg = cfg_1b()
    flops_tok = 3 * archlab.flops_per_token(cfg, T)
    ids = torch.randint(0, cfg.vocab_size, (B, T + 1), device="cuda")
    rows = []

    def run(label, model, loss_of, compile_: bool):
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            m = torch.compile(model) if compile_ else model
            torch.cuda.reset_peak_memory_stats()
            ms = bench(step_fn(m, opt, ids, loss_of), warmup=3, rep=8)
            gib = torch.cuda.max_memory_allocated() / 2**30
            tps = B * T / (ms * 1e-3)
            tf = tps * flops_tok / 1e12
            rows.append([label, f"{ms:.1f}", f"{tps:,.0f}", f"{tf:.0f}", f"{tf / peak:.0%}", f"{gib:.1f}"])
            return tps
        except Exception as e:
            rows.append([label, f"failed: {type(e).__name__}: {str(e)[:100]}", "", "", "", ""])
        finally:
            torch.cuda.empty_cache()

    variants = [False] if args.no_compile else [False, True]
    ours = {}
    for c in variants:
        torch.manual_seed(0)
        model = archlab.build(cfg, device="cuda", dtype=torch.bfloat16)
        # the model's loss path: chunked head + cross-entropy, no [B, T, V] float32 logits
        ours[c] = run(f"archlab{' compiled' if c else ''}", model, lambda m, x, y: m(x, targets=y), c)
        del model
    theirs = {}

    def hf_loss(m, x, y):
        logits = m(input_ids=x).logits
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())

    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096,
                         attn_implementation="sdpa")
    for c in variants:
        torch.manual_seed(0)
        with torch.device("cuda"):  # initialised on the GPU (on the CPU: tens of seconds at this size)
            hf = LlamaForCausalLM(hf_cfg).to(torch.bfloat16)
        theirs[c] = run(f"transformers{' compiled' if c else ''}", hf, hf_loss, c)
        del hf
    text = (f"{device_line()}\n\nbatch {B} x {T}, bf16 weights, fused AdamW; {flops_tok / 1e9:.2f} GFLOP/token "
            f"(training); measured bf16 matmul rate {peak:.0f} TFLOP/s\n\n"
            + md_table(rows, ["model", "ms/step", "tokens/s", "TFLOP/s", "of matmul rate", "peak GiB"]))
    for c in variants:
        if ours.get(c) and theirs.get(c):
            text += f"\n\narchlab / transformers{' (both compiled)' if c else ' (eager)'}: {ours[c] / theirs[c]:.2f}x"
    emit("Training step, Llama-style 1.1B", text, args.out)


if __name__ == "__main__":
    main()

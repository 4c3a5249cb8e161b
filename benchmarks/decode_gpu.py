"""Greedy decode at batch 1 against the bandwidth roofline, beside transformers.

Llama-style 1.1B (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 32000), bf16,
128-token prompt, 256 new tokens. Roofline tokens/s = copy bandwidth / (weight bytes + mean
cache bytes read per step). The eager rows (ours and transformers') are bound by the host's launch
rate, a cost per token that does not grow with the count, so they are timed over the first 64 new
tokens.

    python benchmarks/decode_gpu.py [--out decode.md] [--compile] [--unpacked] [--fused] [--autotune] [--profile]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from common import device_line, emit, md_table, measure_ceilings

import archlab
from archlab.decode import GraphDecoder

PROMPT, NEW = 128, 256
EAGER_NEW = 64  # new tokens timed for the host-bound eager rows


def cfg_1b():
    return archlab.presets.get("llama-3-debug").replace(
        vocab_size=32000, d_model=2048, n_layers=16, tie_embeddings=False,
        **{"attention.heads": 32, "attention.kv_heads": 8, "attention.head_dim": 64, "ffn.hidden": 8192},
    )


def timed(fn) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def profile_steps(model, ids, steps: int = 10) -> None:
    """Kernel table of ``steps`` decode steps without the graph: where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    for label, kw in (("eager", {}), ("compiled", {"compile": True})):
        dec = GraphDecoder(model, 1, PROMPT + NEW, use_graph=False, **kw)
        logits = dec.prefill(ids)
        for _ in range(3):
            logits = dec.step(logits.argmax(-1))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                logits = dec.step(logits.argmax(-1))
            torch.cuda.synchronize()
        ev = prof.key_averages()
        n = sum(e.count for e in ev if e.device_type.name == "CUDA") / steps
        busy = sum(e.self_device_time_total for e in ev) / steps / 1e3
        print(f"--- decode step, {label}: {n:.0f} kernels per step, {busy:.3f} ms of kernel time per step")
        print(ev.table(sort_by="self_cuda_time_total", row_limit=18))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--compile", action="store_true", help="also time a compiled step inside the graph")
    ap.add_argument("--unpacked", action="store_true", help="with --compile: also time the compiled step with "
                    "separate q/k/v and gate/up products (what packing them buys)")
    ap.add_argument("--profile", action="store_true", help="print the kernels of one decode step (eager and compiled)")
    ap.add_argument("--fused", action="store_true",
                    help="also time the fused step (archlab.decode_fused: norms, SwiGLU and residual adds inside "
                         "Triton matrix-vector kernels), eager and compiled, in the CUDA graph")
    ap.add_argument("--autotune", action="store_true",
                    help="also time the step compiled with mode='max-autotune-no-cudagraphs' and coordinate-descent "
                         "tuning (inductor tries its own Triton matrix-vector kernels against cuBLAS; minutes)")
    args = ap.parse_args()
    _, gbs = measure_ceilings()
    cfg = cfg_1b()
    model = archlab.build(cfg, device="cuda", dtype=torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, PROMPT), device="cuda")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    mean_ctx = PROMPT + NEW / 2
    step_bytes = weight_bytes + archlab.cache_bytes(cfg, int(mean_ctx), 1, torch.bfloat16)
    roof = gbs * 1e9 / step_bytes
    rows = []

    def ours(label, new=NEW, **kw):
        try:
            dec = GraphDecoder(model, 1, PROMPT + NEW, **kw)
            dec.generate(ids, 8)  # capture/compile outside the timing; prefill restarts the cache
            t = timed(lambda: dec.generate(ids, new))
            tps = new / t
            rows.append([label, f"{tps:,.0f}", f"{tps / roof:.0%}"])
            return dec
        except Exception as e:  # a row fails alone
            rows.append([label, f"failed: {type(e).__name__}: {str(e)[:80]}", ""])

    archlab.generate(model, ids, 8)  # warm, like every other row (the first calls load kernels and libraries)
    t = timed(lambda: archlab.generate(model, ids, EAGER_NEW))
    rows.append(["archlab generate (dynamic cache, eager)", f"{EAGER_NEW / t:,.0f}", f"{EAGER_NEW / t / roof:.0%}"])
    if args.compile and args.unpacked:  # before anything packs the model's projections
        ours("archlab static cache + compiled step + CUDA graph, projections not packed", compile=True, pack=False)
    ours("archlab static cache, eager steps", new=EAGER_NEW, use_graph=False)
    dec = ours("archlab static cache + CUDA graph")
    if args.compile:
        ours("archlab static cache + compiled step + CUDA graph (packed q/k/v and gate/up)", compile=True)
    if args.fused:
        ours("archlab fused step (Triton matrix-vector kernels with norm/SwiGLU/residual) + CUDA graph", fused=True)
        ours("archlab fused step + compiled glue + CUDA graph", fused=True, compile=True)
    if args.autotune:
        import torch._inductor.config as inductor_config

        inductor_config.coordinate_descent_tuning = True
        ours("archlab static cache + step compiled with max-autotune + CUDA graph (packed)",
             compile="max-autotune-no-cudagraphs")
    if args.profile:
        profile_steps(model, ids)
    if dec is not None:
        # in float32: in bf16 the masked attention over all static slots and the causal attention
        # of the dynamic cache round differently, enough to flip a near-tie greedy pick
        m32 = copy.deepcopy(model).float()
        ref = archlab.generate(m32, ids, 32)
        same = torch.equal(GraphDecoder(m32, 1, PROMPT + NEW).generate(ids, 32), ref)
        rows.append(["greedy tokens of the CUDA-graph decoder equal to archlab generate (32 tokens, float32)",
                     str(same), ""])
        del m32
    try:
        from transformers import LlamaConfig, LlamaForCausalLM

        hf_cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                             num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096)
        with torch.device("cuda"):  # initialised on the GPU (on the CPU: tens of seconds at this size)
            hf = LlamaForCausalLM(hf_cfg).to(torch.bfloat16).eval()
        kw = dict(max_new_tokens=EAGER_NEW, min_new_tokens=EAGER_NEW, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            hf.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
            t = timed(lambda: hf.generate(ids, **kw))
        ref_tps = EAGER_NEW / t
        rows.append(["transformers generate (dynamic cache)", f"{ref_tps:,.0f}", f"{ref_tps / roof:.0%}"])
        del hf
    except Exception as e:
        ref_tps = None
        rows.append(["transformers generate", f"failed: {type(e).__name__}: {str(e)[:80]}", ""])
    text = (f"{device_line()}\n\nbatch 1, prompt {PROMPT}, {NEW} new tokens, bf16; copy bandwidth {gbs:,.0f} GB/s; "
            f"weights {weight_bytes / 1e9:.2f} GB; roofline {roof:,.0f} tokens/s; the eager rows (host-bound) "
            f"timed over the first {EAGER_NEW} new tokens\n\n"
            + md_table(rows, ["decoder", "tokens/s", "of roofline"]))
    if ref_tps:
        best = max((float(r[1].replace(",", "")) for r in rows if r[0].startswith("archlab") and r[1][0].isdigit()), default=0)
        text += f"\n\nbest archlab / transformers: {best / ref_tps:.1f}x"
    emit("Decode, batch 1 (Llama-style 1.1B)", text, args.out)


if __name__ == "__main__":
    main()

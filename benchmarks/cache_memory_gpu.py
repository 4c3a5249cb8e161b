"""Cache memory on the GPU against the analytic figure, one row per cache kind.

A Llama-style decoder (8 layers, width 2048, 16 heads of 128, GQA with 8 KV heads, vocab 32000,
bf16) is filled to a long context by chunked prefill, then decodes. Per cache kind:

- analytic: ``archlab.cache_bytes(cfg, context, batch, bf16)``;
- allocated: what ``model.new_cache`` added to ``torch.cuda.memory_allocated`` (the reference
  figure; the ratio allocated / analytic should be 1.000 up to the allocator's 512-byte blocks);
- step peak: the peak allocation of one decode step at full context above the steady state
  (weights + cache): attention scratch, logits, and for quantized caches the dequantized K/V of
  one layer (read-time dequantization); and the median time of a decode step.

Kinds: full (bf16), sliding window 4096 (ring buffer), MLA latent (kv_lora 512 + rope 64,
same heads and width), int8 and fp8 K/V (per-token, per-head float32 scales), int8 latent.
Each row runs alone: a failure prints in its row, and memory is released before the next.

    python benchmarks/cache_memory_gpu.py [--out cache_memory.md] [--context 65536] [--batch 1]

``--device cpu`` (with a small ``--context`` and ``--layers``) runs the same rows as a smoke test,
without the memory readings, which need CUDA's allocator statistics.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

from common import device_line, emit, md_table

import archlab
from archlab import presets

WINDOW = 4096
CHUNK = 8192  # prefill chunk: bounds the attention scratch while filling


def base_cfg(layers: int):
    return presets.get("llama-3-debug").replace(
        vocab_size=32000, d_model=2048, n_layers=layers, tie_embeddings=False,
        **{"attention.heads": 16, "attention.kv_heads": 8, "attention.head_dim": 128, "ffn.hidden": 5632},
    )


def kinds(layers: int) -> dict:
    base = base_cfg(layers)
    mla = {"attention.kind": "mla", "attention.kv_heads": None, "attention.head_dim": None,
           "attention.mla": {"kv_lora_rank": 512, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                             "v_head_dim": 128}, "position.interleaved": True}
    out = {"full (bf16)": base}
    try:
        import archlab.cache.sliding  # noqa: F401  (the ring buffer)

        out[f"sliding window {WINDOW} (bf16)"] = base.replace(**{"attention.window": WINDOW})
    except ImportError:
        pass
    out["MLA latent (bf16)"] = base.replace(**mla)
    out["int8 K/V + scales"] = base.replace(**{"attention.cache_dtype": "int8"})
    out["fp8 e4m3 K/V + scales"] = base.replace(**{"attention.cache_dtype": "fp8"})
    out["MLA latent int8 + scales"] = base.replace(**mla, **{"attention.cache_dtype": "int8"})
    return out


def gib(n: float) -> str:
    return f"{n / 2**30:,.3f} GiB" if abs(n) >= 2**28 else f"{n / 2**20:,.1f} MiB"


def _allocated(device: str) -> int:
    if device != "cuda":
        return 0
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def run_row(name: str, cfg, context: int, batch: int, steps: int, device: str = "cuda") -> list[str]:
    cuda = device == "cuda"
    model = archlab.build(cfg, device=device, dtype=torch.bfloat16).eval()
    analytic = archlab.cache_bytes(cfg, context, batch, torch.bfloat16)
    before = _allocated(device)
    cache = model.new_cache(batch_size=batch, max_len=context)
    allocated = _allocated(device) - before
    ids = torch.randint(0, cfg.vocab_size, (batch, context), device=device)
    fill = context - steps - 1
    with torch.no_grad():
        for s in range(0, fill, CHUNK):
            model(ids[:, s:min(s + CHUNK, fill)], cache=cache)
        steady = _allocated(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        model(ids[:, fill:fill + 1], cache=cache)  # the measured step, at full context
        step_peak = torch.cuda.max_memory_allocated() - steady if cuda else 0
        times = []
        for t in range(fill + 1, fill + 1 + steps):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(ids[:, t:t + 1], cache=cache)
            if cuda:
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)  # wall time: a step syncs on the host anyway
    held = cache.nbytes()
    assert cache.length == context, (cache.length, context)
    del model, cache, ids
    na = "n/a (cpu)"
    return [name, f"{analytic:,}", f"{allocated:,}" if cuda else na, f"{allocated / analytic:.4f}" if cuda else na,
            f"{held == analytic}", gib(analytic), gib(step_peak) if cuda else na, f"{statistics.median(times):.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--context", type=int, default=65536)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=9, help="timed decode steps after the measured one")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run without memory readings")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="prefill chunk")
    args = ap.parse_args()
    globals()["CHUNK"] = args.chunk
    t0 = time.time()
    rows = []
    for name, cfg in kinds(args.layers).items():
        try:
            rows.append(run_row(name, cfg, args.context, args.batch, args.steps, args.device))
        except Exception as e:  # one row fails alone
            rows.append([name, f"failed: {type(e).__name__}: {str(e)[:100]}"] + [""] * 6)
        gc.collect()
        torch.cuda.empty_cache()
        print(" | ".join(rows[-1]), flush=True)
    header = ["cache kind", "analytic bytes", "allocated by new_cache", "allocated / analytic", "held == analytic",
              "cache", "decode-step peak above steady", "step ms (median)"]
    where = device_line() if args.device == "cuda" else f"CPU smoke run | torch {torch.__version__}"
    text = (f"{where}\n\n{args.layers}-layer Llama-style decoder, width 2048, 16 heads x 128 (8 KV heads), bf16 weights; "
            f"batch {args.batch}, context {args.context:,} tokens (chunked prefill of {CHUNK}, then decode). "
            "Reference: the analytic figure; ratio = allocated / analytic. The step peak of quantized caches "
            "includes one layer's K/V dequantized to bf16 on read.\n\n"
            + md_table(rows, header) + f"\n\n({time.time() - t0:.0f} s)")
    emit("Cache memory: measured against analytic", text, args.out)


if __name__ == "__main__":
    main()

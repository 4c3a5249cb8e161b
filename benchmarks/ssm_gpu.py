"""GPU benchmark: a Mamba-2 language-model training step, ours against transformers' Mamba2ForCausalLM.

Default shape (Mamba-2 545M style): hidden 2048, 16 layers, state 128, head dim 64 (64 heads),
1 group, vocabulary 50288 tied, T = 2048, batch 1 and 4. One training step = forward, cross-entropy,
backward, AdamW, under bf16 autocast with float32 weights (the same recipe for every row; the loss
is each side's own: transformers' full float32 logits, archlab's chunked head + cross-entropy).
Reports tokens/s (median step time over --steps after --warmup steps), peak GPU memory, and the
achieved model TFLOP/s (3 x forward matmul FLOPs from the analytic count; SSD counted in its
recurrent form, so the chunked form's extra intra-chunk work is not credited). A row that runs out
of memory or fails is reported as such and the next row still runs.

    python benchmarks/ssm_gpu.py --out ssm_gpu.md
    python benchmarks/ssm_gpu.py --kinds mamba2,mamba --batches 1 --rows ours,ours-compiled
    python benchmarks/ssm_gpu.py --rows transformers,ours-triton-graphs@1,ours-triton-compiled@4

Rows: transformers; ours (the chunked SSD in PyTorch ops, eager); ours-compiled (each block
compiled); ours-triton, ours-triton-compiled (Mamba-2's SSD in the Triton kernels of
ops/ssd/triton.py, chunk 64); a "-graphs" suffix instead of "-compiled" compiles the model whole
with mode="reduce-overhead" (CUDA graphs: at batch 1 the step is otherwise partly bound by the
host's launch rate). A row named ROW@B runs at batch B only. --trace DIR writes a Chrome trace of
two steps of each of our rows. The transformers rows take --ref-steps after --ref-warmup (their
steps of about 2 s vary by under 0.1%).

Shapes: B batch, T time, C model width, V vocabulary.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import traceback
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from archlab.ops.cross_entropy import linear_cross_entropy
from archlab.ssm import SSMConfig, build_ssm_mixer, flops_per_token

MATMUL_PEAK_TFLOPS = 772.0  # bf16 matmul measured on one H200 (shared/FINDINGS.md)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: SSMConfig, d_model: int, i: int):
        super().__init__()
        self.norm, self.mixer = RMSNorm(d_model), build_ssm_mixer(cfg, d_model, i)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class TinyLM(nn.Module):
    """embedding -> N x (RMSNorm + mixer, residual) -> RMSNorm -> tied head (the Mamba LM layout)."""

    def __init__(self, cfg: SSMConfig, d_model: int, layers: int, vocab: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(Block(cfg, d_model, i) for i in range(layers))
        self.norm_f = RMSNorm(d_model)

    def forward(self, ids, targets=None):
        """Logits [B, T, V]; with targets [B, T], the mean next-token loss through archlab's chunked
        head + cross-entropy instead (no [B, T, V] float32 logits)."""
        x = self.embedding(ids)  # [B, T, C]
        for block in self.layers:
            x = block(x)
        h = self.norm_f(x)
        if targets is not None:
            return linear_cross_entropy(h.flatten(0, 1), self.embedding.weight, targets.flatten())
        return F.linear(h, self.embedding.weight)  # [B, T, V]


def _configs(kind: str, a, row: str = "ours"):
    if kind == "mamba2":
        triton = "triton" in row  # the SSD in Triton kernels (chunk 64 unless --chunk names another they take)
        ours = SSMConfig(kind="mamba2", d_state=a.state, head_dim=a.head_dim, n_groups=1,
                         chunk_size=a.chunk or (64 if triton else None), backend="triton" if triton else "chunked")
    else:
        ours = SSMConfig(kind="mamba", d_state=16, chunk_size=a.chunk)
    return ours


def _build(row: str, kind: str, a):
    torch.manual_seed(0)
    if row == "transformers":
        if kind == "mamba2":
            from transformers import Mamba2Config, Mamba2ForCausalLM

            hc = Mamba2Config(hidden_size=a.d_model, num_hidden_layers=a.layers, vocab_size=a.vocab,
                              state_size=a.state, expand=2, head_dim=a.head_dim,
                              num_heads=2 * a.d_model // a.head_dim, n_groups=1, conv_kernel=4,
                              chunk_size=256, tie_word_embeddings=True)
            model = Mamba2ForCausalLM(hc)
        else:
            from transformers import MambaConfig, MambaForCausalLM

            model = MambaForCausalLM(MambaConfig(hidden_size=a.d_model, num_hidden_layers=a.layers,
                                                 vocab_size=a.vocab, state_size=16, expand=2))

        def fwd(ids, labels):  # transformers' own path: full logits, then the loss in float32
            logits = model(ids).logits
            return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
    else:
        model = TinyLM(_configs(kind, a, row), a.d_model, a.layers, a.vocab)
        fwd = model
        if row.endswith("-compiled"):
            for block in model.layers:  # regional compilation: one compiled graph serves every block
                block.compile()
        elif row.endswith("-graphs"):
            fwd = torch.compile(model, mode="reduce-overhead")
    return model, fwd


def _model_flops_per_token(kind: str, a) -> float:
    cfg = _configs(kind, a)
    fwd = a.layers * flops_per_token(cfg, a.d_model, a.seq) + 2.0 * a.d_model * a.vocab
    return 3.0 * fwd


def run_row(row: str, kind: str, batch: int, a) -> dict:
    model = opt = None
    try:
        with torch.device("cuda"):  # initialised on the GPU (on the CPU: tens of seconds at this size)
            model, fwd = _build(row, kind, a)
        warmup, steps = (a.ref_warmup, a.ref_steps) if row == "transformers" else (a.warmup, a.steps)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        ids = torch.randint(0, a.vocab, (batch, a.seq + 1), device="cuda")
        inp, labels = ids[:, :-1], ids[:, 1:]

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = fwd(inp, labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        t0 = time.perf_counter()
        for _ in range(warmup):
            loss = step()
        torch.cuda.synchronize()
        warm_s = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        dt = statistics.median(times)
        if (a.profile or a.trace) and row != "transformers":
            profile_steps(step, f"{kind} {row} batch {batch}",
                          trace=a.trace and f"{a.trace}/{kind}-{row}-b{batch}.json")
        tok_s = batch * a.seq / dt
        return dict(row=row, kind=kind, batch=batch, params=n_params, step_ms=dt * 1e3, tok_s=tok_s,
                    peak_gib=torch.cuda.max_memory_allocated() / 2**30, reserved_gib=torch.cuda.max_memory_reserved() / 2**30,
                    warm_s=warm_s, loss=loss.item(),
                    tflops=tok_s * _model_flops_per_token(kind, a) / 1e12, status="ok")
    except torch.OutOfMemoryError:
        return dict(row=row, kind=kind, batch=batch, status="out of memory")
    except Exception as e:  # noqa: BLE001 -- a failed row is reported, the next one still runs
        traceback.print_exc()
        return dict(row=row, kind=kind, batch=batch, status=f"failed: {type(e).__name__}: {str(e)[:120]}")
    finally:
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()


def profile_steps(step, label: str, steps: int = 2, trace: str | None = None) -> None:
    """Kernel table of ``steps`` training steps: where a step's time goes; with ``trace``, also a
    Chrome trace (host and device) written to that path."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if trace else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    ev = prof.key_averages()
    busy = sum(e.self_device_time_total for e in ev) / steps / 1e3
    print(f"--- {label}: {busy:.1f} ms of kernel time per step")
    print(ev.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=80), flush=True)
    if trace:
        prof.export_chrome_trace(trace)


def check_ops() -> None:
    """The chunked ops on the GPU against the sequential reference (float32), eager and compiled,
    and the Triton SSD (in a compiled graph, its kernels are two opaque ops)."""
    from archlab.ops.selective_scan import selective_scan_chunked, selective_scan_reference
    from archlab.ops.ssd import ssd_chunked, ssd_reference, ssd_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    Bsz, T, E, N, H, P, G = 2, 100, 64, 16, 8, 16, 2
    cases = {
        "selective_scan": (selective_scan_reference, lambda *x: selective_scan_chunked(*x, chunk_size=16),
                           [r(Bsz, T, E), F.softplus(r(Bsz, T, E)), -torch.rand(E, N, device="cuda"),
                            r(Bsz, T, N), r(Bsz, T, N), r(Bsz, E, N)]),
        "ssd": (ssd_reference, lambda *x: ssd_chunked(*x, chunk_size=32),
                [r(Bsz, T, H, P), F.softplus(r(Bsz, T, H)), -torch.rand(H, device="cuda"),
                 r(Bsz, T, G, N), r(Bsz, T, G, N), r(Bsz, H, P, N)]),
    }
    cases["ssd triton"] = (ssd_reference, lambda *x: ssd_triton(*x, chunk_size=32), cases["ssd"][2])
    for name, (ref, fast, ins) in cases.items():
        ins = [t.detach().requires_grad_() for t in ins]
        y0, h0 = ref(*ins)
        g0 = torch.autograd.grad(y0.square().sum() + h0.sum(), ins)
        forms = [("eager", fast), ("compiled", torch.compile(fast, fullgraph=True))]
        for label, fn in forms:
            y1, h1 = fn(*ins)
            g1 = torch.autograd.grad(y1.square().sum() + h1.sum(), ins)
            rel = lambda a, b: ((a - b).norm() / b.norm()).item()  # noqa: E731
            print(f"check {name} {label}: rel err y {rel(y1, y0):.1e}, state {rel(h1, h0):.1e}, "
                  f"grads max {max(rel(a, b) for a, b in zip(g1, g0)):.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="mamba2", help="comma list of mamba2, mamba")
    ap.add_argument("--rows", default="transformers,ours,ours-compiled,ours-triton-compiled,ours-graphs,ours-triton-graphs")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--state", type=int, default=128)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=50288)
    ap.add_argument("--chunk", type=int, default=None, help="our chunk size (default: the config's)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ref-warmup", type=int, default=1, help="warm-up steps of the transformers rows")
    ap.add_argument("--ref-steps", type=int, default=3, help="timed steps of the transformers rows")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    ap.add_argument("--check", action="store_true", help="first compare the chunked ops with the reference on the GPU")
    ap.add_argument("--profile", action="store_true", help="print the kernels of two steps of each of our rows")
    ap.add_argument("--trace", default=None, metavar="DIR", help="write a Chrome trace of two steps of each of our rows")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("ssm_gpu.py needs a CUDA device")
    warnings.filterwarnings("ignore")
    if a.trace:
        os.makedirs(a.trace, exist_ok=True)
    if a.check:
        check_ops()
    rows = []  # (row, the one batch it runs at, or None)
    for item in a.rows.split(","):
        row, at, only = item.partition("@")
        if at and not only.isdigit():
            ap.error(f"--rows: {item!r}: after '@' a batch size is expected (e.g. ours-triton-compiled@4)")
        rows.append((row, int(only) if at else None))
    results = []
    for kind in a.kinds.split(","):
        for batch in map(int, a.batches.split(",")):
            for row, only in rows:
                if only is not None and only != batch:
                    continue
                r = run_row(row, kind, batch, a)
                print(r, flush=True)
                results.append(r)
                if a.out:  # after every row, so a run stopped by its time limit keeps the rows it measured
                    write_atomic(a.out, table(results, a) + "\n")
    print("\n" + table(results, a))


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def table(results: list[dict], a) -> str:
    head = (f"{torch.cuda.get_device_name()}, torch {torch.__version__}; hidden {a.d_model}, {a.layers} layers, "
            f"T={a.seq}, vocab {a.vocab}; bf16 autocast, AdamW; median of {a.steps} steps after {a.warmup} "
            f"(transformers: {a.ref_steps} after {a.ref_warmup})\n")
    lines = [head, "| kind | batch | implementation | params (M) | step (ms) | tokens/s | peak GiB | reserved GiB | model TFLOP/s | vs transformers | warm-up s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['kind']} | {r['batch']} | {r['row']} | | | {r['status']} | | | | | |")
            continue
        ref = next((x for x in results if x["row"] == "transformers" and x["kind"] == r["kind"]
                    and x["batch"] == r["batch"] and x["status"] == "ok"), None)
        ratio = f"{r['tok_s'] / ref['tok_s']:.1f}x" if ref else "-"
        lines.append(f"| {r['kind']} | {r['batch']} | {r['row']} | {r['params'] / 1e6:.0f} | {r['step_ms']:.1f} | "
                     f"{r['tok_s']:,.0f} | {r['peak_gib']:.1f} | {r['reserved_gib']:.1f} | {r['tflops']:.0f} | {ratio} | {r['warm_s']:.0f} |")
    lines.append(f"\nmodel TFLOP/s = tokens/s x 3 x forward FLOPs per token (analytic); bf16 matmul ceiling about "
                 f"{MATMUL_PEAK_TFLOPS:.0f} TFLOP/s on one H200. peak GiB: the most allocated during the timed "
                 "steps; a CUDA graph's activations live in its private pool, recorded during warm-up, so for the "
                 "-graphs rows only reserved GiB (the allocator's peak footprint, its cache included) bounds the memory")
    return "\n".join(lines)

if __name__ == "__main__":
    main()

"""GPU benchmark: our linear attention, GLA and simple GLA (one decay per head and step; the
Triton form, and the compiled chunk form as a second row) against flash-linear-attention (fla)
and causal SDPA, forward + backward, bf16, B=4, H=16, D=128, T in {32k, 8k, 2k}.

    python benchmarks/linear_attention_gpu.py --out linear_attention_gpu.md [--chunk-size 64]

Prints a table (ours, reference, ratio) and writes it as Markdown to --out. Times are CUDA-event
medians of --iters runs after --warmup runs; a row that runs out of memory or fails (a Triton
compile or launch error included) is reported as such and the run goes on. fla is optional: without it the fla columns say "fla not installed".

On a machine whose Triton cache lacks fla's kernels, their first-call autotuning takes minutes; by default
``fla_precompile.py`` compiles them first in parallel processes (one per core, up to 16).
``--precompile-only`` does that and compiles our own kernels (one untimed call of each op at the
shortest length), then exits: ``run_gpu.py`` runs it in the background while other benchmarks run.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from archlab.ops.gla import gla  # noqa: E402
from archlab.ops.linear_attn import linear_attn  # noqa: E402
from archlab.ops.simple_gla import simple_gla  # noqa: E402

try:
    import triton
except ImportError:
    triton = None
try:
    from fla.ops.gla import chunk_gla
    from fla.ops.linear_attn import chunk_linear_attn
    from fla.ops.simple_gla import chunk_simple_gla
    FLA = True
except Exception as exc:  # noqa: BLE001 - any import failure means "no fla" here
    FLA_ERROR = f"{type(exc).__name__}: {exc}"
    FLA = False


def time_fwd_bwd(fn, inputs, warmup: int, iters: int) -> float:
    """Median milliseconds of fn(*inputs) forward + backward (CUDA events)."""
    def step():
        for x in inputs:
            x.grad = None
        out = fn(*inputs)
        out.backward(grad)
    out = fn(*inputs)
    grad = torch.randn_like(out)
    del out
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def make(shape, requires_grad=True, fn=None):
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    if fn is not None:
        x = fn(x)
    return x.detach().requires_grad_(requires_grad)


FORMS = ("triton", "chunk_compiled")


def cases(B, H, T, D, chunk_size):
    """(name, form, ours (fn, inputs), reference name, reference (fn, inputs) or None)."""
    bhtd, bthd = (B, H, T, D), (B, T, H, D)
    logsig = lambda x: F.logsigmoid(x.float()).div(16).to(torch.bfloat16)  # noqa: E731 - GLA's gate
    logsig32 = lambda x: F.logsigmoid(x.float()).div(16)  # noqa: E731 - simple GLA's per-head gate, float32
    la = lambda form: (lambda q, k, v: linear_attn(q, k, v, form=form, chunk_size=chunk_size)[0],  # noqa: E731
                       [make(bhtd), make(bhtd), make(bhtd)])
    gl = lambda form: (lambda q, k, v, g: gla(q, k, v, g, form=form, chunk_size=chunk_size)[0],  # noqa: E731
                       [make(bhtd), make(bhtd), make(bhtd), make(bhtd, fn=logsig)])
    sgl = lambda form: (lambda q, k, v, g: simple_gla(q, k, v, g, form=form, chunk_size=chunk_size)[0],  # noqa: E731
                        [make(bhtd), make(bhtd), make(bhtd), make((B, H, T), fn=logsig32)])
    ours_la = {form: la(form) for form in FORMS}
    ours_gla = {form: gl(form) for form in FORMS}
    ours_sgl = {form: sgl(form) for form in FORMS}
    ref_la = ref_gla = ref_sgl = None
    if FLA:
        ref_la = (lambda q, k, v: chunk_linear_attn(q, k, v, normalize=False)[0],
                  [make(bthd), make(bthd), make(bthd)])
        ref_gla = (lambda q, k, v, g: chunk_gla(q, k, v, g)[0],
                   [make(bthd), make(bthd), make(bthd), make(bthd, fn=logsig)])
        ref_sgl = (lambda q, k, v, g: chunk_simple_gla(q, k, v, g)[0],
                   [make(bthd), make(bthd), make(bthd), make((B, T, H), fn=logsig32)])
    sdpa = (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            [make(bhtd), make(bhtd), make(bhtd)])
    rows = []
    for name, ours, ref_name, ref in (("linear_attn", ours_la, "fla chunk_linear_attn", ref_la),
                                      ("gla", ours_gla, "fla chunk_gla", ref_gla),
                                      ("simple_gla", ours_sgl, "fla chunk_simple_gla", ref_sgl)):
        rows += [(name, form, ours[form], ref_name, ref) for form in FORMS]
        rows.append((name, FORMS[0], ours[FORMS[0]], "sdpa causal", sdpa))
    return rows


def agreement(B, H, T, D, chunk_size) -> list[list[str]]:
    """Rows: ours (Triton form) against fla on the same bf16 inputs, forward output, relative error
    ||ours - fla|| / ||fla||. fla lays heads out [B, T, H, D]; ours [B, H, T, D]."""
    if not FLA:
        return []
    g = torch.Generator(device="cuda").manual_seed(T)
    q, k, v, gate = (torch.randn(B, H, T, D, device="cuda", generator=g).to(torch.bfloat16) for _ in range(4))
    gate = F.logsigmoid(gate.float()).div(16).to(torch.bfloat16)
    head_gate = F.logsigmoid(torch.randn(B, H, T, device="cuda", generator=g)).div(16)  # float32
    t = lambda x: x.transpose(1, 2).contiguous()  # noqa: E731
    rows = []
    with torch.no_grad():
        pairs = (("linear_attn", linear_attn(q, k, v, form="triton", chunk_size=chunk_size)[0],
                  chunk_linear_attn(t(q), t(k), t(v), normalize=False)[0]),
                 ("gla", gla(q, k, v, gate, form="triton", chunk_size=chunk_size)[0],
                  chunk_gla(t(q), t(k), t(v), t(gate))[0]),
                 ("simple_gla", simple_gla(q, k, v, head_gate, form="triton", chunk_size=chunk_size)[0],
                  chunk_simple_gla(t(q), t(k), t(v), head_gate.transpose(1, 2).contiguous())[0]))
        for name, ours, ref in pairs:
            ref = ref.transpose(1, 2).float()
            err = ((ours.float() - ref).norm() / ref.norm()).item()
            rows.append([name, "check", str(T), "triton vs fla output", "rel. error", f"{err:.1e}", ""])
    return rows


def compile_ours(B, H, T, D, chunk_size, forms=FORMS[:1]) -> str:
    """Run each of our ops once, forward + backward, in each of forms: Triton compiles their kernels
    into its disk cache (our kernels are not autotuned, and none is specialised on the length), so
    the timed run only loads them. A one-line summary."""
    t0 = time.time()
    done = []
    for name, form, (fn, inputs), _, _ in cases(B, H, T, D, chunk_size):
        if form not in forms or (name, form) in done:
            continue
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        done.append((name, form))
    torch.cuda.synchronize()
    return f"our kernels compiled ({', '.join(n for n, _ in done)}; {', '.join(forms)}) in {time.time() - t0:.0f} s"


def write_table(args, header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    versions = f"Triton {triton.__version__}" if triton else "no Triton"
    if FLA:
        versions += f" | flash-linear-attention {importlib.metadata.version('flash-linear-attention')}"
    args.out.write_text(
        f"## Linear attention forward+backward (B={args.batch}, H={args.heads}, D={args.dim}, bf16 inputs)\n\n"
        f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {versions} | {datetime.date.today()}\n\n"
        f"CUDA-event median of {args.iters} runs, chunk_size={args.chunk_size}"
        f"{'; ' + args.note if getattr(args, 'note', '') else ''}\n\n{table}\n")
    return table


def free() -> None:
    """Release cached memory; after a kernel fault the device raises on every call, which is
    already reported by the row that faulted."""
    try:
        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def fmt(x):
    return x if isinstance(x, str) else f"{x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="Markdown file to write the table to")
    # the goal's length first: a run cut short by its time limit (flash-linear-attention's first-call
    # autotuning can take minutes) keeps the rows that matter most
    ap.add_argument("--lengths", type=int, nargs="+", default=[32768, 8192, 2048])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--precompile-workers", type=int, default=min(16, os.cpu_count() or 1),
                    help="processes that compile fla's autotuned kernels in parallel before the timings, "
                    "unless an earlier run left fla's autotuning results in Triton's cache "
                    "(benchmarks/fla_precompile.py); 0: fla compiles them one by one at its first call")
    ap.add_argument("--forms", nargs="+", default=None, help="only these of our forms (e.g. triton; the compiled "
                    "chunk form spends about 100 s compiling)")
    ap.add_argument("--precompile-only", action="store_true", help="compile fla's kernels (with "
                    "--precompile-workers processes) and ours (the Triton form) at the shortest length, time "
                    "nothing, and exit; --out is then not needed")
    ap.add_argument("--note", default="", help="a line for the table's header (e.g. how the kernels were compiled)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("linear_attention_gpu.py needs a CUDA device")
    if args.out is None and not args.precompile_only:
        ap.error("--out is required (unless --precompile-only)")
    notes = [args.note] if args.note else []
    if not FLA:
        print(f"fla not installed ({FLA_ERROR})")
    elif args.precompile_workers > 0:
        from fla_precompile import precompile

        notes.append(precompile(args.precompile_workers, args.batch, args.heads, min(args.lengths), args.dim))
        print(notes[-1], flush=True)
    if args.precompile_only:
        print(compile_ours(args.batch, args.heads, min(args.lengths), args.dim, args.chunk_size), flush=True)
        return
    args.note = "; ".join(notes)
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, B={args.batch} H={args.heads} "
          f"D={args.dim} bf16 fwd+bwd, chunk_size={args.chunk_size}")
    header = ["op", "form", "T", "ours ms", "reference", "ref ms", "ours/ref"]
    rows = []
    for T in args.lengths:
        measured: dict[int, float | str] = {}  # id(fn) -> ms, so shared rows are timed once
        try:
            items = cases(args.batch, args.heads, T, args.dim, args.chunk_size)
        except Exception as exc:  # noqa: BLE001 - out of memory, or a device left broken by a failed kernel
            print(f"T={T}: building inputs failed: {type(exc).__name__}: {exc}")
            free()
            continue
        try:
            for row in agreement(args.batch, args.heads, T, args.dim, args.chunk_size):
                rows.append(row)
                print(" | ".join(row), flush=True)
        except Exception as exc:  # noqa: BLE001 - report and go on to the timings
            print(f"T={T}: check failed: {type(exc).__name__}: {exc}")
            free()
        for name, form, ours, ref_name, ref in items:
            if args.forms and form not in args.forms:
                continue

            def run(pair):
                if pair is None:
                    return "fla not installed"
                if id(pair) in measured:
                    return measured[id(pair)]
                t0 = time.time()
                try:
                    ms = time_fwd_bwd(pair[0], pair[1], args.warmup, args.iters)
                except torch.OutOfMemoryError:
                    ms = "OOM"
                except Exception as exc:  # noqa: BLE001 - report the row, keep going
                    traceback.print_exc(limit=2)
                    why = " ".join(str(exc).split())[:100].replace("|", "/")  # one line, no table pipes
                    ms = f"error: {type(exc).__name__}: {why}"
                free()
                measured[id(pair)] = ms
                print(f"  timed in {time.time() - t0:.1f}s", file=sys.stderr)
                return ms
            a, b = run(ours), run(ref)
            ratio = a / b if isinstance(a, float) and isinstance(b, float) else "-"
            row = [name, form, str(T), fmt(a), ref_name, fmt(b), fmt(ratio)]
            rows.append(row)
            print(" | ".join(row), flush=True)
            write_table(args, header, rows)  # after every row: a killed run keeps what it measured
        del items
        free()
    print(write_table(args, header, rows))


if __name__ == "__main__":
    main()

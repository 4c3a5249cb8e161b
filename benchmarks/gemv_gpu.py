"""Decoding matrix-vector products at the Llama-style 1.1B model's shapes: archlab's Triton kernel
(ops/gemv, plain and with the norm / SwiGLU / residual fused in) beside cuBLAS (F.linear), and the
separate PyTorch ops the fused forms replace, in the same run.

Each figure is the median per-call time over CUDA-graph replays of one call per weight copy, the
copies rotating through more than 600 MB so that no weight is read from L2 (a decoding step
reads each weight once). Bandwidth counts the weight bytes only.

    python benchmarks/gemv_gpu.py [--out gemv.md] [--sweep]

--sweep also times the bare kernel over launch shapes (rows per program, K tile, warps): the
sweep the kernel's defaults come from.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import device_line, emit, md_table

from archlab.ops.gemv import gemv, gemv_reference

# (name, weight rows N, K, fused extras)
SHAPES = [("q/k/v (+ RMSNorm)", 3072, 2048, dict(norm=True)), ("output (+ residual)", 2048, 2048, dict(residual=True)),
          ("gate/up (+ RMSNorm, SwiGLU)", 16384, 2048, dict(norm=True, swiglu=True)),
          ("down (+ residual)", 2048, 8192, dict(residual=True)), ("head (+ final RMSNorm)", 32000, 2048, dict(norm=True))]


def graph_us(calls) -> float:
    """Median microseconds per call over replays of a CUDA graph holding ``calls`` in order."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for c in calls:
            c()
    for _ in range(3):
        g.replay()
    times = []
    for _ in range(15):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2] * 1e3 / len(calls)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, N, K, extra in SHAPES:
        nbytes = N * K * 2
        ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) / K**0.5 for _ in range(max(2, int(6e8 // nbytes)))]
        x = torch.randn(K, device="cuda", dtype=torch.bfloat16)
        kw = {}
        if extra.get("norm"):
            kw["norm_weight"] = torch.rand(K, device="cuda", dtype=torch.bfloat16) + 0.5
        if extra.get("residual"):
            kw["residual"] = torch.randn(N, device="cuda", dtype=torch.bfloat16)
        kw["swiglu"] = extra.get("swiglu", False)
        ref = gemv_reference(x, ws[0], **kw).float()
        err = ((gemv(x, ws[0], form="triton", **kw).float() - ref).norm() / ref.norm()).item()
        cublas = graph_us([lambda w=w: F.linear(x, w) for w in ws])
        plain = graph_us([lambda w=w: gemv(x, w, form="triton") for w in ws])
        separate = graph_us([lambda w=w: gemv_reference(x, w, **kw) for w in ws])
        fused = graph_us([lambda w=w: gemv(x, w, form="triton", **kw) for w in ws])
        gbs = lambda us: f"{nbytes / us / 1e3:,.0f}"  # noqa: E731 - GB/s of the weight bytes
        rows.append([name, f"{nbytes / 1e6:.1f}", f"{cublas:.1f} ({gbs(cublas)})", f"{plain:.1f} ({gbs(plain)})",
                     f"{cublas / plain:.2f}x", f"{separate:.1f}", f"{fused:.1f}", f"{separate / fused:.2f}x", f"{err:.1e}"])
        if args.sweep:
            from archlab.ops.gemv.triton_gemv import _gemv
            import triton

            y = torch.empty(N, device="cuda", dtype=torch.bfloat16)
            best = None
            for bn in (4, 8, 16, 32):
                for bk in (256, 512):
                    for warps in (4, 8):
                        def call(w, bn=bn, bk=bk, warps=warps):
                            _gemv[(triton.cdiv(N, bn),)](x, w, y, x, x, N, K, 1e-6, False, False, False, bn, bk,
                                                         num_warps=warps)
                        us = graph_us([lambda w=w: call(w) for w in ws])
                        best = min(best or (us, bn, bk, warps), (us, bn, bk, warps))
            print(f"sweep {name}: best {best[0]:.1f} us with rows/program {best[1]}, K tile {best[2]}, {best[3]} warps",
                  flush=True)
        del ws
        torch.cuda.empty_cache()
    text = (f"{device_line()}\n\nbf16, one token; microseconds per call (GB/s of weight bytes) under CUDA-graph replay, "
            "weights rotated out of L2\n\n"
            + md_table(rows, ["product", "weights MB", "cuBLAS us (GB/s)", "archlab plain us (GB/s)", "plain vs cuBLAS",
                              "separate ops us", "archlab fused us", "fused vs separate", "fused rel. error"]))
    emit("Decoding matrix-vector products (Llama-style 1.1B shapes)", text, args.out)


if __name__ == "__main__":
    main()

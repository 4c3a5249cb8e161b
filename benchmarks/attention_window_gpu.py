"""Sliding-window attention (W=1024) through flex_attention vs full causal SDPA, fwd+bwd.

B=4, H=16, D=128, bf16, T in {8k, 32k}. Also checks flex against SDPA with the window as an
explicit mask at 8k (the exact same function) before timing.

    python benchmarks/attention_window_gpu.py [--out window.md]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import bench, device_line, emit, md_table

from archlab.attention.backends import flex_attention_backend
from archlab.attention.masks import MaskSpec

B, H, D, W = 4, 16, 128, 1024


def fwd_bwd(fn, q, k, v):
    def run():
        o = fn(q, k, v)
        o.backward(torch.ones_like(o))
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    spec = MaskSpec(window=W)
    for T in (8192, 32768):
        q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        pos = torch.arange(T, device="cuda").expand(B, T)
        flex = lambda q, k, v: flex_attention_backend(q, k, v, q_pos=pos, k_pos=pos, scale=D**-0.5, mask=spec)  # noqa: E731
        sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
        if T == 8192:
            vis = spec.visibility(pos[:1], pos[:1])  # [1, 1, T, T]
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=vis)
            err = ((flex(q, k, v) - ref).float().norm() / ref.float().norm()).item()
            rows.append([f"check T={T}", "flex vs SDPA+window mask", f"rel. error {err:.1e}", ""])
        t_flex = bench(fwd_bwd(flex, q, k, v), warmup=3, rep=10)
        t_sdpa = bench(fwd_bwd(sdpa, q, k, v), warmup=3, rep=10)
        rows.append([f"T={T}", f"{t_flex:.2f}", f"{t_sdpa:.2f}", f"{t_sdpa / t_flex:.1f}x"])
        del q, k, v
        torch.cuda.empty_cache()
    text = (f"{device_line()}\n\nB={B} H={H} D={D} bf16, forward+backward\n\n"
            + md_table(rows, ["length", "archlab flex window 1024 (ms)", "SDPA full causal (ms)", "speed-up"]))
    emit("Sliding-window attention vs full causal", text, args.out)


if __name__ == "__main__":
    main()

"""One MoE layer, forward + backward, at the OLMoE-1B-7B shape on one GPU, against transformers.

    PYTHONPATH=src python benchmarks/moe_gpu.py [--out moe.md]

Default shape: hidden 2048, 64 experts of 1024 (SwiGLU), top-8, 16,384 tokens, bfloat16. Rows:
transformers' ``OlmoeSparseMoeBlock`` (its default eager expert loop, and its ``grouped_mm``
experts implementation where the installed version has one), our MoE with each dispatch path, and
a large bf16 matmul as the ceiling. All MoE rows share one set of weights and inputs; before timing,
our grouped output and gradients are checked against our reference loop (and transformers) in bf16.

FLOPs counted (routed experts only, as for the published 186 TFLOP/s figure): forward
3 matmuls x 2 x C x I x top_k per token; forward + backward 3 times that. Times: CUDA events,
median of ``--iters`` runs after ``--warmup``. A row that fails prints its error and the rest run.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback

import torch


def _time(fn, warmup: int, iters: int) -> float:
    """Median milliseconds of fn() over iters runs, each between two CUDA events (wall clock on
    the CPU, where --device cpu serves as a quick smoke test of the script)."""
    from archlab.bench.timing import median_ms

    return median_ms(fn, torch.device(_DEVICE[0]), warmup=warmup, rep=iters)


_DEVICE = ["cuda"]


def _fwd_bwd(module, x, grad_out):
    params = [p for p in module.parameters() if p.requires_grad]

    def step():
        y = module(x)
        y = y[0] if isinstance(y, tuple) else y
        torch.autograd.grad(y, [x, *params], grad_out)

    return step


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--expert-hidden", type=int, default=1024)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", help="also write the table to this markdown file")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of our grouped path")
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test at tiny sizes)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("moe_gpu.py needs a CUDA GPU (or --device cpu for a smoke test)", file=sys.stderr)
        return 2
    _DEVICE[0] = args.device

    import transformers
    from transformers.models.olmoe.modeling_olmoe import OlmoeConfig, OlmoeSparseMoeBlock

    from archlab.moe import MoE, MoEConfig
    from archlab.ops.moe_dispatch import grouped_mm_support

    t_start = time.time()
    dev, dt = torch.device(args.device), torch.bfloat16
    N, C, E, I, K = args.tokens, args.hidden, args.experts, args.expert_hidden, args.top_k
    torch.manual_seed(0)
    hf_cfg = OlmoeConfig(hidden_size=C, intermediate_size=I, num_experts=E, num_experts_per_tok=K,
                         norm_topk_prob=False, hidden_act="silu")
    hf = OlmoeSparseMoeBlock(copy.deepcopy(hf_cfg)).to(dev, dt)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(std=0.02)
    cfg = MoEConfig(num_experts=E, top_k=K, expert_hidden=I, router="softmax_topk")
    ours = MoE(cfg, C).to(dev, dt)
    ours.load_state_dict({k.replace("gate.", "router.", 1) if k.startswith("gate.") else k: v
                          for k, v in hf.state_dict().items()})
    x = torch.randn(1, N, C, device=dev, dtype=dt, requires_grad=True)
    grad_out = torch.randn(1, N, C, device=dev, dtype=dt)
    flops = 3 * (3 * 2 * C * I * K) * N  # forward + backward, routed experts only

    def with_dispatch(d):
        m = copy.copy(ours)  # shares parameters; only the config differs
        m.cfg = cfg.replace(dispatch=d)
        return m

    device_name = torch.cuda.get_device_name() if dev.type == "cuda" else "CPU"
    print(f"{device_name}; torch {torch.__version__}; transformers {transformers.__version__}; "
          f"grouped_mm: {grouped_mm_support(x[0], ours.experts.gate_up_proj, ours.experts.down_proj) or 'available'}")
    print(f"shape: {N} tokens, hidden {C}, {E} experts of {I}, top-{K}, bf16; {flops / 1e12:.3f} TFLOP fwd+bwd")

    # correctness before timing: our grouped path against our reference loop in bf16 (output and
    # every gradient), and our layer against transformers in float32 on the first 1024 tokens
    # (in bf16 transformers rounds the router logits to bf16, so near-tie tokens pick other experts)
    checks = []
    try:
        outs = {}
        for name, mod in (("reference", with_dispatch("reference")), ("auto", with_dispatch("auto"))):
            xx = x.detach().clone().requires_grad_()
            y = mod(xx)
            outs[name] = (y, *torch.autograd.grad(y, [xx, *mod.parameters()], grad_out))
        rel_auto = max(_rel(a, b) for a, b in zip(outs["auto"], outs["reference"]))
        del outs
        x32 = x[:, : min(N, 1024)].detach().float()
        hf32, ours32 = copy.deepcopy(hf).float(), copy.deepcopy(ours).float()
        with torch.no_grad():
            y_hf = hf32(x32)
            rel_hf = _rel(ours32(x32), y_hf[0] if isinstance(y_hf, tuple) else y_hf)
        del hf32, ours32
        checks.append(f"bf16: grouped vs reference loop (output and all gradients, max rel. error): {rel_auto:.2e}")
        checks.append(f"float32: ours vs transformers (output, rel. error): {rel_hf:.2e}")
        ok = rel_auto < 2e-2 and rel_hf < 1e-3
        checks.append("check: " + ("PASS" if ok else "FAIL (tolerance 2e-2 in bf16, 1e-3 in float32)"))
    except Exception as e:  # noqa: BLE001 - keep going, report
        checks.append(f"check: ERROR {type(e).__name__}: {e}")
    print("\n".join(checks))

    rows: list[tuple[str, float | None, str]] = []

    def row(name, fn_builder):
        try:
            ms = _time(fn_builder(), args.warmup, args.iters)
            rows.append((name, ms, ""))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            rows.append((name, None, f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        print(f"  {name}: {rows[-1][1] if rows[-1][1] is not None else rows[-1][2]}", flush=True)

    row("transformers OlmoeSparseMoeBlock (eager)", lambda: _fwd_bwd(hf, x, grad_out))

    def hf_grouped():
        m = OlmoeSparseMoeBlock(copy.deepcopy(hf_cfg)).to(dev, dt)
        m.load_state_dict(hf.state_dict())
        m.experts.config._experts_implementation = "grouped_mm"
        return _fwd_bwd(m, x, grad_out)

    row("transformers OlmoeSparseMoeBlock (grouped_mm)", hf_grouped)
    row("archlab MoE, dispatch=reference (loop)", lambda: _fwd_bwd(with_dispatch("reference"), x, grad_out))
    row("archlab MoE, dispatch=bmm (padded)", lambda: _fwd_bwd(with_dispatch("bmm"), x, grad_out))
    row("archlab MoE, dispatch=grouped_mm", lambda: _fwd_bwd(with_dispatch("grouped_mm"), x, grad_out))

    def compiled():
        # torch.compile fuses the routing, the SwiGLU and the scaling around the two grouped GEMMs
        eager, m = with_dispatch("grouped_mm"), torch.compile(with_dispatch("grouped_mm"))
        xx = x.detach().clone().requires_grad_()
        got = (m(xx), *torch.autograd.grad(m(xx), [xx, *m.parameters()], grad_out))
        want = (eager(xx), *torch.autograd.grad(eager(xx), [xx, *eager.parameters()], grad_out))
        checks.append(f"bf16: compiled vs eager grouped (output and all gradients, max rel. error): "
                      f"{max(_rel(a, b) for a, b in zip(got, want)):.2e}")
        return _fwd_bwd(m, x, grad_out)

    if dev.type == "cuda":
        row("archlab MoE, dispatch=grouped_mm, torch.compile", compiled)

    # the ceiling, measured in the same run
    n = 8192 if dev.type == "cuda" else 512
    a = torch.randn(n, n, device=dev, dtype=dt)
    b = torch.randn(n, n, device=dev, dtype=dt)
    mm_ms = _time(lambda: a @ b, 3, 10)
    mm_tflops = 2 * n**3 / mm_ms / 1e9
    del a, b

    base, base_grouped = rows[0][1], rows[1][1]
    lines = [
        f"MoE layer fwd+bwd on {device_name} (torch {torch.__version__}, transformers {transformers.__version__}): "
        f"{N} tokens, hidden {C}, {E} experts of {I}, top-{K}, bf16, {flops / 1e12:.3f} TFLOP routed-expert matmuls",
        "",
        "| path | ms | TFLOP/s | vs transformers eager | vs transformers grouped_mm | of bf16 matmul |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ms, err in rows:
        if ms is None:
            lines.append(f"| {name} | error: {err} | | | | |")
            continue
        tf = flops / ms / 1e9
        ratios = [f"{b / ms:.2f}x" if b else "n/a" for b in (base, base_grouped)]
        lines.append(f"| {name} | {ms:.2f} | {tf:.0f} | {ratios[0]} | {ratios[1]} | {tf / mm_tflops:.0%} |")
    lines.append(f"| bf16 matmul {n}^3 (ceiling) | {mm_ms:.3f} | {mm_tflops:.0f} | | | 100% |")
    lines += ["", *checks, f"wall time {time.time() - t_start:.0f} s"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("## MoE layer forward+backward, OLMoE shape\n\n" + table + "\n")

    if args.profile and dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        step = _fwd_bwd(with_dispatch("grouped_mm"), x, grad_out)
        step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    return 0


if __name__ == "__main__":
    sys.exit(main())

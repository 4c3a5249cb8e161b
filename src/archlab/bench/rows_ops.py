"""Layer and op rows, forward + backward: one MoE layer, linear attention, sliding-window
attention, each beside the reference at the same shape.

FLOPs counted (forward + backward = 3 x forward): MoE, the routed experts' three matmuls per
expert and token; attention, the two score/value matmuls over the keys each query sees;
linear attention's chunk form, its block scores, block outputs, q @ state and state update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archlab.bench.context import Context
from archlab.bench.result import Figure, Line, Section, attempt


def _fwd_bwd(fn, inputs: list[torch.Tensor], params: list[torch.Tensor] = ()):
    """One forward + backward of fn(*inputs) against a fixed random output gradient."""
    out = fn(*inputs)
    grad = torch.randn_like(out)
    del out
    wrt = [*inputs, *params]

    def step():
        torch.autograd.grad(fn(*inputs), wrt, grad)
    return step


def _timed(ctx: Context, step, flops: float) -> Figure:
    ms = ctx.time_ms(step)
    ctx.free()
    return Figure(ms, "ms", ctx.ceilings.of_matmul(flops / (ms * 1e-3)))


def moe(ctx: Context) -> Section:
    from archlab.moe import MoE, MoEConfig

    s, dev, dt = ctx.sizes, ctx.device, ctx.dtype
    N, C, E, I, K = s.moe_tokens, s.moe_hidden, s.experts, s.expert_hidden, s.top_k
    flops = 3 * (3 * 2 * C * I * K) * N
    torch.manual_seed(0)
    ours = MoE(MoEConfig(num_experts=E, top_k=K, expert_hidden=I, router="softmax_topk"), C).to(dev, dt)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(std=0.02)
    x = ctx.randn(1, N, C, grad=True)

    def run_ours():
        m = torch.compile(ours) if ctx.compile else ours
        return _timed(ctx, _fwd_bwd(m, [x], list(ours.parameters())), flops)

    def run_ref(experts: str):
        from transformers.models.olmoe.modeling_olmoe import OlmoeConfig, OlmoeSparseMoeBlock

        hf_cfg = OlmoeConfig(hidden_size=C, intermediate_size=I, num_experts=E, num_experts_per_tok=K,
                             norm_topk_prob=False, hidden_act="silu")
        hf_cfg._experts_implementation = experts
        hf = OlmoeSparseMoeBlock(hf_cfg).to(dev, dt)
        # the same weights, so both route the same tokens to the same experts
        hf.load_state_dict({("gate." + k[len("router."):]) if k.startswith("router.") else k: v
                            for k, v in ours.state_dict().items()})

        def fn(x):
            y = hf(x)
            return y[0] if isinstance(y, tuple) else y
        return _timed(ctx, _fwd_bwd(fn, [x], list(hf.parameters())), flops)

    mine = attempt(run_ours)
    how = f"dispatch {ours.cfg.dispatch}" + (", compiled" if ctx.compile else "")
    return Section("moe", f"one MoE layer, {N:,} tokens, width {C}, {E} experts of {I}, top-{K}, forward + backward", [
        Line(f"archlab MoE ({how})", mine, f"transformers OlmoeSparseMoeBlock (experts {impl})", attempt(lambda: run_ref(impl)))
        for impl in ("eager", "grouped_mm")
    ], [f"{flops / 1e12:.3g} TFLOP (routed-expert matmuls); ceiling: the measured matmul rate; transformers' models "
        "pick grouped_mm experts where the installed torch runs it"])


def _attention_flops(B: int, H: int, T: int, D: int, window: int | None = None) -> float:
    """Forward + backward FLOPs of causal attention: 4 D per visible (query, key) pair, x 3."""
    if window is None or window >= T:
        pairs = T * (T + 1) // 2
    else:
        pairs = window * T - window * (window - 1) // 2
    return 3 * 4 * D * pairs * B * H


def linear_attention(ctx: Context) -> Section:
    from archlab.ops.linear_attn import linear_attn
    from archlab.ops.linear_attn.common import triton_installed

    B, H, T, D = ctx.sizes.la_shape
    C = ctx.sizes.chunk
    form = "triton" if ctx.device.type == "cuda" and triton_installed() else "chunk"
    la_flops = 3 * B * H * T * (2 * C * D + 2 * C * D + 2 * D * D + 2 * D * D)
    qkv = [ctx.randn(B, H, T, D, grad=True) for _ in range(3)]

    def ours():
        return _timed(ctx, _fwd_bwd(lambda q, k, v: linear_attn(q, k, v, form=form, chunk_size=C)[0], qkv),
                      la_flops)

    def sdpa():
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
        return _timed(ctx, _fwd_bwd(fn, qkv), _attention_flops(B, H, T, D))

    mine = attempt(ours)
    lines = [Line(f"linear_attn, form {form}", mine, "SDPA causal", attempt(sdpa))]
    if ctx.device.type == "cuda":
        def fla():
            from fla.ops.linear_attn import chunk_linear_attn

            bthd = [x.detach().transpose(1, 2).contiguous().requires_grad_() for x in qkv]  # fla takes [B, T, H, D]
            return _timed(ctx, _fwd_bwd(lambda q, k, v: chunk_linear_attn(q, k, v, normalize=False)[0], bthd),
                          la_flops)
        lines.append(Line(f"linear_attn, form {form}", mine, "fla chunk_linear_attn", attempt(fla)))
    return Section("linear_attention", f"B={B} H={H} T={T:,} D={D}, chunk {C}, forward + backward", lines,
                   ["ceiling: the measured matmul rate; FLOPs: chunk form (linear attention) and causal pairs (SDPA)"])


def sliding_window(ctx: Context) -> Section:
    from archlab.attention.backends import BACKENDS, pick_backend
    from archlab.attention.masks import MaskSpec

    B, H, T, D = ctx.sizes.win_shape
    W = ctx.sizes.window
    spec = MaskSpec(window=W)
    backend = pick_backend("auto", softcap=None, mask=spec, device=ctx.device, cached=False)
    attend = BACKENDS.get(backend)
    pos = torch.arange(T, device=ctx.device).expand(B, T)
    qkv = [ctx.randn(B, H, T, D, grad=True) for _ in range(3)]

    def ours():
        fn = lambda q, k, v: attend(q, k, v, q_pos=pos, k_pos=pos, scale=D**-0.5, mask=spec)  # noqa: E731
        return _timed(ctx, _fwd_bwd(fn, qkv), _attention_flops(B, H, T, D, W))

    def full():
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
        return _timed(ctx, _fwd_bwd(fn, qkv), _attention_flops(B, H, T, D))

    return Section("sliding_window", f"B={B} H={H} T={T:,} D={D}, window {W}, forward + backward", [
        Line(f"archlab attention, window {W} (backend {backend})", attempt(ours), "SDPA full causal", attempt(full)),
    ], ["ceiling: the measured matmul rate; FLOPs: the (query, key) pairs each side needs"])

"""Whole-model rows: a training step and greedy decoding of a Llama-style model, beside
transformers' LlamaForCausalLM of the same shape."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import archlab
from archlab.bench.context import Context
from archlab.bench.result import Figure, Line, Section, attempt
from archlab.bench.timing import wall_s


def llama_config(ctx: Context):
    s = ctx.sizes
    return archlab.presets.get("llama-3-debug").replace(
        vocab_size=s.vocab, d_model=s.d_model, n_layers=s.n_layers, tie_embeddings=False,
        **{"attention.heads": s.heads, "attention.kv_heads": s.kv_heads, "attention.head_dim": s.head_dim,
           "ffn.hidden": s.ffn, "position.max_positions": max(4096, s.train_len, s.prompt + s.new_tokens)},
    )


def hf_llama(cfg, ctx: Context):
    """transformers' LlamaForCausalLM of the same shape (random weights, SDPA attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn.hidden,
                         num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.attention.heads,
                         num_key_value_heads=cfg.attention.n_kv, head_dim=cfg.attention.dim(cfg.d_model),
                         max_position_embeddings=cfg.position.max_positions, tie_word_embeddings=False,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(ctx.device):
        return LlamaForCausalLM(hf_cfg).to(ctx.dtype)


def _model_shape(cfg) -> str:
    return (f"Llama-style, width {cfg.d_model}, {cfg.n_layers} layers, {cfg.attention.heads} heads "
            f"({cfg.attention.n_kv} KV), MLP {cfg.ffn.hidden}, vocabulary {cfg.vocab_size}")


def _training_step(model, opt, ids, loss_of):
    def step():
        loss_of(model, ids[:, :-1], ids[:, 1:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def training_rate(ctx: Context, build, loss_of, ids: torch.Tensor, flops_per_token: float, *,
                  compile: bool | None = None, mode: str | None = None) -> Figure:
    """Tokens/s of an AdamW training step on ``ids`` [B, T+1] (compiled where ctx says so, or
    ``compile``; ``mode``: torch.compile's), and its fraction of the measured matmul rate."""
    model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=ctx.device.type == "cuda")
    compiled = ctx.compile if compile is None else compile
    step = _training_step(torch.compile(model, mode=mode) if compiled else model, opt, ids, loss_of)
    try:
        tps = ids.shape[0] * (ids.shape[1] - 1) / (ctx.time_ms(step) * 1e-3)
    finally:
        del model, opt, step
        ctx.free()
    return Figure(tps, "tokens/s", ctx.ceilings.of_matmul(tps * flops_per_token))


def train_step(ctx: Context) -> Section:
    s, dev = ctx.sizes, ctx.device
    cfg = llama_config(ctx)
    B, T = s.train_batch, s.train_len
    flops_tok = 3 * archlab.flops_per_token(cfg, T)
    ids = torch.randint(0, cfg.vocab_size, (B, T + 1), device=dev)

    def measure(build, loss_of) -> Figure:
        return training_rate(ctx, build, loss_of, ids, flops_tok)

    def hf_loss(m, x, y):
        return F.cross_entropy(m(input_ids=x).logits.float().flatten(0, 1), y.flatten())

    def ours_build():
        torch.manual_seed(0)
        return archlab.build(cfg, device=dev, dtype=ctx.dtype)

    # ours: the model's loss path (chunked head + cross-entropy, no [B, T, V] float32 logits)
    ours = attempt(lambda: measure(ours_build, lambda m, x, y: m(x, targets=y)))
    ref = attempt(lambda: measure(lambda: hf_llama(cfg, ctx), hf_loss))
    how = "compiled" if ctx.compile else "eager"
    return Section("train_step", f"{_model_shape(cfg)}; batch {B} x {T}, AdamW",
                   [Line(f"training step ({how})", ours, f"transformers LlamaForCausalLM ({how}) + cross-entropy", ref)],
                   [f"{flops_tok / 1e9:.3g} GFLOP/token (3 x forward matmuls); ceiling: the measured matmul rate"])


def decode(ctx: Context) -> Section:
    from archlab.decode import GraphDecoder

    s, dev = ctx.sizes, ctx.device
    P, N = s.prompt, s.new_tokens
    cfg = llama_config(ctx)
    torch.manual_seed(0)
    model = archlab.build(cfg, device=dev, dtype=ctx.dtype).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, P), device=dev)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    step_bytes = weight_bytes + archlab.cache_bytes(cfg, P + N // 2, 1, ctx.dtype)
    roofline = ctx.ceilings.copy_gbs * 1e9 / step_bytes  # tokens/s if each step only read its bytes once

    def rate(run) -> Figure:
        run(min(8, N))  # warm-up: allocations, capture, compilation
        tps = N / wall_s(lambda: run(N), dev)
        return Figure(tps, "tokens/s", tps / roofline)

    def ours_generate(n):
        return archlab.generate(model, ids, n)

    def ours_graph():
        dec = GraphDecoder(model, 1, P + N, compile=ctx.compile)
        return rate(lambda n: dec.generate(ids, n))

    hf_state: dict = {}

    def ref_generate():
        if "model" not in hf_state:
            hf_state["model"] = hf_llama(cfg, ctx).eval()
        hf = hf_state["model"]
        mask = torch.ones_like(ids)

        def run(n):
            with torch.no_grad():
                hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                            pad_token_id=0)
        return rate(run)

    ref = attempt(ref_generate)  # once: both lines compare with the same transformers figure
    hf_state.clear()
    ctx.free()
    ours_dyn = attempt(lambda: rate(ours_generate))  # before GraphDecoder packs the projections
    graph = "CUDA graph" + (" + compiled step" if ctx.compile else "") if dev.type == "cuda" else "eager steps"
    ours_static = attempt(ours_graph)
    ref_name = "transformers generate (dynamic cache)"
    return Section("decode", f"{_model_shape(cfg)}; greedy, batch 1, prompt {P}, {N} new tokens", [
        Line(f"GraphDecoder (static cache, {graph})", ours_static, ref_name, ref),
        Line("archlab.generate (dynamic cache)", ours_dyn, ref_name, ref),
    ], [f"ceiling: bandwidth roofline {roofline:,.0f} tokens/s = copy bandwidth / (weights {weight_bytes / 1e6:,.1f} MB "
        f"+ cache at the mean context {(step_bytes - weight_bytes) / 1e6:,.2f} MB)"])

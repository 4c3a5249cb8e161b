"""A Mamba-2 language model's training step, beside transformers' Mamba2ForCausalLM of the same shape."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import archlab
from archlab.bench.context import Context
from archlab.bench.result import Figure, Line, Section, attempt
from archlab.bench.rows_model import training_rate


def mamba2_config(ctx: Context):
    s = ctx.sizes
    return archlab.presets.get("mamba2-debug").replace(
        vocab_size=s.ssm_vocab, d_model=s.ssm_d_model, n_layers=s.ssm_layers, tie_embeddings=True,
        **{"ssm.d_state": s.ssm_state, "ssm.head_dim": s.ssm_head_dim})


def ssm_train(ctx: Context) -> Section:
    from archlab.interop import to_hf_config

    s, dev = ctx.sizes, ctx.device
    cfg = mamba2_config(ctx)
    B, T = s.ssm_batch, s.ssm_len
    ids = torch.randint(0, cfg.vocab_size, (B, T + 1), device=dev)
    flops_tok = 3 * archlab.flops_per_token(cfg, T)

    def measure(build, loss_of, **how) -> Figure:
        return training_rate(ctx, build, loss_of, ids, flops_tok, **how)

    def ours_build():
        torch.manual_seed(0)
        return archlab.build(cfg, device=dev, dtype=ctx.dtype)

    def hf_build():
        from transformers import Mamba2ForCausalLM

        torch.manual_seed(0)
        with torch.device(dev):
            return Mamba2ForCausalLM(to_hf_config(cfg)).to(ctx.dtype)

    def hf_loss(m, x, y):
        return F.cross_entropy(m(input_ids=x).logits.float().flatten(0, 1), y.flatten())

    # ours: compiled with CUDA graphs on CUDA (at batch 1 the step is otherwise partly bound by the
    # host's launch rate; the SSD runs in its Triton kernels there, ssm.backend auto)
    graphs = "reduce-overhead" if ctx.compile else None
    ours = attempt(lambda: measure(ours_build, lambda m, x, y: m(x, targets=y), mode=graphs))
    ref, ref_how = attempt(lambda: measure(hf_build, hf_loss)), "compiled" if ctx.compile else "eager"
    if ctx.compile and not isinstance(ref, Figure):  # transformers' Mamba-2 does not compile everywhere
        ref_how = f"eager; compiled {ref.removeprefix('failed: ')}"
        ref = attempt(lambda: measure(hf_build, hf_loss, compile=False))
    how = "compiled, CUDA graphs" if ctx.compile else "eager"
    c = cfg.ssm
    shape = (f"Mamba-2, width {cfg.d_model}, {cfg.n_layers} layers, state {c.d_state}, head dim {c.head_dim}, "
             f"vocabulary {cfg.vocab_size}; batch {B} x {T}, AdamW")
    return Section("ssm_train", shape, [
        Line(f"training step ({how})", ours,
             f"transformers Mamba2ForCausalLM (its PyTorch path, {ref_how}) + cross-entropy", ref),
    ], [f"{flops_tok / 1e9:.3g} GFLOP/token (3 x forward; the scan counted in its recurrent form); "
        "ceiling: the measured matmul rate"])

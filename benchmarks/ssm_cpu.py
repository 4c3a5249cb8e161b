"""CPU benchmark: our Mamba / Mamba-2 language models against transformers' pure-PyTorch path.

Both models are built from a config (no download) with the same weights (ours copied from
transformers'), checked to give the same logits, then timed in the same run: forward and
forward+backward (loss = logits mean), wall clock, median of --repeats runs (one run for
transformers' Mamba-1 forward+backward, which takes minutes at the full size).

    python benchmarks/ssm_cpu.py            # 4 layers, hidden 256, 4 x 512 tokens (the shape in FINDINGS.md)
    python benchmarks/ssm_cpu.py --quick    # 2 layers, hidden 128, 2 x 128 tokens

Shapes: B batch, T time, C model width, V vocabulary.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from archlab.ssm import SSMConfig, build_ssm_mixer


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

    def forward(self, ids):
        x = self.embedding(ids)  # [B, T, C]
        for block in self.layers:
            x = block(x)
        return F.linear(self.norm_f(x), self.embedding.weight)  # [B, T, V]


def _copy_from_hf(ours: TinyLM, hf) -> None:
    sd = {}
    for k, v in hf.state_dict().items():
        k = k.removeprefix("backbone.")
        if k.startswith("lm_head"):
            continue
        sd[k.replace("embeddings.", "embedding.")] = v
    ours.load_state_dict(sd, strict=True)


def build_pair(kind: str, d_model: int, layers: int, vocab: int, chunk: int | None):
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    if kind == "mamba":
        hc = MambaConfig(hidden_size=d_model, num_hidden_layers=layers, vocab_size=vocab, state_size=16,
                         expand=2, conv_kernel=4, use_mambapy=False)
        hf = MambaForCausalLM(hc)
        cfg = SSMConfig(kind="mamba", d_state=16, dt_rank=hc.time_step_rank, chunk_size=chunk)
    else:
        hc = Mamba2Config(hidden_size=d_model, num_hidden_layers=layers, vocab_size=vocab, state_size=128,
                          expand=2, head_dim=64, num_heads=2 * d_model // 64, n_groups=1, conv_kernel=4,
                          chunk_size=256, tie_word_embeddings=True)
        hf = Mamba2ForCausalLM(hc)
        cfg = SSMConfig(kind="mamba2", d_state=128, head_dim=64, n_groups=1, chunk_size=chunk)
    with torch.no_grad():  # off the init values, so that a mapping error would show in the logits check
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ours = TinyLM(cfg, d_model, layers, vocab)
    _copy_from_hf(ours, hf)
    return ours.train(), hf.train(), cfg


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) over ``repeats`` runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def _fwd(model, ids, hf: bool):
    with torch.no_grad():
        return model(ids).logits if hf else model(ids)


def _fwd_bwd(model, ids, hf: bool):
    out = model(ids)
    (out.logits if hf else out).float().mean().backward()
    model.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 layers, hidden 128, 2 x 128 tokens")
    ap.add_argument("--kinds", default="mamba,mamba2")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median)")
    ap.add_argument("--hf-repeats", type=int, default=3, help="timed runs of transformers (median); its Mamba-1 fwd+bwd runs once")
    ap.add_argument("--chunk", type=int, default=None, help="our chunk size (default: the config default)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers, d_model, batch, T, vocab = (2, 128, 2, 128, 1024) if args.quick else (4, 256, 4, 512, 1024)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {layers} layers, hidden {d_model}, "
          f"{batch} x {T} tokens, vocab {vocab}")
    rows = []
    for kind in args.kinds.split(","):
        ours, hf, cfg = build_pair(kind, d_model, layers, vocab, args.chunk)
        ids = torch.randint(0, vocab, (batch, T), generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            diff = (_fwd(ours, ids, False) - _fwd(hf, ids, True)).abs().max().item()
            _fwd_bwd(ours, ids, False)  # warm-up
            t_ours_f = _time(lambda: _fwd(ours, ids, False), args.repeats)
            t_hf_f = _time(lambda: _fwd(hf, ids, True), args.hf_repeats)
            t_ours_fb = _time(lambda: _fwd_bwd(ours, ids, False), args.repeats)
            hf_fb_repeats = 1 if kind == "mamba" and not args.quick else args.hf_repeats
            t_hf_fb = _time(lambda: _fwd_bwd(hf, ids, True), hf_fb_repeats)
        name = f"{kind} (ours chunk {cfg.chunk}; logits max diff {diff:.1e})"
        rows.append((name, "forward", t_ours_f, t_hf_f))
        rows.append((name, "forward+backward", t_ours_fb, t_hf_fb))
    print("\n| model | pass | ours CPU s | transformers CPU s | ratio | ours wall s | transformers wall s | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, what, a, b in rows:
        print(f"| {name} | {what} | {a[0]:.3f} | {b[0]:.3f} | {b[0] / a[0]:.1f}x | {a[1]:.3f} | {b[1]:.3f} | {b[1] / a[1]:.1f}x |")
    print("ratio = transformers / ours (higher: ours faster)")


if __name__ == "__main__":
    main()

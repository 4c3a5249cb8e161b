"""The shapes each row runs at: ``full`` (one large GPU: the shapes of the GPU benchmarks),
``small`` (seconds per row on a laptop CPU) and ``tiny`` (the test suite)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    # Llama-style model (train_step, decode)
    d_model: int
    n_layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    train_batch: int
    train_len: int
    prompt: int
    new_tokens: int
    # one MoE layer: tokens, width, experts of expert_hidden, top_k
    moe_tokens: int
    moe_hidden: int
    experts: int
    expert_hidden: int
    top_k: int
    # linear attention [B, H, T, D] and its chunk size
    la_shape: tuple[int, int, int, int]
    chunk: int
    # sliding-window attention [B, H, T, D] and the window
    win_shape: tuple[int, int, int, int]
    window: int
    # Mamba-2 model (ssm_train): width, layers, state size, head dim, vocabulary, batch, length
    ssm_d_model: int
    ssm_layers: int
    ssm_state: int
    ssm_head_dim: int
    ssm_vocab: int
    ssm_batch: int
    ssm_len: int
    # ceilings and timing
    matmul_n: int
    copy_bytes: int
    warmup: int
    rep: int


SIZES = {
    "full": Sizes(d_model=2048, n_layers=16, heads=32, kv_heads=8, head_dim=64, ffn=8192, vocab=32000,
                  train_batch=4, train_len=2048, prompt=128, new_tokens=256,
                  moe_tokens=16384, moe_hidden=2048, experts=64, expert_hidden=1024, top_k=8,
                  la_shape=(4, 16, 8192, 128), chunk=64, win_shape=(4, 16, 32768, 128), window=1024,
                  ssm_d_model=2048, ssm_layers=16, ssm_state=128, ssm_head_dim=64, ssm_vocab=50288, ssm_batch=1,
                  ssm_len=2048, matmul_n=8192, copy_bytes=2 << 30, warmup=3, rep=10),
    "small": Sizes(d_model=256, n_layers=4, heads=4, kv_heads=2, head_dim=64, ffn=1024, vocab=8192,
                   train_batch=1, train_len=512, prompt=64, new_tokens=64,
                   moe_tokens=1024, moe_hidden=256, experts=8, expert_hidden=512, top_k=2,
                   la_shape=(1, 4, 1024, 64), chunk=64, win_shape=(1, 4, 2048, 64), window=256,
                   ssm_d_model=256, ssm_layers=4, ssm_state=64, ssm_head_dim=32, ssm_vocab=8192, ssm_batch=1,
                   ssm_len=512, matmul_n=1024, copy_bytes=64 << 20, warmup=2, rep=3),
    "tiny": Sizes(d_model=64, n_layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256,
                  train_batch=2, train_len=32, prompt=8, new_tokens=8,
                  moe_tokens=64, moe_hidden=64, experts=4, expert_hidden=32, top_k=2,
                  la_shape=(1, 2, 128, 16), chunk=32, win_shape=(1, 2, 128, 16), window=32,
                  ssm_d_model=64, ssm_layers=2, ssm_state=16, ssm_head_dim=16, ssm_vocab=256, ssm_batch=1,
                  ssm_len=32, matmul_n=256, copy_bytes=4 << 20, warmup=2, rep=2),
}

"""State-space families and hybrids: Mamba, Mamba-2, Jamba (attention 1:7 with MoE every
other layer), Samba-style (Mamba + sliding-window attention alternating) and Zamba-style
(a Mamba backbone with one attention block whose weights are shared across depths)."""
from archlab.attention.config import AttentionConfig
from archlab.config import LayerPlan, LayerSpec, ModelConfig
from archlab.ffn import FFNConfig
from archlab.moe.config import MoEConfig
from archlab.norm import NormConfig
from archlab.position.config import PositionConfig
from archlab.presets import preset
from archlab.ssm.config import SSMConfig


def mamba(*, d_model: int, n_layers: int, vocab: int, kind: str = "mamba", eps: float = 1e-5, tie: bool = True,
          **ssm) -> ModelConfig:
    """A stack of Mamba (or Mamba-2) blocks: RMSNorm + mixer, no FFN, no positional encoding."""
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=1, head_dim=d_model),  # unused: no attention layer
        position=PositionConfig(kind="none"),
        ssm=SSMConfig(kind=kind, **ssm),
        norm=NormConfig(kind="rmsnorm", eps=eps, placement="pre"),
        plan=LayerPlan(pattern="M"), tie_embeddings=tie,
    )


# state-spaces/mamba-*: d_state 16, conv 4, expand 2, dt_rank ceil(d_model / 16), vocabulary 50280, tied
def _mamba1(d_model: int, n_layers: int) -> ModelConfig:
    return mamba(d_model=d_model, n_layers=n_layers, vocab=50280, d_state=16, d_conv=4, expand=2,
                 dt_rank=-(-d_model // 16))


@preset("mamba-130m")
def mamba_130m() -> ModelConfig:
    return _mamba1(768, 24)


@preset("mamba-370m")
def mamba_370m() -> ModelConfig:
    return _mamba1(1024, 48)


@preset("mamba-790m")
def mamba_790m() -> ModelConfig:
    return _mamba1(1536, 48)


@preset("mamba-1.4b")
def mamba_1_4b() -> ModelConfig:
    return _mamba1(2048, 48)


@preset("mamba-2.8b")
def mamba_2_8b() -> ModelConfig:
    return _mamba1(2560, 64)


@preset("mamba-debug")
def mamba_debug() -> ModelConfig:
    return mamba(d_model=64, n_layers=2, vocab=256, d_state=8, dt_rank=8)


# state-spaces/mamba2-*: d_state 128, conv 4, expand 2, head dim 64, one group, vocabulary 50288
def _mamba2(d_model: int, n_layers: int, tie: bool = True) -> ModelConfig:
    return mamba(d_model=d_model, n_layers=n_layers, vocab=50288, kind="mamba2", tie=tie, d_state=128, d_conv=4,
                 expand=2, head_dim=64, n_groups=1)


@preset("mamba2-130m")
def mamba2_130m() -> ModelConfig:
    return _mamba2(768, 24)


@preset("mamba2-370m")
def mamba2_370m() -> ModelConfig:
    return _mamba2(1024, 48)


@preset("mamba2-780m")
def mamba2_780m() -> ModelConfig:
    return _mamba2(1536, 48)


@preset("mamba2-1.3b")
def mamba2_1_3b() -> ModelConfig:
    return _mamba2(2048, 48)


@preset("mamba2-2.7b")
def mamba2_2_7b() -> ModelConfig:
    # The checkpoint ties its head to the embedding, but transformers' Mamba2Config defaults to
    # tie_word_embeddings=False, so the published count (2,831,336,960) holds a second table.
    return _mamba2(2560, 64, tie=False)


@preset("mamba2-debug")
def mamba2_debug() -> ModelConfig:
    return mamba(d_model=64, n_layers=2, vocab=256, kind="mamba2", d_state=16, head_dim=16, n_groups=1)


# Jamba's period of 8: attention at offset 4, MoE at odd layers
JAMBA_LETTERS = {
    "m": LayerSpec(mixer="ssm", ffn="dense"), "n": LayerSpec(mixer="ssm", ffn="moe"),
    "A": LayerSpec(mixer="attention", ffn="dense"), "E": LayerSpec(mixer="attention", ffn="moe"),
}


def jamba(*, d_model: int, n_layers: int, heads: int, kv_heads: int, ffn: int, vocab: int, experts: int, dt_rank: int,
          d_state: int = 16) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, kv_heads=kv_heads),
        position=PositionConfig(kind="none"),
        ffn=FFNConfig(kind="swiglu", hidden=ffn),
        moe=MoEConfig(num_experts=experts, top_k=2, expert_hidden=ffn),
        ssm=SSMConfig(kind="mamba", d_state=d_state, d_conv=4, expand=2, dt_rank=dt_rank, dt_bc_norm=True, norm_eps=1e-6),
        norm=NormConfig(kind="rmsnorm", eps=1e-6, placement="pre"),
        plan=LayerPlan(pattern="mnmnAnmn", letters=JAMBA_LETTERS), tie_embeddings=False,
    )


@preset("jamba-v0.1")
def jamba_v0_1() -> ModelConfig:
    return jamba(d_model=4096, n_layers=32, heads=32, kv_heads=8, ffn=14336, vocab=65536, experts=16, dt_rank=256)


@preset("jamba-debug")
def jamba_debug() -> ModelConfig:
    return jamba(d_model=64, n_layers=8, heads=4, kv_heads=2, ffn=64, vocab=256, experts=4, dt_rank=8, d_state=8)


def samba(*, d_model: int, n_layers: int, heads: int, window: int, vocab: int) -> ModelConfig:
    """Samba (Ren et al. 2024): Mamba and sliding-window attention layers alternate, each
    followed by an MLP; no positional encoding besides RoPE in the attention layers."""
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads, window=window),
        position=PositionConfig(kind="rope"),
        ffn=FFNConfig(kind="swiglu", hidden=4 * d_model),
        ssm=SSMConfig(kind="mamba", d_state=16, expand=2),
        norm=NormConfig(kind="rmsnorm", eps=1e-5, placement="pre"),
        plan=LayerPlan(pattern="mA", letters={"m": LayerSpec(mixer="ssm", ffn="dense")}), tie_embeddings=True,
    )


@preset("samba-small")
def samba_small() -> ModelConfig:
    return samba(d_model=768, n_layers=12, heads=12, window=2048, vocab=32000)


@preset("samba-debug")
def samba_debug() -> ModelConfig:
    return samba(d_model=64, n_layers=4, heads=4, window=8, vocab=256)


def zamba(*, d_model: int, n_layers: int, heads: int, every: int, vocab: int) -> ModelConfig:
    """Zamba-style (Glorioso et al. 2024): Mamba blocks, and every ``every``-th layer one shared
    attention+MLP block whose weights are tied across all the depths where it appears (each
    depth keeps its own KV cache). Zamba also feeds the original embeddings into the shared
    block; this simplified form does not."""
    pattern = "M" * (every - 1) + "S"
    return ModelConfig(
        vocab_size=vocab, d_model=d_model, n_layers=n_layers,
        attention=AttentionConfig(heads=heads),
        position=PositionConfig(kind="rope"),
        ffn=FFNConfig(kind="swiglu", hidden=4 * d_model),
        ssm=SSMConfig(kind="mamba2", d_state=64, expand=2, head_dim=32 if d_model < 512 else 64),
        norm=NormConfig(kind="rmsnorm", eps=1e-5, placement="pre"),
        plan=LayerPlan(pattern=pattern, letters={"S": LayerSpec(mixer="attention", ffn="dense", tie="shared_attention")}),
        tie_embeddings=True,
    )


@preset("zamba-small")
def zamba_small() -> ModelConfig:
    return zamba(d_model=768, n_layers=24, heads=12, every=6, vocab=32000)


@preset("zamba-debug")
def zamba_debug() -> ModelConfig:
    return zamba(d_model=64, n_layers=6, heads=4, every=3, vocab=256)

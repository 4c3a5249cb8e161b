"""Multi-head latent attention: naive and absorbed paths equal the full forward, the absorbed
path never forms per-head K/V of cached tokens, and the whole model equals transformers'
DeepseekV3ForCausalLM (dense-only and with MoE layers) after a renaming of the weights."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import archlab
from archlab import presets
from archlab.attention import AttentionConfig, MLAConfig
from archlab.attention.mla import mla_scale
from archlab.config import ModelConfig
from archlab.errors import ConfigError
from archlab.ffn import FFNConfig
from archlab.position import PositionConfig

H, DN, DR, DV, R = 4, 8, 4, 6, 16


def mla_cfg(**over) -> ModelConfig:
    base = ModelConfig(
        vocab_size=97, d_model=32, n_layers=2, ffn=FFNConfig(hidden=48),
        attention=AttentionConfig(kind="mla", heads=H, mla=MLAConfig(kv_lora_rank=R, q_lora_rank=12, qk_nope_head_dim=DN,
                                                                     qk_rope_head_dim=DR, v_head_dim=DV)),
        position=PositionConfig(kind="rope", interleaved=True),
    )
    return base.replace(**over) if over else base


def perturbed(cfg: ModelConfig, dtype=torch.float32, seed: int = 0) -> archlab.Model:
    torch.manual_seed(seed)
    model = archlab.build(cfg, dtype=dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def with_path(model: archlab.Model, path: str) -> archlab.Model:
    w = model.embed.weight
    other = archlab.build(model.cfg.replace(**{"attention.mla.path": path}), device=w.device, dtype=w.dtype).eval()
    other.load_state_dict(model.state_dict())
    return other


VARIANTS = {
    "q_lora": {},
    "no_q_lora": {"attention.mla.q_lora_rank": None},
    "biases": {"attention.qkv_bias": True, "attention.out_bias": True},
    "eager": {"attention.backend": "eager"},
    "softcap": {"attention.softcap": 4.0},
    "alibi": {"position.kind": "alibi"},
    "t5_bias": {"position.kind": "t5"},
    "yarn": {"position.scaling.kind": "yarn", "position.scaling.factor": 4.0, "position.max_positions": 8,
             "position.scaling.mscale": 0.707, "position.scaling.mscale_all_dim": 0.707},
}


@pytest.mark.parametrize("path", ["naive", "absorbed"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_naive_and_absorbed_decoding_equal_the_full_forward(name, path):
    model = perturbed(mla_cfg(**VARIANTS[name]), torch.float64)
    ids = torch.randint(0, 97, (2, 8))
    prefills = (1, 4) if name == "q_lora" else (3,)
    with torch.no_grad():
        full = with_path(model, "naive")(ids)
        m = with_path(model, path)
        torch.testing.assert_close(m(ids), full, atol=1e-10, rtol=1e-10)
        for prefill in prefills:
            cache = m.new_cache(batch_size=2, max_len=10)
            outs = [m(ids[:, :prefill], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(prefill, 8)]
            torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-10, rtol=1e-10)


def test_paths_agree_in_float32_and_in_gradients():
    model = perturbed(mla_cfg())
    ids = torch.randint(0, 97, (2, 9))
    grads = {}
    for path in ("naive", "absorbed"):
        m = with_path(model, path)
        logits = m(ids)
        (logits * torch.linspace(-1, 1, 97)).sum().backward()
        grads[path] = (logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters()})
    torch.testing.assert_close(grads["absorbed"][0], grads["naive"][0], atol=2e-5, rtol=1e-4)
    for n, g in grads["naive"][1].items():
        torch.testing.assert_close(grads["absorbed"][1][n], g, atol=2e-5, rtol=1e-4, msg=n)


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


def _per_head_kv_of_cache(shapes, B, S) -> list[tuple[int, ...]]:
    """Tensors as large as per-head keys or values of the S cached tokens, with S among their dims."""
    smallest = B * H * S * min(DN, DV)
    return [s for s in shapes if S in s and math.prod(s) >= smallest]


@pytest.mark.parametrize("path", ["absorbed", "auto"])
def test_absorbed_decode_never_materialises_per_head_kv(path):
    B, S = 2, 37  # S: a length no weight dimension shares
    m = with_path(perturbed(mla_cfg()), path)
    ids = torch.randint(0, 97, (B, S))
    with torch.no_grad():
        cache = m.new_cache(batch_size=B, max_len=S)
        m(ids[:, :-1], cache=cache)
        with _Shapes() as rec:
            m(ids[:, -1:], cache=cache)
        assert _per_head_kv_of_cache(rec.shapes, B, S) == []
        # the naive path does form them: the detector works
        naive = with_path(m, "naive")
        cache = naive.new_cache(batch_size=B, max_len=S)
        naive(ids[:, :-1], cache=cache)
        with _Shapes() as rec:
            naive(ids[:, -1:], cache=cache)
        assert _per_head_kv_of_cache(rec.shapes, B, S)


def test_cache_holds_only_latent_and_rope_key():
    cfg = mla_cfg()
    m = perturbed(cfg)
    cache = m.new_cache(batch_size=3, max_len=10)
    layer = cache.layers[0]
    assert tuple(layer.kv.shape) == (3, 1, 10, R + DR)
    assert cache.nbytes() == 2 * 3 * 10 * (R + DR) * 4 == archlab.cache_bytes(cfg, 10, 3, torch.float32)
    assert archlab.cache_bytes_per_token(cfg, torch.bfloat16) == 2 * (R + DR) * 2


def test_params_and_flops_from_the_config():
    for over in ({}, {"attention.mla.q_lora_rank": None}, {"attention.qkv_bias": True, "attention.out_bias": True}):
        cfg = mla_cfg(**over)
        assert archlab.count_params(cfg).total == archlab.build(cfg).num_params()
    assert archlab.flops_per_token(mla_cfg(), 16) > 0


def test_softmax_scale_and_yarn_multiplier():
    assert mla_scale(mla_cfg()) == pytest.approx((DN + DR) ** -0.5)
    v3 = presets.get("deepseek-v3")
    assert mla_scale(v3) == pytest.approx(192 ** -0.5 * (0.1 * math.log(40) + 1) ** 2)
    assert mla_scale(mla_cfg(**{"attention.scale": 0.25})) == 0.25


def test_config_validation():
    with pytest.raises(ConfigError, match="attention.mla"):
        AttentionConfig(kind="mla")
    with pytest.raises(ConfigError, match="attention.mla"):
        AttentionConfig(mla=MLAConfig())
    with pytest.raises(ConfigError, match="attention.kv_heads"):
        AttentionConfig(kind="mla", mla=MLAConfig(), kv_heads=2)
    with pytest.raises(ConfigError, match="attention.window"):
        AttentionConfig(kind="mla", mla=MLAConfig(), window=16)
    with pytest.raises(ConfigError, match="qk_rope_head_dim"):
        MLAConfig(qk_rope_head_dim=3)
    with pytest.raises(ConfigError, match="q_lora_rank"):
        MLAConfig(q_lora_rank=0)
    cfg = ModelConfig().replace(**{"attention.kind": "mla", "attention.mla.kv_lora_rank": 8})
    assert cfg.attention.mla.kv_lora_rank == 8 and cfg.attention.dim(cfg.d_model) == 64
    assert ModelConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cache_dtype, bound", [("auto", 0.05), ("int8", 0.1), ("fp8", 0.5)])
def test_absorbed_decoding_on_gpu_in_bf16(cache_dtype, bound):
    model = perturbed(mla_cfg(**{"attention.cache_dtype": cache_dtype})).to("cuda", torch.bfloat16)
    ids = torch.randint(0, 97, (2, 24), device="cuda")
    with torch.no_grad():
        full = with_path(model, "naive")(ids).float()
        m = with_path(model, "auto")
        cache = m.new_cache(batch_size=2, max_len=24)
        outs = [m(ids[:, :8], cache=cache)] + [m(ids[:, t:t + 1], cache=cache) for t in range(8, 24)]
    err = (torch.cat(outs, 1).float() - full).abs().max() / full.std()
    assert err <= bound, float(err)


# -- transformers' DeepseekV3ForCausalLM --------------------------------------------------

def _hf_name(ours: str) -> str:
    for a, b in (("embed.", "model.embed_tokens."), ("final_norm.", "model.norm."), ("head.", "lm_head."),
                 ("blocks.", "model.layers."), (".mixer_norm.", ".input_layernorm."),
                 (".ffn_norm.", ".post_attention_layernorm."), (".mixer.", ".self_attn."),
                 (".ffn.router.", ".mlp.gate."), (".ffn.gate.", ".mlp.gate_proj."), (".ffn.up.", ".mlp.up_proj."),
                 (".ffn.down.", ".mlp.down_proj."), (".ffn.", ".mlp.")):
        ours = ours.replace(a, b)
    return ours


def _hf_model(cfg: ModelConfig, first_dense: int, yarn: bool):
    transformers = pytest.importorskip("transformers")
    a, m, moe = cfg.attention, cfg.attention.mla, cfg.moe
    rope = {"rope_type": "default", "rope_theta": cfg.position.theta}
    if yarn:
        s = cfg.position.scaling
        rope = {"rope_type": "yarn", "rope_theta": cfg.position.theta, "factor": s.factor,
                "original_max_position_embeddings": s.original_max_positions, "beta_fast": s.beta_fast,
                "beta_slow": s.beta_slow, "mscale": s.mscale, "mscale_all_dim": s.mscale_all_dim}
    hf_cfg = transformers.DeepseekV3Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn.hidden,
        num_hidden_layers=cfg.n_layers, num_attention_heads=a.heads, num_key_value_heads=a.heads,
        kv_lora_rank=m.kv_lora_rank, q_lora_rank=m.q_lora_rank, qk_rope_head_dim=m.qk_rope_head_dim,
        qk_nope_head_dim=m.qk_nope_head_dim, v_head_dim=m.v_head_dim, first_k_dense_replace=first_dense,
        moe_intermediate_size=moe.expert_hidden if moe else 16, n_routed_experts=moe.num_experts if moe else 8,
        num_experts_per_tok=moe.top_k if moe else 2, n_shared_experts=moe.shared_experts if moe else 1,
        n_group=moe.n_group if moe else 1, topk_group=moe.topk_group if moe else 1,
        routed_scaling_factor=moe.routed_scaling_factor if moe else 1.0, norm_topk_prob=moe.norm_topk_prob if moe else True,
        rms_norm_eps=cfg.norm.eps, max_position_embeddings=cfg.position.max_positions or 64,
        tie_word_embeddings=False, rope_parameters=rope, rope_interleave=True, attention_bias=a.qkv_bias,
    )
    torch.manual_seed(1)
    hf = transformers.DeepseekV3ForCausalLM(copy.deepcopy(hf_cfg)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # random init leaves norms at 1, biases and the correction bias at 0: redraw all
        for name, p in list(hf.named_parameters()) + list(hf.named_buffers()):
            if not p.is_floating_point() or "rotary" in name:
                continue
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                std = 1.0 if name.endswith("mlp.gate.weight") else 0.3 if p.dim() == 1 else 0.1
                p.copy_(std * torch.randn(p.shape, generator=g))
    return hf


def _compare_with_hf(cfg: ModelConfig, first_dense: int, yarn: bool, T: int = 12):
    hf = _hf_model(cfg, first_dense, yarn)
    ours = archlab.build(cfg).eval()
    hf_state = hf.state_dict()
    ours.load_state_dict({k: hf_state[_hf_name(k)] for k in ours.state_dict()}, strict=True)
    ids = torch.randint(0, cfg.vocab_size, (2, T), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = hf(ids).logits
        got = ours(ids)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        absorbed = with_path(ours, "absorbed")
        cache = absorbed.new_cache(batch_size=2, max_len=T)
        steps = [absorbed(ids[:, :3], cache=cache)] + [absorbed(ids[:, t:t + 1], cache=cache) for t in range(3, T)]
        torch.testing.assert_close(torch.cat(steps, 1), want, atol=2e-5, rtol=1e-4)


def _dense(cfg: ModelConfig) -> ModelConfig:
    return cfg.replace(moe=None, plan=archlab.config.LayerPlan(pattern="A"))


def test_dense_deepseek_v3_without_query_compression_equals_transformers():
    cfg = _dense(presets.get("deepseek-debug")).replace(**{"attention.mla.q_lora_rank": None, "attention.qkv_bias": True,
                                                           "attention.out_bias": True,
                                                           "position.scaling": {"kind": "none"}, "position.max_positions": None})
    _compare_with_hf(cfg, first_dense=cfg.n_layers, yarn=False)


def test_dense_deepseek_v3_with_yarn_equals_transformers():
    # mscale != mscale_all_dim: both the cos/sin factor and the softmax-scale multiplier differ from 1
    cfg = _dense(presets.get("deepseek-debug")).replace(**{"position.scaling.mscale": 0.707,
                                                           "position.scaling.mscale_all_dim": 1.0})
    _compare_with_hf(cfg, first_dense=cfg.n_layers, yarn=True, T=20)


def test_deepseek_debug_preset_with_moe_equals_transformers():
    cfg = presets.get("deepseek-debug")
    _compare_with_hf(cfg, first_dense=1, yarn=True)

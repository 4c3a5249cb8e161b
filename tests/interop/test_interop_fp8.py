"""Block-quantized FP8 checkpoints (DeepSeek-V3's published format): float8 weights with one
float32 scale per block, dequantized on load. A tiny DeepSeek-V3 from its config class is
quantized here in 16 x 8 blocks (partial blocks included), written as a checkpoint directory,
and loaded back: every parameter equals the dequantized weights exactly, the logits equal
transformers' on those weights, shards in any order pair weights with their scales, and bad
files name what is wrong."""
from __future__ import annotations

import json

import pytest
import torch

from archlab.errors import CheckpointError
from archlab.interop import from_hf
from conformance import build_hf

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402  (a dependency of transformers)

F8 = getattr(torch, "float8_e4m3fn", None)
pytestmark = pytest.mark.skipif(F8 is None, reason="this torch has no float8_e4m3fn")

V = 97
CFG = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
           max_position_embeddings=64, intermediate_size=48, moe_intermediate_size=16, n_routed_experts=8,
           num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=12,
           qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8, n_group=4, topk_group=2,
           rope_parameters={"rope_type": "default", "rope_theta": 500.0})
BLOCK = (16, 8)
QUANT = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": list(BLOCK)}
IDS = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(4))


def _quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float8 values and per-block scales (amax / 448, e4m3's largest) of a 2-D weight."""
    (M, K), (bm, bk) = w.shape, BLOCK
    rows, cols = -(-M // bm), -(-K // bk)
    padded = w.new_zeros(rows * bm, cols * bk)
    padded[:M, :K] = w
    blocks = padded.view(rows, bm, cols, bk)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-8) / 448.0  # [rows, cols]
    q = (blocks / scale[:, None, :, None]).view_as(padded)[:M, :K].to(F8)
    return q, scale.float()


def _is_quantized(key: str, t: torch.Tensor) -> bool:
    """The projections, as in the published files; embeddings, norms, routers and the head stay bf16."""
    return (t.dim() == 2 and key.endswith("proj.weight")) or ".experts." in key


def _fp8_checkpoint(tmp_path):
    """(FP8 checkpoint directory, directory of the same weights dequantized, in float32)."""
    hf = build_hf("DeepseekV3Config", CFG)
    hf.save_pretrained(tmp_path / "plain")
    state = load_file(str(tmp_path / "plain" / "model.safetensors"))
    files, dequant = {}, {}
    for k, w in state.items():
        if _is_quantized(k, w):
            q, s = _quantize(w.float())
            files[k], files[k + "_scale_inv"] = q, s
            full = s.repeat_interleave(BLOCK[0], 0)[: w.shape[0]].repeat_interleave(BLOCK[1], 1)[:, : w.shape[1]]
            dequant[k] = q.float() * full
        else:
            files[k] = w.to(torch.bfloat16)
            dequant[k] = files[k].float()
    assert sum(t.dtype == F8 for t in files.values()) > 20
    cfg = json.loads((tmp_path / "plain" / "config.json").read_text())
    fp8, deq = tmp_path / "fp8", tmp_path / "dequantized"
    for d, tensors, extra in ((fp8, files, {"quantization_config": QUANT}), (deq, dequant, {})):
        d.mkdir()
        save_file(tensors, str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({**cfg, **extra}))
    return fp8, deq


@torch.no_grad()
def test_fp8_weights_are_dequantized_on_load(tmp_path):
    d, deq = _fp8_checkpoint(tmp_path)
    model = from_hf(d)  # bf16, the dtype of the file's unquantized tensors
    want = from_hf(deq, dtype=torch.bfloat16).state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)
    # in float32, the logits equal transformers' on the same (dequantized) weights
    hf = transformers.AutoModelForCausalLM.from_pretrained(deq, attn_implementation="eager").float().eval()
    torch.testing.assert_close(from_hf(d, dtype=torch.float32)(IDS), hf(IDS).logits, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_weights_and_scales_pair_across_shards_in_either_order(tmp_path):
    d, deq = _fp8_checkpoint(tmp_path)
    state = load_file(str(d / "model.safetensors"))
    weights = sorted(k for k in state if k.endswith("_scale_inv"))
    first = {}
    for i, s in enumerate(weights):  # shard 1: half the scales before their weights, half the weights before their scales
        name = s[: -len("_scale_inv")]
        first[s if i % 2 else name] = state.pop(s if i % 2 else name)
    save_file(first, str(d / "model-00001-of-00002.safetensors"))
    save_file(state, str(d / "model-00002-of-00002.safetensors"))
    (d / "model.safetensors").unlink()
    index = {k: "model-00001-of-00002.safetensors" for k in first} | {k: "model-00002-of-00002.safetensors" for k in state}
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    want = from_hf(deq, dtype=torch.bfloat16).state_dict()
    for k, t in from_hf(d).state_dict().items():
        torch.testing.assert_close(t, want[k], rtol=0, atol=0, msg=k)


def _edit(d, fn):
    state = load_file(str(d / "model.safetensors"))
    fn(state)
    save_file(state, str(d / "model.safetensors"))


def test_bad_fp8_checkpoints_name_what_is_wrong(tmp_path):
    d, _ = _fp8_checkpoint(tmp_path)
    key = next(k for k in load_file(str(d / "model.safetensors")) if k.endswith("o_proj.weight"))

    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "quantization_config": {**QUANT, "weight_block_size": None}}))
    with pytest.raises(CheckpointError, match="weight_block_size"):
        from_hf(d)
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "quantization_config"}))
    with pytest.raises(CheckpointError, match="quant_method"):
        from_hf(d)
    (d / "config.json").write_text(json.dumps(cfg))

    _edit(d, lambda s: s.update({key + "_scale_inv": s[key + "_scale_inv"][:, :1].contiguous()}))
    with pytest.raises(CheckpointError, match=f"{key}_scale_inv: shape"):
        from_hf(d)
    _edit(d, lambda s: s.pop(key + "_scale_inv"))
    with pytest.raises(CheckpointError, match=f"{key} \\(no {key}_scale_inv\\)"):
        from_hf(d)
    _edit(d, lambda s: [s.pop(k) for k in [k for k in s if k.endswith("_scale_inv")]])
    with pytest.raises(CheckpointError, match="without a block scale"):
        from_hf(d)

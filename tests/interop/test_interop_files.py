"""Checkpoint directories: single and sharded safetensors, old prefix-less files, refused pickles,
clear errors for bad files, archlab's own format, the ``archlab convert`` command, streaming
memory, and the error naming the extra when transformers is missing."""
from __future__ import annotations

import copy
import gc
import json
import re
import sys
from pathlib import Path

import pytest
import torch

import archlab
from archlab import presets
from archlab.cli import main
from archlab.errors import CheckpointError
from archlab.interop import MissingDependencyError, Unsupported, from_hf, load_archlab, save_archlab, to_hf, to_hf_config

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402  (a dependency of transformers)

IDS = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _perturbed(model):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    return _perturbed(transformers.AutoModelForCausalLM.from_config(cfg).eval())


def _llama(**kw):
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, **kw)
    return _perturbed(transformers.AutoModelForCausalLM.from_config(copy.deepcopy(cfg)).eval())


@torch.no_grad()
def test_single_sharded_and_prefixless_directories_load_alike(tmp_path):
    hf = _gpt2()
    want = hf(IDS).logits
    hf.save_pretrained(tmp_path / "single")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    # the layout of the original GPT-2 files: no "transformer." prefix, causal-mask buffers
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
    save_file(state, str(old / "model.safetensors"), metadata={"format": "pt"})
    for d in ("single", "sharded", "old"):
        torch.testing.assert_close(from_hf(tmp_path / d)(IDS), want)


def test_dtype_and_in_memory_copy(tmp_path):
    hf = _llama()
    ours = from_hf(hf, dtype=torch.bfloat16)
    assert ours.embed.weight.dtype == torch.bfloat16
    with torch.no_grad():
        ours.embed.weight.zero_()  # the source must not change
    assert hf.get_input_embeddings().weight.abs().sum() > 0


def test_pickles_are_refused_and_bad_directories_say_why(tmp_path):
    hf = _llama()
    hf.config.save_pretrained(tmp_path / "bin")
    torch.save({"x": torch.zeros(1)}, tmp_path / "bin" / "pytorch_model.bin")  # never unpickled
    with pytest.raises(CheckpointError, match="pickle"):
        from_hf(tmp_path / "bin")
    with pytest.raises(CheckpointError, match="not a directory"):
        from_hf(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        from_hf(tmp_path / "empty")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(Unsupported, match="'t5' is not supported.*supported: .*llama"):
        from_hf(tmp_path / "t5")
    (tmp_path / "bin" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read as safetensors"):
        from_hf(tmp_path / "bin")
    with pytest.raises(TypeError, match="transformers model or a directory"):
        from_hf(42)


def test_mismatched_checkpoints_name_the_tensor(tmp_path):
    hf = _llama()
    hf.save_pretrained(tmp_path / "ok")
    state = load_file(str(tmp_path / "ok" / "model.safetensors"))
    for name, edit in {
        "missing": lambda s: s.pop("model.layers.1.mlp.up_proj.weight"),
        "unexpected": lambda s: s.__setitem__("model.layers.1.mlp.extra.weight", torch.zeros(2)),
        "shape": lambda s: s.__setitem__("model.norm.weight", torch.zeros(31)),
    }.items():
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
        broken = dict(state)
        edit(broken)
        save_file(broken, str(d / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(CheckpointError, match=name + r".*" + {"missing": "up_proj", "unexpected": "extra",
                                                                   "shape": ""}[name]) as info:
            from_hf(d)
        if name == "shape":
            assert "model.norm.weight" in str(info.value) and "(31,)" in str(info.value)


@torch.no_grad()
def test_to_hf_writes_shards_that_transformers_loads(tmp_path):
    hf = _llama(tie_word_embeddings=True)
    ours = from_hf(hf)
    out = to_hf(ours, tmp_path / "out", max_shard_size="10KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and "lm_head.weight" not in index["weight_map"]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    torch.testing.assert_close(reloaded(IDS).logits, hf(IDS).logits)
    # writing again with one shard removes the old shards
    to_hf(ours, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(Unsupported, match="position.kind='t5'"):
        to_hf(archlab.build(presets.get("t5-style-debug")), tmp_path / "t5")


@torch.no_grad()
@pytest.mark.parametrize("name", ["gpt2-debug", "gemma-2-debug", "gpt-j-debug"])
def test_archlab_format_round_trip(tmp_path, name):
    model = _perturbed(archlab.build(presets.get(name))).eval()
    ids = IDS % model.cfg.vocab_size
    save_archlab(model, tmp_path / "a", max_shard_size="30KB")
    back = load_archlab(tmp_path / "a")
    assert back.cfg == model.cfg
    torch.testing.assert_close(back(ids), model(ids), atol=0, rtol=0)
    half = load_archlab(tmp_path / "a", dtype=torch.bfloat16)
    assert half.lm_head_weight.dtype == torch.bfloat16
    (tmp_path / "a" / "config.json").write_text(presets.get("llama-3-debug").to_json())
    with pytest.raises(CheckpointError, match="the checkpoint holds shape"):
        load_archlab(tmp_path / "a")


@torch.no_grad()
def test_cli_convert_both_ways(tmp_path, capsys):
    hf = _gpt2()
    hf.save_pretrained(tmp_path / "hf")
    assert main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "arch")]) == 0
    assert sorted(p.name for p in (tmp_path / "arch").iterdir()) == ["config.json", "model.safetensors"]
    assert archlab.ModelConfig.from_json(tmp_path / "arch" / "config.json").position.kind == "learned"
    torch.testing.assert_close(load_archlab(tmp_path / "arch")(IDS), hf(IDS).logits)
    assert main(["convert", "--to-hf", str(tmp_path / "arch"), "--out", str(tmp_path / "back")]) == 0
    assert "transformers gpt2" in capsys.readouterr().out
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(reloaded(IDS).logits, hf(IDS).logits)
    assert main(["convert", "--from-hf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["convert", "--to-hf", str(tmp_path / "arch"), "--out", str(tmp_path / "x"), "--model-type", "bloom"]) == 2
    assert "position.kind='learned'" in capsys.readouterr().err


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'archlab\[hf\]'"):
        to_hf_config(presets.get("llama-3-debug"))


def _status(key: str) -> int:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads and resets the peak RSS in /proc")
@torch.no_grad()
def test_loading_a_directory_streams(tmp_path):
    """Peak memory of loading a directory and running it stays near the weights' size: the model is
    built on the meta device and filled tensor by tensor (a model initialised first, then
    overwritten, peaks at twice its size)."""
    cfg = presets.get("llama-3-debug", vocab_size=4096, d_model=512, n_layers=4,
                      **{"attention.head_dim": 128, "ffn.hidden": 1536, "tie_embeddings": False})
    model = archlab.build(cfg)
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    to_hf(model, tmp_path / "big")
    to_hf(archlab.build(presets.get("llama-3-debug")), tmp_path / "tiny")
    del model
    x = torch.zeros(1, 4, dtype=torch.long)
    from_hf(tmp_path / "tiny")(x)  # one-time costs first (transformers' config modules, lazy imports)
    gc.collect()
    base = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from the current RSS
    except OSError:
        pytest.skip("cannot reset the peak-RSS counter here")
    from_hf(tmp_path / "big")(x)  # the forward pass touches every weight
    grew = _status("VmHWM") - base
    print(f"weights {nbytes / 2**20:.1f} MiB, peak memory grew {grew / 2**20:.1f} MiB")
    assert grew < 1.3 * nbytes, f"loading {nbytes / 2**20:.0f} MiB of weights grew peak memory by {grew / 2**20:.0f} MiB"

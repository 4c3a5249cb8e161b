"""Exact resume, checkpoint validation, the kill-during-save guarantee, NaN errors, MoE hooks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import archlab
from archlab.errors import CheckpointError, ConfigError
from archlab.train import (
    NonFiniteLossError, latest_checkpoint, list_checkpoints, load_checkpoint, load_run, train,
)
from archlab.train.weights import load_weights, read_weights, save_weights

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import one_thread, tiny_data, tiny_model, tiny_run  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet(_s: str) -> None:
    pass


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_weights(path / "model.safetensors")


def test_resume_is_bit_exact(tmp_path):
    ds = tiny_data()
    run = tiny_run(steps=12, save_every=0, eval_every=6, grad_clip=0.5, schedule="cosine", warmup_steps=3)
    full = train(run, tmp_path / "full", dataset=ds, progress=False, say=_quiet)
    half = train(run, tmp_path / "split", dataset=ds, progress=False, say=_quiet, until_step=6)
    assert half.step == 6 and half.last_checkpoint.name == "step_00000006"
    rest = train(run, tmp_path / "split", dataset=ds, progress=False, say=_quiet, resume=True)
    assert rest.start_step == 6 and rest.step == 12
    assert half.losses + rest.losses == full.losses  # bit for bit
    assert rest.val_losses[12] == full.val_losses[12]
    a, b = _weights(full.last_checkpoint), _weights(rest.last_checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(full.last_checkpoint / "optimizer.pt", weights_only=True)
    ob = torch.load(rest.last_checkpoint / "optimizer.pt", weights_only=True)
    for name, st in oa["state"].items():
        for k, t in st.items():
            assert torch.equal(t, ob["state"][name][k]), (name, k)
    state = json.loads((rest.last_checkpoint / "trainer.json").read_text())
    assert state["step"] == 12 and state["data"]["next_step"] == 12 and state["tokens_seen"] == 12 * 4 * 16


def test_grad_accumulation_matches_one_batch(tmp_path):
    ds = tiny_data()
    one = train(tiny_run(steps=3), None, dataset=ds, progress=False, say=_quiet)
    acc = train(tiny_run(steps=3, grad_accum=2), None, dataset=ds, progress=False, say=_quiet)
    torch.testing.assert_close(torch.tensor(acc.losses), torch.tensor(one.losses), rtol=1e-5, atol=1e-5)


def test_loss_falls_and_logs(tmp_path):
    r = train(tiny_run(steps=30, lr=1e-2, eval_every=30, warmup_steps=3), tmp_path / "r", dataset=tiny_data(),
              progress=False, say=_quiet)
    assert r.val_losses[30] < 0.7 * r.losses[0]
    recs = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in recs if "loss" in x]
    assert [x["step"] for x in steps] == list(range(1, 31))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "tokens"} <= set(steps[0])
    assert "val_loss" in steps[-1]
    assert (tmp_path / "r" / "run.json").is_file()


def test_keep_last_and_refuse_overwrite(tmp_path):
    run = tiny_run(steps=6, save_every=2, keep_last=2)
    train(run, tmp_path / "r", dataset=tiny_data(), progress=False, say=_quiet)
    assert [p.name for p in list_checkpoints(tmp_path / "r")] == ["step_00000004", "step_00000006"]
    with pytest.raises(ConfigError, match="already holds a run"):
        train(run, tmp_path / "r", dataset=tiny_data(), progress=False, say=_quiet)


def test_nan_loss_names_step_and_checkpoint(tmp_path, monkeypatch):
    import archlab.train.loop as loop

    real = loop.model_loss
    calls = {"n": 0}

    def poisoned(fwd, batch):
        calls["n"] += 1
        out = real(fwd, batch)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setattr(loop, "model_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 5 .*step_00000004"):
        train(tiny_run(steps=8, save_every=2), tmp_path / "r", dataset=tiny_data(), progress=False, say=_quiet)
    assert latest_checkpoint(tmp_path / "r").name == "step_00000004"


def test_checkpoint_errors_name_the_tensor(tmp_path):
    r = train(tiny_run(steps=2), tmp_path / "r", dataset=tiny_data(), progress=False, say=_quiet)
    ck = r.last_checkpoint
    model = archlab.build(r.config.model)
    load_weights(model, ck / "model.safetensors")  # the good case
    w = read_weights(ck / "model.safetensors")
    w.pop("blocks.1.mixer.k_proj.weight")
    save_weights(w, tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="blocks.1.mixer.k_proj.weight.*missing"):
        load_weights(model, tmp_path / "missing.safetensors")
    w = read_weights(ck / "model.safetensors")
    w["blocks.0.ffn.up.weight"] = torch.zeros(3, 3)
    save_weights(w, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match=r"blocks.0.ffn.up.weight.*\[3, 3\]"):
        load_weights(model, tmp_path / "shape.safetensors")
    w = read_weights(ck / "model.safetensors")
    w["blocks.9.extra"] = torch.zeros(1)
    save_weights(w, tmp_path / "extra.safetensors")
    with pytest.raises(CheckpointError, match="blocks.9.extra.*not in the model"):
        load_weights(model, tmp_path / "extra.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_weights(model, tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "nowhere", model=model)
    bigger = archlab.build(r.config.model.replace(d_model=48))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(ck, model=bigger)
    # an optimizer state for another model is refused by name, through torch.load(weights_only=True)
    other = train(tiny_run(steps=1, model=tiny_model(n_layers=1)), tmp_path / "o", dataset=tiny_data(),
                  progress=False, say=_quiet)
    (ck / "optimizer.pt").write_bytes((other.last_checkpoint / "optimizer.pt").read_bytes())
    with pytest.raises(CheckpointError, match=r"optimizer.pt: parameter 'blocks.1"):
        train(tiny_run(steps=4), tmp_path / "r", dataset=tiny_data(), progress=False, say=_quiet, resume=True)
    loaded = load_run(tmp_path / "o")
    assert loaded.step == 1 and loaded.config.model.n_layers == 1


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {helpers!r})
    import archlab.train.checkpoint as ck
    from archlab.train import train
    from _train_helpers import tiny_data, tiny_run

    real = ck.save_weights
    def dying(state, path, aliases=None):
        real(state, path, aliases)
        if "step_00000004" in str(path):  # the second save: die with the weights half way in
            os.kill(os.getpid(), signal.SIGKILL)
    ck.save_weights = dying
    train(tiny_run(steps=6, save_every=2), {out!r}, dataset=tiny_data(), progress=False, say=lambda s: None)
""")


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    out = tmp_path / "r"
    script = KILL_SCRIPT.format(helpers=str(Path(__file__).parent), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in list_checkpoints(out)] == ["step_00000002"]
    assert any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())  # the interrupted save
    loaded = load_run(out)
    assert loaded.step == 2
    # resuming continues from step 2, equals an uninterrupted run, and clears the leftover
    ds = tiny_data()
    rest = train(tiny_run(steps=6, save_every=2), out, dataset=ds, progress=False, say=_quiet, resume=True)
    ref = train(tiny_run(steps=6, save_every=2), tmp_path / "ref", dataset=ds, progress=False, say=_quiet)
    assert rest.losses == ref.losses[2:]
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())


def test_moe_aux_loss_bias_updates_and_stats(tmp_path):
    cfg = archlab.presets.get("olmoe-debug").replace(**{"moe.bias_update_rate": 0.01, "moe.correction_bias": True})
    run = tiny_run(model=cfg, steps=3, log_every=1)
    r = train(run, tmp_path / "m", dataset=tiny_data(), progress=False, say=_quiet)
    recs = [json.loads(l) for l in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert all("aux_loss" in x and x["loss"] >= x["lm_loss"] for x in recs)
    moe = recs[-1]["moe"]
    assert set(moe) == {"blocks.0.ffn", "blocks.1.ffn"}
    assert "max_over_mean_load" in moe["blocks.0.ffn"] and len(moe["blocks.0.ffn"]["load_fraction"]) == 16
    bias = r.model.blocks[0].ffn.router.e_score_correction_bias
    assert bias.abs().sum() > 0  # update_bias ran after the optimizer steps


def test_activation_checkpointing_and_bf16_autocast(tmp_path):
    ds = tiny_data()
    ref = train(tiny_run(steps=3), None, dataset=ds, progress=False, say=_quiet)
    ck = train(tiny_run(steps=3, activation_checkpointing=True), tmp_path / "ck", dataset=ds, progress=False,
               say=_quiet)
    torch.testing.assert_close(torch.tensor(ck.losses), torch.tensor(ref.losses), rtol=1e-6, atol=1e-6)
    assert set(read_weights(ck.last_checkpoint / "model.safetensors")) == set(ck.model.state_dict())  # names kept
    bf = train(tiny_run(steps=3, precision="bf16"), None, dataset=ds, progress=False, say=_quiet)
    torch.testing.assert_close(torch.tensor(bf.losses), torch.tensor(ref.losses), rtol=2e-2, atol=2e-2)


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_run(steps=2, tensorboard=True), tmp_path / "tb", dataset=tiny_data(), progress=False, say=_quiet)
    ea = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    ea.Reload()
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(ea.Tags()["scalars"])

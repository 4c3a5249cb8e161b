"""The trainer on a GPU: bf16 autocast, fused AdamW, MFU in the log, compile, exact resume."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from archlab.train import train

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import tiny_data, tiny_run  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _quiet(_s: str) -> None:
    pass


def test_gpu_bf16_learns_and_logs_mfu(tmp_path):
    r = train(tiny_run(steps=40, lr=1e-2, eval_every=40, warmup_steps=4, peak_flops=1e12), tmp_path / "g",
              dataset=tiny_data(), progress=False, say=_quiet)
    assert r.val_losses[40] < 0.7 * r.losses[0]
    assert next(r.model.parameters()).device.type == "cuda"
    recs = [json.loads(l) for l in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert all(0 < x["mfu"] < 1 for x in recs)


def test_gpu_resume_repeats_the_run(tmp_path):
    ds = tiny_data()
    run = tiny_run(steps=8)
    full = train(run, tmp_path / "a", dataset=ds, progress=False, say=_quiet)
    train(run, tmp_path / "b", dataset=ds, progress=False, say=_quiet, until_step=4)
    rest = train(run, tmp_path / "b", dataset=ds, progress=False, say=_quiet, resume=True)
    torch.testing.assert_close(torch.tensor(rest.losses), torch.tensor(full.losses[4:]), rtol=1e-5, atol=1e-5)


def test_gpu_compile_and_activation_checkpointing(tmp_path):
    ds = tiny_data()
    ref = train(tiny_run(steps=4), None, dataset=ds, progress=False, say=_quiet)
    ck = train(tiny_run(steps=4, activation_checkpointing=True), None, dataset=ds, progress=False, say=_quiet)
    torch.testing.assert_close(torch.tensor(ck.losses), torch.tensor(ref.losses), rtol=1e-4, atol=1e-4)
    comp = train(tiny_run(steps=4, compile=True), None, dataset=ds, progress=False, say=_quiet)
    torch.testing.assert_close(torch.tensor(comp.losses), torch.tensor(ref.losses), rtol=2e-2, atol=2e-2)

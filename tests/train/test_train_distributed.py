"""Two gloo processes on the CPU follow the same loss curve as one process with the same global
batch (DDP and FSDP2), and a sharded checkpoint reloads into a different number of processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archlab.train import load_run, train
from archlab.train.weights import read_weights

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import one_thread, tiny_data, tiny_run  # noqa: E402,F401

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="needs torch.distributed with gloo")]


def test_two_processes_match_one(tmp_path):
    ds = tiny_data()
    ref = train(tiny_run(steps=4, eval_every=4, save_every=2, keep_last=3), tmp_path / "single", dataset=ds,
                progress=False, say=lambda s: None)
    (tmp_path / "grow" / "checkpoints").mkdir(parents=True)  # the single run's step-2 checkpoint, to resume sharded
    shutil.copytree(tmp_path / "single" / "checkpoints" / "step_00000002", tmp_path / "grow" / "checkpoints" / "step_00000002")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).parent / "_dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads((tmp_path / "results.json").read_text())

    close = dict(rtol=2e-5, atol=2e-5)
    for mode in ("ddp", "fsdp"):  # 2 processes x 2 micro-steps against 1 process x 1
        torch.testing.assert_close(torch.tensor(got[mode]["losses"]), torch.tensor(ref.losses), **close)
        assert abs(got[mode]["val"] - ref.val_losses[4]) < 1e-4
    # the sharded run also wrote full weights: they match the single-process weights
    w_ref = read_weights(ref.last_checkpoint / "model.safetensors")
    for mode in ("ddp", "fsdp"):
        w = read_weights(Path(got[mode]["ckpt"]) / "model.safetensors")
        assert w.keys() == w_ref.keys()
        for k in w:
            torch.testing.assert_close(w[k], w_ref[k], rtol=1e-4, atol=1e-5)
    assert (Path(got["fsdp"]["ckpt"]) / "dcp").is_dir()
    assert load_run(tmp_path / "fsdp").step == 4
    # one process -> two: the unsharded checkpoint continued under FSDP2
    assert got["grow"]["start"] == 2
    torch.testing.assert_close(torch.tensor(got["grow"]["losses"]), torch.tensor(ref.losses[2:]), **close)

    # two processes -> one: the FSDP2 checkpoint of step 2 (torch.distributed.checkpoint shards)
    fsdp_dir = tmp_path / "fsdp"
    shutil.rmtree(fsdp_dir / "checkpoints" / "step_00000004")
    rest = train(tiny_run(steps=4, eval_every=4, distributed="fsdp", save_every=2), fsdp_dir, dataset=ds,
                 progress=False, say=lambda s: None, resume=True)
    assert rest.start_step == 2
    torch.testing.assert_close(torch.tensor(rest.losses), torch.tensor(ref.losses[2:]), **close)

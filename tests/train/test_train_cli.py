"""``archlab train`` / ``archlab generate`` end to end on a tiny text corpus, and their errors."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from archlab.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import one_thread  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["--set", "batch_size=4", "--set", "seq_len=32", "--set", "eval_batches=1", "--set", "data.val_fraction=0.3",
         "--set", "tensorboard=false", "--no-progress"]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHLAB_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(12):
        (d / f"doc{i}.txt").write_text("".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(30)))
    return d


def test_train_resume_generate(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    rc = main(["train", "llama-3-debug", "--data", f"text:{corpus}", "--steps", "4", "--out", str(out), *SMALL])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "resolved config:" in cap.out and "vocab_size: 258" in cap.out  # the byte tokenizer's vocabulary
    assert "unigram entropy" in cap.out and "done: step 4" in cap.out
    saved = json.loads((out / "run.json").read_text())
    assert saved["model"]["vocab_size"] == 258 and saved["train"]["steps"] == 4
    assert saved["train"]["data"]["corpus"] == f"text:{corpus}"
    assert (out / "checkpoints" / "step_00000004" / "tokenizer").is_dir()

    rc = main(["train", "llama-3-debug", "--out", str(out), "--resume", "--steps", "6", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "resumed from" in cap.out and "step_00000004" in cap.out and "done: step 6" in cap.out

    rc = main(["generate", str(out), "--prompt", "def f", "--max-new-tokens", "12", "--seed", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out.startswith("def f") and len(cap.out.rstrip("\n")) > len("def f")

    # several prompts: one left-padded batch; greedy rows equal each prompt alone
    greedy = ["--max-new-tokens", "8", "--temperature", "0"]
    assert main(["generate", str(out), "--prompt", "def f", *greedy]) == 0
    alone = capsys.readouterr().out
    assert main(["generate", str(out), "--prompt", "def f", "--prompt", "import os, sys", *greedy]) == 0
    batch = capsys.readouterr().out
    assert batch.startswith(alone) and "\nimport os, sys" in batch[len(alone):]


def test_cli_errors(tmp_path, corpus, capsys):
    assert main(["train", "llama-3-debug", "--set", "lrr=1", "--out", str(tmp_path / "a")]) == 2
    assert "'lr'" in capsys.readouterr().err
    assert main(["train", "llama-3-debug", "--set", "grad_accum=3", "--out", str(tmp_path / "a")]) == 2
    assert "train.grad_accum" in capsys.readouterr().err
    assert main(["train", "no-such-preset", "--out", str(tmp_path / "a")]) == 2
    assert main(["train", "llama-3-debug", "--set", "schedule=linear", "--out", str(tmp_path / "a")]) == 2
    assert "cosine" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert "no such run" in capsys.readouterr().err

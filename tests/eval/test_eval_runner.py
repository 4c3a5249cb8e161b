"""evaluate() on an in-memory model and on a run written by the trainer; eval.json; ``archlab eval``."""
from __future__ import annotations

import json

import pytest

from archlab.errors import CheckpointError, ConfigError
from archlab.eval.results import read_results, write_results
from archlab.eval.runner import EvalTarget, evaluate, load_target


def test_in_memory_target_writes_and_merges_results(tiny_model, byte_ds, tmp_path):
    from archlab.data.tokenizer import ByteTokenizer

    target = EvalTarget(tiny_model, ByteTokenizer(), train_len=16, directory=tmp_path, label="tiny")
    out = evaluate(target, ["ppl", "positions"], scaling="ntk:2", dataset=byte_ds, k=2, max_windows=2,
                   max_tokens=64, n_bootstrap=10, progress=False)
    assert set(out) == {"ppl", "positions", "positions@ntk:2"}
    saved = read_results(tmp_path)["results"]
    assert saved["ppl"]["result"]["n_tokens"] >= 64 and saved["positions@ntk:2"]["result"]["scaling"] == "ntk:2"
    write_results(tmp_path, {"extra": {"x": float("nan")}})
    merged = read_results(tmp_path)["results"]
    assert set(merged) == {"ppl", "positions", "positions@ntk:2", "extra"} and merged["extra"]["x"] is None
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write leaves no temporary file


def test_unknown_task_and_missing_train_len(tiny_model, byte_ds):
    from archlab.data.tokenizer import ByteTokenizer

    target = EvalTarget(tiny_model, ByteTokenizer())
    with pytest.raises(ConfigError, match="accepted: copy, induction, mqar"):
        evaluate(target, ["bleu"], dataset=byte_ds)
    with pytest.raises(ConfigError, match="train_len"):
        evaluate(target, ["positions"], dataset=byte_ds, progress=False)
    with pytest.raises(CheckpointError):
        load_target("/nonexistent/run")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, byte_ds):
    import archlab
    from archlab.train import RunConfig, TrainConfig, train

    out = tmp_path_factory.mktemp("run")
    cfg = archlab.ModelConfig(vocab_size=258, d_model=32, n_layers=1, name="tiny-run")
    run = RunConfig(model=cfg, train=TrainConfig(steps=2, batch_size=2, seq_len=16, eval_every=0, save_every=0,
                                                 tensorboard=False, device="cpu"))
    train(run, out, dataset=byte_ds, progress=False, say=lambda s: None)
    return out


def test_trainer_run_opens_with_its_training_length(run_dir):
    target = load_target(run_dir)
    assert target.train_len == 16 and target.tokenizer.vocab_size == 258 and target.label == "tiny-run"
    assert target.directory.parent.name == "checkpoints" and target.meta["step"] == 2


def test_cli_eval_on_a_run(run_dir, byte_ds, capsys, monkeypatch):
    from archlab.cli import main

    monkeypatch.setattr("archlab.eval.runner._dataset", lambda target, opts: byte_ds)
    rc = main(["eval", str(run_dir), "--tasks", "ppl,positions,induction", "--scaling", "yarn:2", "--k", "2",
               "--max-windows", "2", "--max-tokens", "64", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "perplexity" in out and "rope+" not in out and "yarn:2" in out and "induction:" in out
    saved = json.loads((load_target(run_dir).directory / "eval.json").read_text())
    assert {"ppl", "positions", "positions@yarn:2", "induction"} <= set(saved["results"])
    assert main(["eval", str(run_dir), "--tasks", "nope"]) == 2


def test_lm_eval_adapter_opens_a_run(run_dir):
    from archlab.eval.lm_eval_adapter import LMEvalModel

    lm = LMEvalModel(pretrained=str(run_dir))
    assert lm.max_length == 16 and lm.loglikelihood([("ab", "c")])[0][0] < 0

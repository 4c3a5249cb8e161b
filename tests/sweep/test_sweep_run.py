"""Running sweeps: a 2-job sweep of a debug preset end to end, a second call that finds nothing
to do, and a sweep killed with SIGKILL in the middle of a job that resumes with nothing lost
or duplicated (it equals an uninterrupted sweep step for step)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archlab.sweep.runner import run_sweep

STEPS = 40


def tiny_spec(cache: Path, **over) -> dict:
    spec = {
        "name": "tiny",
        "base": {"preset": "llama-3-debug", "set": {"d_model": 32, "attention.head_dim": 8, "ffn.hidden": 64}},
        "train": {"seq_len": 32, "batch_size": 4, "eval_every": 20, "eval_batches": 2, "log_every": 10,
                  "save_every": 10, "data.max_bytes": 100_000, "data.cache_dir": str(cache)},
        "budget": {"tokens": STEPS * 4 * 32},
        "seeds": [0],
        "lrs": [0.001, 0.003],
        "evals": {"ppl": {"max_tokens": 1024, "n_bootstrap": 10}},
        "comparisons": [{"name": "c", "variants": [{"name": "mha"}, {"name": "bad", "set": {"attention.heads": 5}}]}],
    }
    spec.update(over)
    return spec


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return [tuple(r) for r in con.execute(sql)]
    finally:
        con.close()


def test_two_job_sweep_runs_records_and_skips_finished(tmp_path):
    out = tmp_path / "out"
    r = run_sweep(tiny_spec(tmp_path / "cache"), out, workers=1, device="cpu", say=lambda s: None)
    assert r.counts == {"pending": 0, "running": 0, "done": 2, "failed": 0}
    assert r.skipped and r.skipped[0][1] == "bad" and "heads" in r.skipped[0][2]
    db = out / "results.db"
    # every step's loss once per run, the evaluations, the skipped variant with its reason
    assert _rows(db, "SELECT run_id, COUNT(*) FROM metrics WHERE name='loss' GROUP BY run_id") == [(1, STEPS), (2, STEPS)]
    assert {n for (n,) in _rows(db, "SELECT DISTINCT name FROM evals")} >= {"ppl", "val_loss", "train_tokens_per_s"}
    assert _rows(db, "SELECT status FROM variants WHERE name='bad'") == [("invalid",)]
    assert not list((out / "runs").glob("*/checkpoints"))  # weights are dropped unless keep_checkpoints
    again = run_sweep(tiny_spec(tmp_path / "cache"), out, workers=1, device="cpu", say=lambda s: None)
    assert again.counts["done"] == 2 and _rows(db, "SELECT COUNT(*) FROM runs") == [(2,)]
    assert _rows(db, "SELECT MAX(attempts) FROM runs") == [(1,)]


def _last_step(run_dir: Path) -> int:
    f = run_dir / "metrics.jsonl"
    if not f.is_file():
        return 0
    lines = [ln for ln in f.read_text().splitlines() if '"step"' in ln and '"event"' not in ln]
    try:
        return int(yaml.safe_load(lines[-1])["step"]) if lines else 0
    except Exception:  # a line being written
        return 0


@pytest.mark.slow
def test_sigkill_mid_job_then_resume_loses_and_duplicates_nothing(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec(tmp_path / "cache")))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "archlab.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "1",
           "--no-report", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        killed_at = None
        while time.time() < deadline and proc.poll() is None:
            runs = sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []
            steps = [_last_step(d) for d in runs]
            # the second job, past its checkpoint at step 10 and before its end
            if len(runs) == 2 and any(12 <= s < STEPS - 5 for s in steps):
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = steps
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
        assert killed_at is not None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    db = out / "results.db"
    assert _rows(db, "SELECT status FROM runs ORDER BY id") == [("done",), ("running",)]
    assert _rows(db, "SELECT COUNT(*) FROM metrics WHERE run_id=2") == [(0,)]  # nothing half-written

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "interrupted runs will be redone" in again.stdout
    assert _rows(db, "SELECT status, attempts FROM runs ORDER BY id") == [("done", 1), ("done", 2)]
    log = (out / "logs" / "run-0002.log").read_text()
    assert "resumed from" in log  # the redone job continued from its checkpoint

    # the same sweep uninterrupted gives the same numbers, step for step
    ref = tmp_path / "ref"
    run_sweep(tiny_spec(tmp_path / "cache"), ref, workers=1, device="cpu", threads=1, say=lambda s: None)
    q = "SELECT r.lr, m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id=m.run_id " \
        "WHERE m.name IN ('loss', 'val_loss', 'lr') ORDER BY r.lr, m.name, m.step"
    got, want = _rows(db, q), _rows(ref / "results.db", q)
    assert len(got) == len(want) == 2 * (2 * STEPS + 2)
    assert got == want
    q = "SELECT r.lr, e.name, e.value FROM evals e JOIN runs r ON r.id=e.run_id WHERE e.name IN ('ppl', 'val_loss') " \
        "ORDER BY r.lr, e.name"
    assert _rows(db, q) == _rows(ref / "results.db", q)


def test_cli_list_and_dry_run(tmp_path, capsys):
    from archlab.cli import main

    assert main(["sweep", "--list"]) == 0
    assert "chapter" in capsys.readouterr().out
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(tiny_spec(tmp_path / "cache")))
    assert main(["sweep", str(spec_file), "--dry-run", "--set", "seeds=[0, 1]"]) == 0
    out = capsys.readouterr().out
    assert "c/mha" in out and "skipped" in out and "2 lm" in out and "1 more seeds" in out
    assert not (tmp_path / "runs").exists()
    assert main(["sweep", str(spec_file), "--scale", "gpu"]) == 2  # tiny has no scales: a named error
    assert "no such scale" in capsys.readouterr().err

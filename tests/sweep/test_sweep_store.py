"""The results store: atomic claims under several processes, the claim guarding completion,
dead workers' jobs handed out again, learning-rate follow-ups."""
from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys

from archlab.sweep.store import Store, content_hash, set_seed_lr, worker_token


def _plan(store: Store, n_groups: int, *, seeds=(0,), lrs=(1e-3,), lr_search="every_seed") -> None:
    groups, runs = [], []
    for g in range(n_groups):
        template = {"kind": "lm", "model": {"g": g}, "train": {}, "evals": {}}
        gkey = content_hash(template)
        groups.append({"key": gkey, "kind": "lm", "config_hash": f"c{g}", "template": json.dumps(template),
                       "seeds": json.dumps(list(seeds)), "lrs": json.dumps(list(lrs)), "lr_search": lr_search})
        for seed in (seeds if lr_search == "every_seed" else seeds[:1]):
            for lr in lrs:
                job = set_seed_lr(template, "lm", seed, lr)
                runs.append({"key": content_hash(job), "group_key": gkey, "kind": "lm", "config_hash": f"c{g}",
                             "seed": seed, "lr": lr, "phase": 0, "spec": json.dumps(job)})
    store.write_plan(meta={"spec_name": "t"}, configs=[], comparisons=[], variants=[], groups=groups, runs=runs)


def _work(db: str, out: "mp.Queue") -> None:
    done = []
    with Store(db) as s:
        while (job := s.claim()) is not None:
            metrics = [("loss", step, 1.0 / step) for step in range(1, 6)]
            assert s.complete(job, metrics=metrics, evals={"val_loss": (job.lr, None)}, summary={"val_loss": job.lr},
                              seconds=0.0)
            done.append(job.id)
    out.put(done)


def test_concurrent_workers_take_each_job_once(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        _plan(s, 40)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_work, args=(str(db), q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = [i for g in got for i in g]
    assert sorted(ids) == list(range(1, 41))  # every job once, none twice
    with Store(db) as s:
        assert s.counts()["done"] == 40
        assert s.rows("SELECT COUNT(*) AS n FROM metrics")[0]["n"] == 40 * 5
        assert {r["attempts"] for r in s.rows("SELECT attempts FROM runs")} == {1}
        assert s.rows("PRAGMA journal_mode")[0][0] == "wal"


def test_dead_worker_job_is_redone_and_its_late_result_dropped(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as s:
        _plan(s, 1)
        job = s.claim()
        # pretend a worker process that has since exited held the claim
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        token = worker_token(int(dead.stdout))
        s.conn.execute("UPDATE runs SET worker=? WHERE id=?", (token, job.id))
        assert s.release_dead() == 1
        assert s.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}
        again = s.claim()
        assert again.id == job.id and again.attempts == 2 and again.claim != job.claim
        # the first holder finishing late must not write anything
        assert not s.complete(job, metrics=[("loss", 1, 9.0)], evals={}, summary={}, seconds=1.0)
        assert s.complete(again, metrics=[("loss", 1, 1.0)], evals={}, summary={}, seconds=1.0)
        assert [tuple(r) for r in s.rows("SELECT name, step, value FROM metrics")] == [("loss", 1, 1.0)]


def test_live_worker_keeps_its_job(tmp_path):
    with Store(tmp_path / "r.db") as s:
        _plan(s, 1)
        s.claim()
        assert s.release_dead() == 0 and s.claim() is None


def test_first_seed_grid_releases_the_other_seeds_at_the_best_lr(tmp_path):
    with Store(tmp_path / "r.db") as s:
        _plan(s, 1, seeds=(0, 1, 2), lrs=(1e-3, 3e-3, 1e-2), lr_search="first_seed")
        losses = {1e-3: 2.5, 3e-3: 2.1, 1e-2: float("nan")}
        jobs = [s.claim() for _ in range(3)]
        assert s.claim() is None  # the other seeds wait for the grid
        for job in jobs[:2]:
            s.complete(job, metrics=[], evals={}, summary={"val_loss": losses[job.lr]}, seconds=0)
        assert s.counts()["pending"] == 0
        s.fail(jobs[2], "NonFiniteLossError: loss is nan", 0)  # a diverged lr never wins
        follow = s.rows("SELECT seed, lr, phase FROM runs WHERE phase=1 ORDER BY seed")
        assert [tuple(r) for r in follow] == [(1, 3e-3, 1), (2, 3e-3, 1)]
        spec = json.loads(s.rows("SELECT spec FROM runs WHERE phase=1 AND seed=2")[0]["spec"])
        assert spec["train"] == {"seed": 2, "lr": 3e-3}
        # planning again adds nothing: runs are keyed by content
        _plan(s, 1, seeds=(0, 1, 2), lrs=(1e-3, 3e-3, 1e-2), lr_search="first_seed")
        assert s.rows("SELECT COUNT(*) FROM runs")[0][0] == 5


def test_failed_jobs_retry_on_request(tmp_path):
    with Store(tmp_path / "r.db") as s:
        _plan(s, 1)
        job = s.claim()
        s.fail(job, "RuntimeError: boom", 0.1)
        assert s.claim() is None and s.counts()["failed"] == 1
        assert s.retry_failed() == 1 and s.claim() is not None


def test_schema_guard(tmp_path):
    db = tmp_path / "r.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    try:
        Store(db)
    except sqlite3.DatabaseError as e:
        assert "schema version 99" in str(e)
    else:
        raise AssertionError("a newer schema must be refused")

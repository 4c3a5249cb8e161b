"""The sweep's results: one SQLite file holding the spec, configs, runs, per-step metrics and evaluations.

Tables (``SCHEMA``):
  meta      key/value facts: the spec (YAML), data, unigram entropy, versions
  configs   each distinct model config (by content hash) with its analytic sizes
  variants  each (comparison, variant) of the current spec: its config, budget match, or why it is skipped
  groups    runs of one config and recipe that differ only in seed and learning rate, with the lr rule
  runs      one training job each: (kind lm|mqar, config, seed, lr), its state and claim
  metrics   per-step values of a run (loss, lr, val_loss, accuracy...)
  evals     evaluation results of a run (a number and/or a JSON document)

Concurrency: WAL mode, one connection per process, short ``BEGIN IMMEDIATE`` transactions.
A worker claims a job atomically (pending -> running with its claim token), and writes a
finished job's metrics, evaluations and status in one transaction that only succeeds if it
still holds the claim. A job whose worker died (its process is gone, or its heartbeat is
older than ``stale_s``) is handed out again; a job killed mid-way leaves no rows behind,
so redoing it neither loses nor duplicates anything.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configs (
  hash TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  params_total INTEGER, params_active INTEGER, params_embedding INTEGER,
  flops_per_token REAL, cache_bytes_per_token INTEGER,
  cache_4k INTEGER, cache_32k INTEGER, cache_128k INTEGER
);
CREATE TABLE IF NOT EXISTS variants (
  comparison TEXT NOT NULL,
  name TEXT NOT NULL,
  position INTEGER NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'invalid')),
  reason TEXT,
  overrides TEXT NOT NULL,
  config_hash TEXT REFERENCES configs(hash),
  budget TEXT,
  lm_group TEXT,
  mqar_group TEXT,
  note TEXT,
  PRIMARY KEY (comparison, name)
);
CREATE TABLE IF NOT EXISTS comparisons (
  name TEXT PRIMARY KEY,
  position INTEGER NOT NULL,
  title TEXT, question TEXT, budget TEXT, evals TEXT
);
CREATE TABLE IF NOT EXISTS groups (
  key TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  config_hash TEXT NOT NULL,
  template TEXT NOT NULL,
  seeds TEXT NOT NULL,
  lrs TEXT NOT NULL,
  lr_search TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  group_key TEXT NOT NULL REFERENCES groups(key),
  kind TEXT NOT NULL CHECK (kind IN ('lm', 'mqar')),
  config_hash TEXT NOT NULL,
  seed INTEGER NOT NULL,
  lr REAL NOT NULL,
  phase INTEGER NOT NULL,
  spec TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  claim TEXT, worker TEXT, heartbeat REAL,
  created REAL NOT NULL, started REAL, finished REAL, seconds REAL,
  error TEXT, summary TEXT, device TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, phase, id);
CREATE INDEX IF NOT EXISTS runs_by_group ON runs(group_key);
CREATE TABLE IF NOT EXISTS metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  name TEXT NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  name TEXT NOT NULL,
  value REAL,
  data TEXT,
  PRIMARY KEY (run_id, name)
);
"""


def content_hash(obj: Any, n: int = 16) -> str:
    """A stable hash of plain data (sorted-key JSON)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _num(x: Any) -> float | None:
    """A finite float or None (SQLite stores NaN as NULL anyway; say so explicitly)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# -- who holds a job ------------------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def worker_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def token_alive(token: str | None) -> bool | None:
    """True/False for a worker on this host; None when it runs elsewhere (only its heartbeat tells)."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid_s, _, start = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    now = _start_time(pid)
    if now is not None:
        return start in ("?", now)
    if Path("/proc/self/stat").exists():
        return False  # /proc works and the pid is not in it: gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _NotOurs(Exception):
    """The job's claim was taken over: roll the transaction back."""


@dataclass
class Job:
    id: int
    key: str
    group_key: str
    kind: str
    config_hash: str
    seed: int
    lr: float
    spec: dict
    claim: str
    attempts: int


class Store:
    """One process's connection to a sweep database."""

    def __init__(self, path: str | os.PathLike, *, stale_s: float = 1800.0, timeout: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stale_s = stale_s
        self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA busy_timeout = %d" % int(timeout * 1000))
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{self.path}: cannot switch to WAL mode (got {mode}); "
                                           f"put the results on a local file system")
        self.conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process loses no commit
        self.conn.execute("PRAGMA foreign_keys = ON")
        with self.tx():
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    self.conn.execute(stmt)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"{self.path}: schema version {row[0]}, this archlab reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` takes the write lock up front, so two
        workers never both read 'pending' and both take the job)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------------------------
    def set_meta(self, items: dict[str, Any], conn: sqlite3.Connection | None = None) -> None:
        c = conn or self.conn
        for k, v in items.items():
            c.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                      (k, v if isinstance(v, str) else json.dumps(v)))

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM meta")}

    # -- the plan -----------------------------------------------------------------------------
    def write_plan(self, *, meta: dict[str, Any], configs: Iterable[dict], comparisons: Iterable[dict],
                   variants: Iterable[dict], groups: Iterable[dict], runs: Iterable[dict]) -> int:
        """Record the current spec's plan in one transaction; returns the number of new runs.

        Configs, groups and runs are keyed by content, so runs finished earlier (by this spec or
        one sharing configs with it) are kept and not run again; the variant and comparison
        tables describe the current spec only."""
        now = time.time()
        with self.tx() as c:
            self.set_meta(meta, c)
            for cfg in configs:
                c.execute("INSERT OR IGNORE INTO configs(hash, model, params_total, params_active, params_embedding, "
                          "flops_per_token, cache_bytes_per_token, cache_4k, cache_32k, cache_128k) "
                          "VALUES (:hash, :model, :params_total, :params_active, :params_embedding, :flops_per_token, "
                          ":cache_bytes_per_token, :cache_4k, :cache_32k, :cache_128k)", cfg)
            c.execute("DELETE FROM comparisons")
            for row in comparisons:
                c.execute("INSERT INTO comparisons(name, position, title, question, budget, evals) "
                          "VALUES (:name, :position, :title, :question, :budget, :evals)", row)
            c.execute("DELETE FROM variants")
            for v in variants:
                c.execute("INSERT INTO variants(comparison, name, position, status, reason, overrides, config_hash, "
                          "budget, lm_group, mqar_group, note) VALUES (:comparison, :name, :position, :status, :reason, "
                          ":overrides, :config_hash, :budget, :lm_group, :mqar_group, :note)", v)
            for g in groups:
                c.execute("INSERT INTO groups(key, kind, config_hash, template, seeds, lrs, lr_search) "
                          "VALUES (:key, :kind, :config_hash, :template, :seeds, :lrs, :lr_search) "
                          "ON CONFLICT(key) DO UPDATE SET seeds=excluded.seeds, lrs=excluded.lrs, "
                          "lr_search=excluded.lr_search", g)
            before = c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            for r in runs:
                c.execute("INSERT OR IGNORE INTO runs(key, group_key, kind, config_hash, seed, lr, phase, spec, created) "
                          "VALUES (:key, :group_key, :kind, :config_hash, :seed, :lr, :phase, :spec, :created)",
                          {**r, "created": now})
            added = c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - before
            for (key,) in c.execute("SELECT key FROM groups").fetchall():
                added += self._follow_ups(c, key)
        return added

    # -- learning-rate selection --------------------------------------------------------------
    @staticmethod
    def rank_key(kind: str, summary: dict, lr: float) -> tuple:
        """Sort key of a finished run among its learning rates: smaller is better."""
        if kind == "mqar":
            acc = _num(summary.get("best_accuracy"))
            return (-(acc if acc is not None else -1.0), summary.get("steps") or 0, lr)
        loss = _num(summary.get("val_loss"))
        return (loss if loss is not None else math.inf, lr)

    def _follow_ups(self, c: sqlite3.Connection, group_key: str) -> int:
        """With lr_search first_seed: once the first seed's lr grid of a group has finished, add
        the other seeds at the best learning rate. Returns the number of runs added."""
        g = c.execute("SELECT * FROM groups WHERE key=?", (group_key,)).fetchone()
        if g is None or g["lr_search"] != "first_seed":
            return 0
        seeds = json.loads(g["seeds"])
        grid = c.execute("SELECT id, status, lr, summary FROM runs WHERE group_key=? AND phase=0", (group_key,)).fetchall()
        if not grid or any(r["status"] in ("pending", "running") for r in grid):
            return 0
        done = [r for r in grid if r["status"] == "done"]
        if not done:
            return 0
        best = min(done, key=lambda r: self.rank_key(g["kind"], json.loads(r["summary"] or "{}"), r["lr"]))
        template = json.loads(g["template"])
        n = 0
        for seed in seeds[1:]:
            spec = set_seed_lr(template, g["kind"], seed, best["lr"])
            cur = c.execute("INSERT OR IGNORE INTO runs(key, group_key, kind, config_hash, seed, lr, phase, spec, created) "
                            "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                            (content_hash(spec), group_key, g["kind"], g["config_hash"], seed, best["lr"],
                             json.dumps(spec), time.time()))
            n += cur.rowcount
        return n

    # -- claiming and finishing jobs ----------------------------------------------------------
    def _release_dead(self, c: sqlite3.Connection) -> int:
        now = time.time()
        n = 0
        for r in c.execute("SELECT id, claim, worker, heartbeat FROM runs WHERE status='running'").fetchall():
            alive = token_alive(r["worker"])
            stale = r["heartbeat"] is None or now - r["heartbeat"] > self.stale_s
            if alive is False or (alive is None and stale):
                c.execute("UPDATE runs SET status='pending', claim=NULL, worker=NULL, error=? WHERE id=? AND claim IS ?",
                          (f"interrupted (worker {r['worker']} gone); redone", r["id"], r["claim"]))
                n += 1
        return n

    def release_dead(self) -> int:
        """Hand jobs whose worker is gone back to the queue; returns how many."""
        with self.tx() as c:
            return self._release_dead(c)

    def claim(self, device: str = "") -> Job | None:
        """Take the next pending job (first-seed learning-rate grids first, MQAR runs before LM
        runs of the same phase since they take longer), or None when none is pending."""
        token = worker_token()
        with self.tx() as c:
            self._release_dead(c)
            r = c.execute("SELECT * FROM runs WHERE status='pending' ORDER BY phase, kind='lm', id LIMIT 1").fetchone()
            if r is None:
                return None
            claim = f"{token}:{time.time():.6f}"
            now = time.time()
            c.execute("UPDATE runs SET status='running', claim=?, worker=?, heartbeat=?, started=?, attempts=attempts+1, "
                      "device=? WHERE id=? AND status='pending'", (claim, token, now, now, device, r["id"]))
        return Job(r["id"], r["key"], r["group_key"], r["kind"], r["config_hash"], r["seed"], r["lr"],
                   json.loads(r["spec"]), claim, r["attempts"] + 1)

    def heartbeat(self, job: Job) -> None:
        with self.tx() as c:
            c.execute("UPDATE runs SET heartbeat=? WHERE id=? AND claim=?", (time.time(), job.id, job.claim))

    def complete(self, job: Job, *, metrics: Iterable[tuple[str, int, Any]], evals: dict[str, tuple[Any, Any]],
                 summary: dict, seconds: float) -> bool:
        """Write a finished job's rows and mark it done, all or nothing. False when the job is no
        longer ours (it was handed to another worker after this one looked dead): nothing is written."""
        try:
            with self.tx() as c:
                cur = c.execute("UPDATE runs SET status='done', finished=?, seconds=?, summary=?, error=NULL, claim=NULL "
                                "WHERE id=? AND claim=? AND status='running'",
                                (time.time(), seconds, json.dumps(summary), job.id, job.claim))
                if cur.rowcount != 1:
                    raise _NotOurs
                self._write_results(c, job, metrics, evals)
        except _NotOurs:
            return False
        return True

    def _write_results(self, c: sqlite3.Connection, job: Job, metrics, evals) -> None:
        c.execute("DELETE FROM metrics WHERE run_id=?", (job.id,))
        c.execute("DELETE FROM evals WHERE run_id=?", (job.id,))
        c.executemany("INSERT OR REPLACE INTO metrics(run_id, name, step, value) VALUES (?, ?, ?, ?)",
                      ((job.id, name, int(step), _num(value)) for name, step, value in metrics))
        c.executemany("INSERT INTO evals(run_id, name, value, data) VALUES (?, ?, ?, ?)",
                      ((job.id, name, _num(value), None if data is None else json.dumps(data))
                       for name, (value, data) in evals.items()))
        self._follow_ups(c, job.group_key)

    def fail(self, job: Job, error: str, seconds: float) -> bool:
        with self.tx() as c:
            cur = c.execute("UPDATE runs SET status='failed', finished=?, seconds=?, error=?, claim=NULL "
                            "WHERE id=? AND claim=? AND status='running'",
                            (time.time(), seconds, error[-4000:], job.id, job.claim))
            if cur.rowcount == 1:
                self._follow_ups(c, job.group_key)
            return cur.rowcount == 1

    def release(self, job: Job, reason: str) -> None:
        """Give a job back unfinished (the worker is stopping)."""
        with self.tx() as c:
            c.execute("UPDATE runs SET status='pending', claim=NULL, worker=NULL, error=? WHERE id=? AND claim=?",
                      (reason, job.id, job.claim))

    def retry_failed(self) -> int:
        with self.tx() as c:
            return c.execute("UPDATE runs SET status='pending', error=NULL WHERE status='failed'").rowcount

    # -- reading ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("pending", "running", "done", "failed")}
        for r in self.conn.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
            out[r["status"]] = r["n"]
        return out

    def rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()


def set_seed_lr(template: dict, kind: str, seed: int, lr: float) -> dict:
    """A job spec from its group's template: the seed and learning rate filled in."""
    spec = json.loads(json.dumps(template))
    section = "train" if kind == "lm" else "recipe"
    spec[section]["seed"] = int(seed)
    spec[section]["lr"] = float(lr)
    return spec

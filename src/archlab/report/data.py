"""Reading a sweep database into per-comparison results: the runs kept for each variant and
every table column as mean and spread over seeds.

Which runs count: for each variant, its runs (LM and MQAR separately) at the learning rate the
sweep kept. With ``lr_search: first_seed`` that is the rate whose first-seed run scored best
(lowest validation loss; highest MQAR accuracy, then fewest steps), and every seed's run at that
rate; with ``every_seed`` each seed keeps its own best rate. Failed runs never win a rate; a
variant with no finished run shows why (skipped at planning, failed, or not run yet).

Spread is the sample standard deviation over seeds (n - 1 in the denominator); one seed gives none.
"""
from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.sweep.store import Store

# column key -> (header, source, better): source "config:<col>" reads the configs table,
# "eval:<name>" the evals of the kept LM runs, "mqar:<name>" those of the kept MQAR runs
COLUMNS: dict[str, tuple[str, str, str]] = {
    "params": ("params (total)", "config:params_total", "lower"),
    "active": ("params (active)", "config:params_active", "lower"),
    "flops": ("FLOPs/token", "config:flops_per_token", "lower"),
    "cache_tok": ("cache B/token", "config:cache_bytes_per_token", "lower"),
    "cache_4k": ("cache @4k", "config:cache_4k", "lower"),
    "cache_32k": ("cache @32k", "config:cache_32k", "lower"),
    "cache_128k": ("cache @128k", "config:cache_128k", "lower"),
    "tok_s": ("train tok/s", "eval:train_tokens_per_s", "higher"),
    "ppl": ("val ppl", "eval:ppl", "lower"),
    "mqar": ("MQAR acc", "mqar:mqar", "higher"),
    "passkey": ("passkey acc", "eval:passkey", "higher"),
    "ratio_2x": ("loss ratio 2x", "eval:loss_ratio_2x", "lower"),
    "ratio_4x": ("loss ratio 4x", "eval:loss_ratio_4x", "lower"),
}
# which evaluation a column needs (columns of evaluations a comparison did not ask for are left out)
NEEDS = {"ppl": "ppl", "mqar": "mqar", "passkey": "passkey", "ratio_2x": "positions", "ratio_4x": "positions"}


@dataclass
class Stat:
    values: list[float]  # one per seed (missing values left out)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def spread(self) -> float | None:
        if len(self.values) < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))


@dataclass
class VariantResult:
    comparison: str
    name: str
    position: int
    status: str  # ok | skipped (invalid config) | failed | pending
    reason: str | None
    overrides: dict
    note: str
    config_hash: str | None
    budget: dict | None
    sizes: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)  # column key -> Stat
    lr: float | None = None  # learning rate kept for the LM runs
    mqar_lr: float | None = None
    lm_runs: list[int] = field(default_factory=list)  # run ids kept
    mqar_runs: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "seed s lr x: error" of failed runs
    progress: dict[str, int] = field(default_factory=dict)  # runs by status


@dataclass
class ComparisonResult:
    name: str
    title: str
    question: str
    budget: dict
    evals: list[str]
    variants: list[VariantResult]

    def columns(self) -> list[str]:
        cols = [c for c in COLUMNS if NEEDS.get(c) is None or NEEDS[c] in self.evals]
        if all(v.sizes.get("params_total") == v.sizes.get("params_active") for v in self.variants if v.sizes):
            cols.remove("active")  # no MoE here: active equals total
        return cols


@dataclass
class SweepResults:
    path: Path
    meta: dict[str, Any]
    comparisons: list[ComparisonResult]
    counts: dict[str, int]
    conn: sqlite3.Connection = field(repr=False)

    def metric_series(self, run_ids: list[int], name: str) -> list[list[tuple[int, float]]]:
        """[(step, value)] of metric ``name`` for each run."""
        out = []
        for rid in run_ids:
            rows = self.conn.execute("SELECT step, value FROM metrics WHERE run_id=? AND name=? AND value IS NOT NULL "
                                     "ORDER BY step", (rid, name)).fetchall()
            out.append([(int(s), float(v)) for s, v in rows])
        return out

    def eval_values(self, run_ids: list[int], name: str) -> list[float]:
        """The numbers an evaluation recorded for each run that has one."""
        out = []
        for rid in run_ids:
            row = self.conn.execute("SELECT value FROM evals WHERE run_id=? AND name=?", (rid, name)).fetchone()
            if row is not None and row[0] is not None:
                out.append(float(row[0]))
        return out

    def eval_data(self, run_ids: list[int], name: str) -> list[Any]:
        out = []
        for rid in run_ids:
            row = self.conn.execute("SELECT data FROM evals WHERE run_id=? AND name=?", (rid, name)).fetchone()
            if row is not None and row[0] is not None:
                out.append(json.loads(row[0]))
        return out

    def close(self) -> None:
        self.conn.close()


def _meta(conn: sqlite3.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in conn.execute("SELECT key, value FROM meta"):
        try:
            out[k] = json.loads(v) if k in ("data", "unigram_entropy", "seeds", "lrs", "train") else v
        except ValueError:
            out[k] = v
    return out


def _select(rows: list[sqlite3.Row], kind: str, lr_search: str, seeds: list[int], lrs: list[float]
            ) -> tuple[float | None, list[sqlite3.Row]]:
    """(lr kept or None, the kept runs one per seed) among a group's runs."""
    # runs of seeds or rates the current spec no longer lists are left out
    rows = [r for r in rows if r["seed"] in seeds and any(math.isclose(r["lr"], x) for x in lrs)]
    done = [r for r in rows if r["status"] == "done"]
    rank = lambda r: Store.rank_key(kind, json.loads(r["summary"] or "{}"), r["lr"])  # noqa: E731
    if lr_search == "first_seed":
        grid = [r for r in done if r["seed"] == seeds[0] and r["phase"] == 0]
        if not grid:
            return None, []
        lr = min(grid, key=rank)["lr"]
        kept = {}
        for r in done:
            if math.isclose(r["lr"], lr):
                kept.setdefault(r["seed"], r)
        return lr, [kept[s] for s in seeds if s in kept]
    best: dict[int, sqlite3.Row] = {}
    for r in done:
        if r["seed"] not in best or rank(r) < rank(best[r["seed"]]):
            best[r["seed"]] = r
    kept_rows = [best[s] for s in seeds if s in best]
    lrs_kept = {r["lr"] for r in kept_rows}
    return (lrs_kept.pop() if len(lrs_kept) == 1 else None), kept_rows


def load_results(path: str | Path) -> SweepResults:
    """Everything the report shows, from a sweep database (read-only; a running sweep may keep writing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results database (archlab sweep writes OUT/results.db)")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not an SQLite database ({e})") from None
    if not {"meta", "variants", "runs", "configs", "comparisons"} <= tables:
        raise ValueError(f"{path}: not an archlab sweep database (tables {sorted(tables)})")
    meta = _meta(conn)
    seeds_default = meta.get("seeds") or [0]
    groups = {r["key"]: r for r in conn.execute("SELECT * FROM groups")}
    configs = {r["hash"]: dict(r) for r in conn.execute("SELECT * FROM configs")}
    evals_by_run: dict[int, dict[str, float | None]] = {}
    for r in conn.execute("SELECT run_id, name, value FROM evals"):
        evals_by_run.setdefault(r["run_id"], {})[r["name"]] = r["value"]
    runs_by_group: dict[str, list[sqlite3.Row]] = {}
    for r in conn.execute("SELECT * FROM runs ORDER BY id"):
        runs_by_group.setdefault(r["group_key"], []).append(r)
    counts = {s: 0 for s in ("pending", "running", "done", "failed")}
    for r in conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
        counts[r[0]] = r[1]

    comparisons = []
    for c in conn.execute("SELECT * FROM comparisons ORDER BY position"):
        variants = []
        for v in conn.execute("SELECT * FROM variants WHERE comparison=? ORDER BY position", (c["name"],)):
            vr = VariantResult(c["name"], v["name"], v["position"], "ok" if v["status"] == "ok" else "skipped",
                               v["reason"], json.loads(v["overrides"] or "{}"), v["note"] or "", v["config_hash"],
                               json.loads(v["budget"]) if v["budget"] else None)
            if v["config_hash"] in configs:
                vr.sizes = configs[v["config_hash"]]
            for kind, gkey in (("lm", v["lm_group"]), ("mqar", v["mqar_group"])):
                if not gkey or gkey not in groups:
                    continue
                g = groups[gkey]
                rows = runs_by_group.get(gkey, [])
                for r in rows:
                    vr.progress[r["status"]] = vr.progress.get(r["status"], 0) + 1
                    if r["status"] == "failed":
                        vr.failures.append(f"{kind} seed {r['seed']} lr {r['lr']:g}: {r['error']}")
                lr, kept = _select(rows, kind, g["lr_search"], json.loads(g["seeds"]) or seeds_default,
                                   json.loads(g["lrs"]))
                if kind == "lm":
                    vr.lr, vr.lm_runs = lr, [r["id"] for r in kept]
                else:
                    vr.mqar_lr, vr.mqar_runs = lr, [r["id"] for r in kept]
            for col, (_, source, _) in COLUMNS.items():
                where, _, name = source.partition(":")
                if where == "config":
                    x = vr.sizes.get(name)
                    vr.stats[col] = Stat([float(x)] if x is not None else [])
                else:
                    ids = vr.lm_runs if where == "eval" else vr.mqar_runs
                    vals = [evals_by_run.get(i, {}).get(name) for i in ids]
                    vr.stats[col] = Stat([float(x) for x in vals if x is not None and math.isfinite(x)])
            if vr.status == "ok" and not vr.lm_runs:
                vr.status = "failed" if vr.failures and not vr.progress.get("pending") and not vr.progress.get("running") \
                    else "pending"
            variants.append(vr)
        comparisons.append(ComparisonResult(c["name"], c["title"] or c["name"], c["question"] or "",
                                            json.loads(c["budget"] or "{}"), json.loads(c["evals"] or "[]"), variants))
    return SweepResults(path, meta, comparisons, counts, conn)

"""Report tables from a made-up results database: runs kept per variant, mean ± spread over
seeds, best values marked, skipped variants listed with their reason."""
from __future__ import annotations

import math

import pytest

from archlab.report.data import Stat, load_results
from archlab.report.plots import pareto_front
from archlab.report.render import summary_text
from archlab.report.tables import fmt_bytes, fmt_count, fmt_stat, markdown_table, notes, text_table


def test_runs_kept_are_the_best_lr_and_every_seed(fake_db):
    res = load_results(fake_db)
    try:
        kv, norm = res.comparisons
        mha, mqa, bad = kv.variants
        assert (mha.lr, len(mha.lm_runs), len(mha.mqar_runs)) == (0.003, 2, 2)
        assert mha.stats["ppl"].values == pytest.approx([math.exp(2.0), math.exp(2.02)])
        assert mqa.stats["mqar"].values == pytest.approx([0.90, 0.86])
        assert mqa.stats["cache_32k"].values[0] < mha.stats["cache_32k"].values[0]
        assert bad.status == "skipped" and "nonesuch" in bad.reason
        pre, post = norm.variants
        assert pre.lm_runs == mha.lm_runs  # the baseline is one model, trained once
        assert res.meta["unigram_entropy"] == 3.3 and res.counts["done"] == 3 * 3 + 2 * 2 - 1  # 3 LM groups x (2 lrs + 1 seed), 2 MQAR groups x 2 seeds
        assert res.counts["failed"] == 1 and post.lr == 0.003 and len(post.lm_runs) == 2
        assert any("run failed" in n and "not finite" in n for n in notes(norm))
        assert "mqar" not in norm.columns() and "ratio_4x" in kv.columns() and "active" not in kv.columns()
    finally:
        res.close()


def test_text_and_markdown_tables_mark_the_best(fake_db):
    res = load_results(fake_db)
    try:
        kv = res.comparisons[0]
        text = text_table(kv)
        mha_line = next(ln for ln in text.splitlines() if ln.startswith("mha"))
        mqa_line = next(ln for ln in text.splitlines() if ln.startswith("mqa"))
        assert f"{(math.exp(2.0) + math.exp(2.02)) / 2:.3f} ± " in mha_line and mha_line.count("*") >= 3  # ppl, MQAR, passkey, ratio
        assert "MiB*" in mqa_line  # the smaller cache
        assert "skipped" in text
        md = markdown_table(kv)
        assert md.splitlines()[0].startswith("| variant | params (total)")
        assert f"**{fmt_stat('ppl', kv.variants[0].stats['ppl'])}**" in md
        assert any("nonesuch" in n for n in notes(kv))
        summary = summary_text(res)
        assert "== MHA vs MQA ==" in summary
        # the terminal keeps what went wrong and leaves the spec's remarks to the report pages
        assert "mqa: one key/value head" in notes(kv) and "one key/value head" not in summary
        assert "note: bad: skipped" in summary and "note: post: run failed" in summary
    finally:
        res.close()


def test_formatting():
    assert fmt_count(139840) == "140k" and fmt_count(1.5e9) == "1.5G" and fmt_count(999) == "999"
    assert fmt_bytes(16 * 2**20) == "16 MiB" and fmt_bytes(8704) == "8.5 KiB" and fmt_bytes(12) == "12 B"
    assert fmt_stat("mqar", Stat([0.9, 0.86])) == "88.0% ± 2.8"
    assert fmt_stat("ppl", Stat([7.0])) == "7.000" and fmt_stat("ppl", Stat([])) == "-"


def test_pareto_front():
    pts = [(1.0, 0.2), (2.0, 0.9), (2.0, 0.5), (4.0, 0.8), (8.0, 1.0), (0.5, 0.1)]
    assert pareto_front(pts) == [(0.5, 0.1), (1.0, 0.2), (2.0, 0.9), (8.0, 1.0)]


def test_missing_or_foreign_database(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nope.db")
    import sqlite3

    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("CREATE TABLE t (x)")
    con.close()
    with pytest.raises(ValueError, match="not an archlab sweep database"):
        load_results(tmp_path / "other.db")

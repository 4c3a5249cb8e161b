"""The written report: files, a self-contained HTML page (no external references), Markdown with
its figures, and the CLI. The page as a browser renders it: test_report_browser.py."""
from __future__ import annotations

import re

from archlab.cli import main
from archlab.report.render import write_report


def test_report_files_are_self_contained(fake_db, tmp_path):
    paths = write_report(fake_db, tmp_path / "rep")
    html = paths.html.read_text()
    assert html.count("<table class='results'") == 2
    imgs = re.findall(r"<img [^>]*src='([^']*)'", html)
    # kv: loss, positions, throughput; norm: loss only (its shared baseline has positions and
    # throughput from kv, but norm does not ask for them); and the recall-vs-cache Pareto plot
    assert len(imgs) == 5 == len(paths.figures)
    assert sorted(p.stem for p in paths.figures) == ["kv-loss", "kv-positions", "kv-throughput", "norm-loss",
                                                      "recall-vs-cache"]
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", html)  # nothing to fetch: opens offline
    assert "nonesuch" in html and "Pareto" in html
    md = paths.markdown.read_text()
    assert md.count("| variant |") == 2
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (paths.markdown.parent / link).is_file()
    assert "== MHA vs MQA ==" in paths.summary.read_text()


def test_report_cli(fake_db, tmp_path, capsys):
    assert main(["report", str(fake_db), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "MHA vs MQA" in out and "report.html" in out and (tmp_path / "r" / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing.db")]) == 2

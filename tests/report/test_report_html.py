"""The written report: files, a self-contained HTML page (no external references), Markdown with
its figures, the CLI, and a render in headless Chromium that finds every table and every
figure decoded (skipped with a reason when Chromium is not installed)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from archlab.cli import main
from archlab.report.render import write_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_report_files_are_self_contained(fake_db, tmp_path):
    paths = write_report(fake_db, tmp_path / "rep")
    html = paths.html.read_text()
    assert html.count("<table class='results'") == 2
    imgs = re.findall(r"<img [^>]*src='([^']*)'", html)
    # kv: loss, positions, throughput; norm: loss, positions (pre only: the shared baseline),
    # throughput (pre); and the recall-vs-cache Pareto plot
    assert len(imgs) == 7 == len(paths.figures)
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


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium); "
                                             "the headless render check needs it")
def test_report_renders_in_headless_chromium(fake_db, tmp_path):
    paths = write_report(fake_db, tmp_path / "rep")
    # a copy of the page that records, once loaded, how many tables and decoded images it has
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
              "document.body.dataset.tables = document.querySelectorAll('table.results').length;"
              "document.body.dataset.rows = document.querySelectorAll('table.results tbody tr').length;"
              "document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 100).length;"
              "document.body.dataset.images = imgs.length; });</script>")
    probe.write_text(paths.html.read_text().replace("</body>", script + "</body>"))
    profile = tmp_path / "profile"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", run.stdout)
    assert body, run.stderr[-2000:]
    attrs = dict(re.findall(r'data-(\w+)="(\d+)"', body.group(1)))
    assert attrs == {"tables": "2", "rows": "5", "decoded": "7", "images": "7"}, (attrs, run.stderr[-1000:])
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1366,900",
                    f"--screenshot={shot}", paths.html.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with content, not a blank frame

"""The HTML report as a browser shows it: headless Chromium loads the page at a laptop's window
size, and the rendered DOM must hold every comparison's table and every figure decoded from its
embedded PNG, without the page scrolling sideways; a screenshot must show content, not a blank
frame. Skipped, with the reason, only when no Chromium binary is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from archlab.report.data import load_results
from archlab.report.render import write_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1366,900"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH (chromium, chromium-browser or "
                                                         "google-chrome; Debian: apt-get install -y chromium): the "
                                                         "headless render check needs one")

# runs once the page has loaded: what the browser made of it, written into the DOM as JSON
PROBE = """<script>window.addEventListener('load', () => {
  const out = {
    tables: [...document.querySelectorAll('table.results')].map(t => ({
      comparison: t.dataset.comparison, rows: t.tBodies[0].rows.length, width: t.getBoundingClientRect().width})),
    figures: [...document.querySelectorAll('figure')].map(f => {
      const i = f.querySelector('img');
      return {stem: f.dataset.figure, embedded: i.getAttribute('src').startsWith('data:image/png;base64,'),
              decoded: i.complete && i.naturalWidth > 0, natural: i.naturalWidth, shown: i.clientWidth};
    }),
    images: document.images.length,
    page: {scroll: document.documentElement.scrollWidth, inner: window.innerWidth},
  };
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _chromium(*args, profile, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def report(fake_db, tmp_path):
    paths = write_report(fake_db, tmp_path / "rep")
    res = load_results(fake_db)
    try:
        comparisons = {c.name: len(c.variants) for c in res.comparisons}
    finally:
        res.close()
    return paths, comparisons


def test_rendered_dom_has_every_table_and_figure(report, tmp_path):
    paths, comparisons = report
    probe = tmp_path / "probe.html"
    probe.write_text(paths.html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    run = _chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium: {run.stderr[-2000:]}"
    dom = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    assert {t["comparison"]: t["rows"] for t in dom["tables"]} == comparisons
    assert all(t["width"] > 300 for t in dom["tables"]), dom["tables"]
    # every figure written to figures/ is on the page, embedded, decoded and shown at a readable size
    assert sorted(f["stem"] for f in dom["figures"]) == sorted(p.stem for p in paths.figures)
    assert dom["images"] == len(paths.figures)
    for f in dom["figures"]:
        assert f["embedded"] and f["decoded"] and f["natural"] >= 400 and f["shown"] >= 380, f
    # wide tables scroll inside their own box: the page itself fits a 1366-pixel laptop screen
    assert dom["page"]["scroll"] <= dom["page"]["inner"], dom["page"]


def test_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    paths, _ = report
    shot = tmp_path / "shot.png"
    # the virtual-time budget lets every tile paint before the capture (without it, a frame can be half drawn)
    run = _chromium("--virtual-time-budget=5000", f"--screenshot={shot}", paths.html.as_uri(), profile=tmp_path / "profile")
    assert shot.is_file(), f"Chromium wrote no screenshot: {run.stderr[-2000:]}"
    img = Image.open(shot).convert("RGB")
    assert img.size == (1366, 900)
    colours = img.getcolors(maxcolors=1 << 20)
    background = max(colours)[0]
    # text, table borders and the figures: a blank or half-drawn frame is one colour, or nearly
    assert len(colours) > 200, len(colours)
    assert background < 0.97 * 1366 * 900, f"{background} of {1366 * 900} pixels are the background colour"

"""The sweep report: tables (mean ± spread over seeds, best marked) and figures from a results database.

    from archlab.report import write_report
    paths = write_report("runs/chapter/results.db")      # report.html, report.md, summary.txt, figures/

Command line: ``archlab report RESULTS.db [--out DIR]``. matplotlib (extra ``plot``) draws the figures.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "write_report": "archlab.report.render",
    "summary_text": "archlab.report.render",
    "ReportPaths": "archlab.report.render",
    "load_results": "archlab.report.data",
    "SweepResults": "archlab.report.data",
    "COLUMNS": "archlab.report.data",
    "pareto_front": "archlab.report.plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'archlab.report' has no attribute {name!r}")

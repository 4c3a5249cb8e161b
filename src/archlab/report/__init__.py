"""The sweep report: tables (mean ± spread over seeds, best marked) and figures from a results database.

    from archlab.report import write_report
    paths = write_report("runs/chapter/results.db")      # report.html, report.md, summary.txt, figures/

Command line: ``archlab report RESULTS.db [--out DIR]``. matplotlib (extra ``plot``) draws the figures.
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""``archlab report RESULTS.db [--out DIR]``."""
from __future__ import annotations

import argparse


def add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and figures (HTML + Markdown) from a sweep's results database",
                       description="Write report.html (self-contained: opens offline), report.md with figures/, and "
                                   "summary.txt from a results database written by archlab sweep; print the tables.")
    p.add_argument("db", help="the sweep's results.db")
    p.add_argument("--out", default=None, help="folder for the report (default: report/ beside the database)")
    p.add_argument("--quiet", action="store_true", help="do not print the tables")
    p.set_defaults(fn=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from archlab.report.data import load_results
    from archlab.report.render import summary_text, write_report

    paths = write_report(args.db, args.out)
    if not args.quiet:
        res = load_results(args.db)
        try:
            print(summary_text(res))
        finally:
            res.close()
    print(f"\nreport: {paths.html.resolve()}\n        {paths.markdown.resolve()}")
    return 0

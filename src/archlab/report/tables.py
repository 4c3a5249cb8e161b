"""The comparison tables: cells as "mean ± spread", the best mean of each column marked,
written as plain text (terminal), Markdown or HTML."""
from __future__ import annotations

import html
import math
from dataclasses import dataclass

from archlab.report.data import COLUMNS, ComparisonResult, Stat, VariantResult

# the terminal summary's columns (the full table is in the HTML and Markdown report)
SHORT_COLUMNS = ("params", "cache_32k", "tok_s", "ppl", "mqar", "passkey", "ratio_4x")


def fmt_count(x: float) -> str:
    """123456 -> '123k', 1.5e9 -> '1.50G' (SI, 3 significant digits)."""
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            v = x / div
            return f"{v:.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{x:.3g}" if x != int(x) else str(int(x))


def fmt_bytes(x: float) -> str:
    """Bytes in binary units, 3 significant digits: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else (f"{x:.3g} {unit}" if abs(x) < 100 else f"{x:.0f} {unit}")
        x /= 1024
    return str(x)


def _fmt_value(col: str, x: float) -> str:
    if col.startswith("cache"):
        return fmt_bytes(x)
    if col in ("params", "active", "flops", "tok_s"):
        return fmt_count(x)
    if col in ("mqar", "passkey"):
        return f"{100 * x:.1f}%"
    if col == "ppl":
        return f"{x:.3f}" if x < 100 else f"{x:.1f}"
    return f"{x:.3f}"


def fmt_stat(col: str, s: Stat) -> str:
    """'mean ± spread' (the spread in the column's unit), the mean alone with one seed, '-' with none."""
    if s.mean is None:
        return "-"
    text = _fmt_value(col, s.mean)
    if s.spread is not None and not COLUMNS[col][1].startswith("config:"):
        sp = s.spread
        if col in ("mqar", "passkey"):
            text += f" ± {100 * sp:.1f}"
        elif col in ("tok_s",):
            text += f" ± {fmt_count(sp)}"
        else:
            text += f" ± {sp:.3f}" if col != "ppl" or s.mean < 100 else f" ± {sp:.1f}"
    return text


def best_rows(comp: ComparisonResult, col: str) -> set[str]:
    """Names of the variants whose mean is best in ``col`` (ties all marked; none when fewer than
    two variants have a value or all are equal)."""
    better = COLUMNS[col][2]
    vals = {v.name: v.stats[col].mean for v in comp.variants if v.stats.get(col) and v.stats[col].mean is not None}
    if len(vals) < 2 or len(set(vals.values())) == 1:
        return set()
    target = min(vals.values()) if better == "lower" else max(vals.values())
    return {n for n, x in vals.items() if math.isclose(x, target, rel_tol=1e-9, abs_tol=1e-12)}


@dataclass
class Cell:
    text: str
    best: bool = False


def table_cells(comp: ComparisonResult, columns: list[str] | None = None) -> tuple[list[str], list[list[Cell]]]:
    """(headers, rows of cells): first column the variant (with the kept lr and seeds)."""
    cols = columns or comp.columns()
    cols = [c for c in cols if c in comp.columns()]
    best = {c: best_rows(comp, c) for c in cols}
    headers = ["variant"] + [COLUMNS[c][0] for c in cols]
    rows = []
    for v in comp.variants:
        label = v.name
        if v.status == "skipped":
            rows.append([Cell(label)] + [Cell("skipped")] + [Cell("") for _ in cols[1:]])
            continue
        cells = [Cell(label)]
        for c in cols:
            st = v.stats.get(c, Stat([]))
            cells.append(Cell(fmt_stat(c, st), v.name in best[c]))
        if v.status in ("failed", "pending"):
            # the first measured column says why the row is empty (the sizes come from the config)
            measured = [i for i, c in enumerate(cols) if not COLUMNS[c][1].startswith("config:")]
            if measured:
                cells[1 + measured[0]].text = v.status
        rows.append(cells)
    return headers, rows


def text_table(comp: ComparisonResult, columns: tuple[str, ...] = SHORT_COLUMNS) -> str:
    """A plain-text table for the terminal; '*' marks the best value of each column."""
    from archlab.cli import table

    headers, rows = table_cells(comp, list(columns))
    return table([[c.text + ("*" if c.best else "") for c in r] for r in rows], headers)


def markdown_table(comp: ComparisonResult) -> str:
    headers, rows = table_cells(comp)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["--:"] * (len(headers) - 1)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join((f"**{esc(c.text)}**" if c.best else esc(c.text)) for c in r) + " |")
    return "\n".join(lines)


def html_table(comp: ComparisonResult) -> str:
    headers, rows = table_cells(comp)
    cols = comp.columns()
    arrows = [""] + [(" ↓" if COLUMNS[c][2] == "lower" else " ↑") for c in cols]
    head = "".join(f"<th>{html.escape(h)}<span class='dir'>{a}</span></th>" for h, a in zip(headers, arrows))
    body = []
    for v, r in zip(comp.variants, rows):
        tds = []
        for i, c in enumerate(r):
            cls = ' class="best"' if c.best else ""
            text = html.escape(c.text)
            if i == 0:
                lr = f"<div class='sub'>lr {v.lr:g}, {len(v.lm_runs)} seed{'s' if len(v.lm_runs) != 1 else ''}</div>" \
                    if v.lr is not None else ""
                tds.append(f"<th scope='row'>{text}{lr}</th>")
            else:
                tds.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr class='{v.status}'>" + "".join(tds) + "</tr>")
    return (f"<div class='tablewrap'><table class='results' data-comparison='{html.escape(comp.name)}'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def notes(comp: ComparisonResult, *, remarks: bool = True) -> list[str]:
    """Lines under a table: skipped variants and why, failed runs, budget matches off tolerance,
    and (``remarks``) each variant's note from the spec."""
    out = []
    for v in comp.variants:
        if v.status == "skipped":
            out.append(f"{v.name}: skipped, its config does not validate: {v.reason}")
        elif v.status == "pending":
            out.append(f"{v.name}: not finished yet ({', '.join(f'{n} {k}' for k, n in sorted(v.progress.items()))})")
        for f in v.failures:
            out.append(f"{v.name}: run failed ({f})")
        b = v.budget
        if b and b.get("match") not in (None, "none") and b.get("rel_error") is not None and not b.get("within_tolerance", True):
            out.append(f"{v.name}: {b['match']} matched only to {100 * b['rel_error']:+.1f}% of the reference "
                       f"(adjusting {b['adjust']})")
        if v.note and remarks:
            out.append(f"{v.name}: {v.note}")
    return out

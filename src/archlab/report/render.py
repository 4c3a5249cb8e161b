"""The report files: ``report.html`` (one self-contained page: styles inline, figures embedded as
base64 PNG, opens offline) and ``report.md`` (the same tables in Markdown, figures as files
under ``figures/``), plus ``summary.txt``, the terminal tables.

    paths = write_report("runs/chapter/results.db", "runs/chapter/report")
"""
from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

from archlab.report.data import COLUMNS, SweepResults, load_results
from archlab.report.plots import comparison_figures, recall_vs_cache
from archlab.report.tables import html_table, markdown_table, notes, text_table

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d1d1f;margin:0;background:#fafafa}
main{max-width:1320px;margin:0 auto;padding:18px 24px 48px}
h1{font-size:22px;margin:4px 0 6px} h2{font-size:18px;margin:30px 0 6px;border-bottom:1px solid #ddd;padding-bottom:3px}
p.lead{color:#444;margin:4px 0 10px} .meta{color:#555;font-size:12.5px} .meta code{font-size:12px}
nav{font-size:13px;margin:8px 0 4px} nav a{margin-right:14px;color:#0b57d0;text-decoration:none}
.tablewrap{overflow-x:auto;margin:8px 0}
table.results{border-collapse:collapse;font-size:12.5px;background:#fff;white-space:nowrap}
table.results th,table.results td{border:1px solid #e2e2e2;padding:4px 7px;text-align:right}
table.results thead th{background:#f0f2f5;font-weight:600;position:sticky;top:0}
table.results th[scope=row]{text-align:left;font-weight:600;background:#fcfcfc}
table.results td.best{font-weight:700;background:#e6f4ea}
table.results .dir{color:#888;font-weight:400} .sub{font-weight:400;color:#777;font-size:11px}
tr.skipped td,tr.failed td,tr.pending td{color:#999;font-style:italic}
ul.notes{font-size:12.5px;color:#555;margin:4px 0 8px;padding-left:20px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px;margin-top:8px}
figure{margin:0;background:#fff;border:1px solid #e2e2e2;padding:6px} figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#555;margin-top:3px}
dl.legend{font-size:12.5px;color:#444;display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}
dl.legend dt{font-weight:600}
"""

LEGEND = {
    "params (total)": "all parameters, embedding and head included",
    "params (active)": "parameters used per token (MoE: routed experts actually chosen)",
    "FLOPs/token": "forward FLOPs per token at the training length (analytic, archlab.analysis)",
    "cache B/token": "bf16 cache bytes each new token adds while every window is still filling",
    "cache @4k/32k/128k": "bf16 cache (KV, latent or recurrent state) of one request of that many tokens",
    "train tok/s": "median training tokens/s over the run's steps (the machine was shared by the sweep's workers)",
    "val ppl": "perplexity on the validation split (archlab.eval.perplexity)",
    "MQAR acc": "held-out multi-query associative recall accuracy, the architecture trained from scratch on the task",
    "passkey acc": "share of passkey prompts answered exactly, over the spec's lengths and depths",
    "loss ratio kx": "mean loss at contexts ((k-1/2)L, kL] over the mean at (L/2, L], L the training length: "
                     "1 = as good as at the training length, above 1 = extrapolation fails",
    "mean ± spread": "mean over seeds ± their sample standard deviation; bold/green (or * in the terminal): best "
                     "mean of the column (↓ lower is better, ↑ higher)",
}


@dataclass
class ReportPaths:
    html: Path
    markdown: Path
    summary: Path
    figures: list[Path]


def summary_text(res: SweepResults) -> str:
    """The terminal tables: one per comparison, short columns, '*' marks the best of a column; under
    each, only what went wrong (skipped, failed, unfinished, budget off) -- the spec's remarks on
    the variants are in the HTML and Markdown report."""
    out = []
    for comp in res.comparisons:
        out.append(f"== {comp.title} ==")
        out.append(text_table(comp))
        for n in notes(comp, remarks=False):
            out.append(f"  note: {n}")
        out.append("")
    out.append("(mean ± spread over seeds; * best of the column; cache @32k = bf16 bytes of one 32k-token request; "
               "ratio 4x = loss at 4x the training length / loss at its end)")
    return "\n".join(out)


def _overview(res: SweepResults) -> list[tuple[str, str]]:
    m = res.meta
    data = m.get("data") or {}
    rows = [("spec", f"{m.get('spec_name', '?')} (scale {m.get('scale', 'default')})"),
            ("data", f"{data.get('corpus')} / {data.get('tokenizer')}: {data.get('train_tokens') or 0:,} training tokens, "
                     f"{data.get('val_tokens') or 0:,} validation tokens"),
            ("budget", f"{int(m.get('tokens', 0)):,} training tokens per run ({m.get('steps')} steps at sequence length "
                       f"{m.get('seq_len')})"),
            ("seeds, learning rates", f"seeds {m.get('seeds')}; {_lr_text(m)}"),
            ("runs", ", ".join(f"{n} {k}" for k, n in res.counts.items() if n))]
    mq = _mqar_line(m)
    if mq:
        rows.append(("MQAR", mq))
    if isinstance(m.get("unigram_entropy"), (int, float)):
        rows.append(("unigram entropy", f"{m['unigram_entropy']:.3f} nats/token on the validation split (a model that "
                                        f"knows only token frequencies)"))
    rows.append(("written", f"{time.strftime('%Y-%m-%d %H:%M')} from {res.path.name}; archlab {m.get('archlab_version')}, "
                            f"torch {m.get('torch_version')}"))
    return rows


def _lr_text(m: dict) -> str:
    lrs = m.get("lrs") or []
    if len(lrs) == 1:
        return f"one learning rate, {lrs[0]:g}"
    how = "on the first seed, best kept for the others" if m.get("lr_search") == "first_seed" else "on every seed, best kept per seed"
    return f"lr grid {lrs} ({how})"


def _mqar_line(meta: dict) -> str | None:
    """How the recall column was measured, from the spec as run."""
    import yaml

    try:
        mq = ((yaml.safe_load(meta.get("spec") or "") or {}).get("evals") or {}).get("mqar")
    except yaml.YAMLError:
        return None
    if not mq:
        return None
    t, r = mq.get("task", {}), mq.get("recipe", {})
    lrs = mq.get("lrs") or [r.get("lr")]
    over = mq.get("set") or {}
    text = (f"vocabulary {t.get('vocab_size')}, {t.get('seq_len')} tokens, {t.get('n_pairs')} key-value pairs; each "
            f"architecture trained from scratch on it for up to {r.get('steps')} steps of {r.get('batch_size')} "
            f"(lr {', '.join(f'{x:g}' for x in lrs)}), accuracy on {r.get('eval_examples')} held-out sequences")
    if over:
        text += "; trained with " + ", ".join(f"{k}={v}" for k, v in over.items()) + " (recall needs the width)"
    return text


def _budget_line(comp) -> str:
    b = comp.budget or {}
    if b.get("match", "none") == "none":
        return "Matched on training tokens only."
    ref = b.get("reference") or (comp.variants[0].name if comp.variants else "?")
    return (f"Matched on training tokens and {b['match'].replace('_', ' ')} (to {ref}), adjusting {b.get('adjust')} "
            f"(tolerance {100 * b.get('tolerance', 0):.0f}%).")


def render_html(res: SweepResults, figures: dict[str, list[tuple[str, str, bytes]]], pareto: bytes | None) -> str:
    esc = html.escape
    m = res.meta
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>archlab sweep: {esc(str(m.get('spec_name', '')))}</title><style>{CSS}</style></head><body><main>",
             f"<h1>archlab sweep: {esc(str(m.get('spec_name', '')))}</h1>"]
    if m.get("description"):
        parts.append(f"<p class='lead'>{esc(m['description'])}</p>")
    parts.append("<div class='meta'>" + "<br>".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in _overview(res)) + "</div>")
    links = [f"<a href='#{esc(c.name)}'>{esc(c.title)}</a>" for c in res.comparisons]
    if pareto is not None:
        links.append("<a href='#recall'>Recall vs cache</a>")
    links.append("<a href='#legend'>Columns</a>")
    parts.append("<nav>" + "".join(links) + "</nav>")
    for comp in res.comparisons:
        parts.append(f"<section id='{esc(comp.name)}'><h2>{esc(comp.title)}</h2>")
        if comp.question:
            parts.append(f"<p class='lead'>{esc(comp.question)}</p>")
        parts.append(f"<p class='meta'>{esc(_budget_line(comp))}</p>")
        parts.append(html_table(comp))
        ns = notes(comp)
        if ns:
            parts.append("<ul class='notes'>" + "".join(f"<li>{esc(n)}</li>" for n in ns) + "</ul>")
        figs = figures.get(comp.name, [])
        if figs:
            parts.append("<div class='figs'>")
            for stem, caption, png in figs:
                b64 = base64.b64encode(png).decode()
                parts.append(f"<figure data-figure='{esc(stem)}'><img alt='{esc(caption)}' "
                             f"src='data:image/png;base64,{b64}'><figcaption>{esc(caption)}</figcaption></figure>")
            parts.append("</div>")
        parts.append("</section>")
    if pareto is not None:
        b64 = base64.b64encode(pareto).decode()
        parts.append("<section id='recall'><h2>Recall against cache memory</h2><p class='lead'>Every variant with an MQAR "
                     "result: accuracy against the bf16 cache of one 32k-token request. The dashed line is the Pareto "
                     "front: no other variant has a smaller cache and better recall.</p><div class='figs'>"
                     f"<figure data-figure='recall-vs-cache'><img alt='recall against cache bytes' "
                     f"src='data:image/png;base64,{b64}'><figcaption>MQAR accuracy against cache bytes (Pareto front)"
                     f"</figcaption></figure></div></section>")
    parts.append("<section id='legend'><h2>Columns</h2><dl class='legend'>" +
                 "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in LEGEND.items()) + "</dl>")
    spec = m.get("spec")
    if spec:
        parts.append(f"<details><summary>the spec as run</summary><pre>{esc(spec)}</pre></details>")
    parts.append("</section></main></body></html>")
    return "\n".join(parts)


def render_markdown(res: SweepResults, figures: dict[str, list[tuple[str, str, bytes]]], pareto: bool,
                    fig_dir: str) -> str:
    m = res.meta
    lines = [f"# archlab sweep: {m.get('spec_name', '')}", ""]
    if m.get("description"):
        lines += [m["description"], ""]
    lines += [f"- **{k}**: {v}" for k, v in _overview(res)] + [""]
    for comp in res.comparisons:
        lines += [f"## {comp.title}", ""]
        if comp.question:
            lines += [comp.question, ""]
        lines += [_budget_line(comp), "", markdown_table(comp), ""]
        lines += [f"- {n}" for n in notes(comp)]
        if notes(comp):
            lines.append("")
        for stem, caption, _ in figures.get(comp.name, []):
            lines += [f"![{caption}]({fig_dir}/{stem}.png)", ""]
    if pareto:
        lines += ["## Recall against cache memory", "", f"![recall against cache bytes]({fig_dir}/recall-vs-cache.png)", ""]
    lines += ["## Columns", ""] + [f"- **{k}**: {v}" for k, v in LEGEND.items()] + [""]
    return "\n".join(lines)


def write_report(db: str | Path, out: str | Path | None = None) -> ReportPaths:
    """Write report.html, report.md, summary.txt and figures/*.png for the sweep in ``db``
    (default folder: ``report/`` beside the database)."""
    db = Path(db)
    out = Path(out) if out is not None else db.parent / "report"
    res = load_results(db)
    try:
        figures = {c.name: comparison_figures(res, c) for c in res.comparisons}
        pareto = recall_vs_cache(res)
        fig_dir = out / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for figs in figures.values():
            for stem, _, png in figs:
                (fig_dir / f"{stem}.png").write_bytes(png)
                written.append(fig_dir / f"{stem}.png")
        if pareto is not None:
            (fig_dir / "recall-vs-cache.png").write_bytes(pareto)
            written.append(fig_dir / "recall-vs-cache.png")
        html_path = out / "report.html"
        html_path.write_text(render_html(res, figures, pareto), encoding="utf-8")
        md_path = out / "report.md"
        md_path.write_text(render_markdown(res, figures, pareto is not None, "figures"), encoding="utf-8")
        summary = out / "summary.txt"
        summary.write_text(summary_text(res) + "\n", encoding="utf-8")
        (out / "results.json").write_text(json.dumps(results_json(res), indent=1), encoding="utf-8")
    finally:
        res.close()
    return ReportPaths(html_path, md_path, summary, written)


def results_json(res: SweepResults) -> dict:
    """The tables as data: per comparison, per variant, each column's values over seeds."""
    return {"meta": {k: v for k, v in res.meta.items() if k != "spec"}, "comparisons": [
        {"name": c.name, "title": c.title, "variants": [
            {"name": v.name, "status": v.status, "reason": v.reason, "lr": v.lr, "mqar_lr": v.mqar_lr,
             "overrides": v.overrides, "budget": v.budget,
             "columns": {col: {"mean": v.stats[col].mean, "spread": v.stats[col].spread, "values": v.stats[col].values}
                         for col in COLUMNS if col in v.stats}} for v in c.variants]} for c in res.comparisons]}

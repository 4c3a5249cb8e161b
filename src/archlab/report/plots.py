"""The report's figures (matplotlib, drawn off-screen), each returned as PNG bytes.

- ``loss_curves``: training loss against tokens seen, one line per variant (mean over its kept
  seeds, smoothed), the seeds' range shaded, validation losses as markers.
- ``recall_vs_cache``: MQAR accuracy against cache bytes per request at a context length, every
  variant with a recall result, the Pareto front (no other point has less cache and more recall).
- ``loss_by_position``: loss against context length up to k x the training length.
- ``throughput``: forward tokens/s against sequence length.
"""
from __future__ import annotations

import io
import math
from typing import Sequence

from archlab.report.data import ComparisonResult, SweepResults

FIGSIZE = (6.4, 3.9)
DPI = 110


def _plt():
    from archlab.data.errors import require

    require("matplotlib", "plot", "drawing the report's figures")
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def _smooth(y: Sequence[float], frac: float = 0.04) -> list[float]:
    """An exponential moving average whose span is ``frac`` of the curve (debiased at the start)."""
    n = len(y)
    if n < 5:
        return list(y)
    alpha = 2.0 / (max(2.0, frac * n) + 1.0)
    out, m, w = [], 0.0, 0.0
    for v in y:
        m = (1 - alpha) * m + alpha * v
        w = (1 - alpha) * w + alpha
        out.append(m / w)
    return out


def _mean_curve(series: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean, min, max) over the runs, at the steps every run has."""
    if not series:
        return [], [], [], []
    common = sorted(set.intersection(*(set(s for s, _ in run) for run in series)))
    by = [dict(run) for run in series]
    mean = [sum(b[s] for b in by) / len(by) for s in common]
    lo = [min(b[s] for b in by) for s in common]
    hi = [max(b[s] for b in by) for s in common]
    return common, mean, lo, hi


def loss_curves(res: SweepResults, comp: ComparisonResult) -> bytes | None:
    plt = _plt()
    tokens_per_step = _tokens_per_step(res)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = False
    for i, v in enumerate(comp.variants):
        if not v.lm_runs:
            continue
        steps, mean, lo, hi = _mean_curve(res.metric_series(v.lm_runs, "loss"))
        if not steps:
            continue
        x = [s * tokens_per_step for s in steps]
        color = f"C{i % 10}"
        ax.plot(x, _smooth(mean), color=color, label=v.name, linewidth=1.4)
        if len(v.lm_runs) > 1:
            ax.fill_between(x, _smooth(lo), _smooth(hi), color=color, alpha=0.15, linewidth=0)
        vs, vm, _, _ = _mean_curve(res.metric_series(v.lm_runs, "val_loss"))
        if vs:
            ax.plot([s * tokens_per_step for s in vs], vm, "o", color=color, markersize=3.5)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    unigram = res.meta.get("unigram_entropy")
    if isinstance(unigram, (int, float)):
        ax.axhline(unigram, color="grey", linestyle=":", linewidth=1, label=f"unigram entropy {unigram:.2f}")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{comp.title}: training loss (lines), validation (dots)", fontsize=10)
    _ylim_from_curves(ax)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def _ylim_from_curves(ax) -> None:
    """Keep the interesting part: from just under the lowest curve to a little above the median start."""
    ys = [y for line in ax.get_lines() for y in line.get_ydata() if isinstance(y, (int, float)) and math.isfinite(y)]
    if ys:
        lo = min(ys)
        top = sorted(ys)[int(0.97 * (len(ys) - 1))]
        ax.set_ylim(lo - 0.05 * (top - lo + 1e-9), top + 0.1 * (top - lo + 1e-9))


def _tokens_per_step(res: SweepResults) -> int:
    tc = res.meta.get("train") or {}
    if isinstance(tc, dict) and "batch_size" in tc and "seq_len" in tc:
        return int(tc["batch_size"]) * int(tc["seq_len"])
    return 1


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with less-or-equal x and greater-or-equal y (one of them strict),
    sorted by x: the best recall reachable for each cache size."""
    front = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def recall_points(res: SweepResults, context: str = "cache_32k") -> list[tuple[str, float, float, float | None]]:
    """(label, cache bytes, MQAR mean, MQAR spread) of every variant with a recall result; a
    config shared by comparisons is one point."""
    seen: dict[str, tuple[str, float, float, float | None]] = {}
    for comp in res.comparisons:
        for v in comp.variants:
            s = v.stats.get("mqar")
            own = res.eval_values(v.mqar_runs, f"mqar_{context}")  # the MQAR model's own cache, when recorded
            cache = own[0] if own else v.sizes.get(context)
            if s is None or s.mean is None or cache is None:
                continue
            if v.config_hash in seen:
                continue
            seen[v.config_hash] = (f"{v.name}", float(cache), s.mean, s.spread)
    return list(seen.values())


def recall_vs_cache(res: SweepResults, context: str = "cache_32k") -> bytes | None:
    pts = recall_points(res, context)
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, (label, x, y, sp) in enumerate(pts):
        ax.errorbar([x], [y], yerr=[[sp or 0.0], [sp or 0.0]], fmt="o", color=f"C{i % 10}", capsize=3, markersize=5)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front([(x, y) for _, x, y, _ in pts])
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="black", linewidth=1,
                linestyle="--", label="Pareto front")
    elif front:
        ax.plot([front[0][0]], [front[0][1]], "s", mfc="none", color="black", markersize=11, label="Pareto front")
    xs = [p[1] for p in pts]
    if max(xs) / max(min(xs), 1) > 20:
        ax.set_xscale("log")
    ctx = {"cache_4k": "4k", "cache_32k": "32k", "cache_128k": "128k"}.get(context, context)
    ax.set_xlabel(f"cache bytes per request at {ctx} tokens (bf16)")
    ax.set_ylabel("MQAR accuracy")
    ax.set_ylim(-0.03, 1.05)
    ax.set_title("recall against cache memory", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def loss_by_position(res: SweepResults, comp: ComparisonResult) -> bytes | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    train_len = None
    drawn = False
    for i, v in enumerate(comp.variants):
        docs = res.eval_data(v.lm_runs, "positions")
        if not docs:
            continue
        train_len = docs[0]["train_len"]
        lo, hi = docs[0]["bucket_lo"], docs[0]["bucket_hi"]
        xs, ys = [], []
        for j in range(len(lo)):
            vals = [d["loss"][j] for d in docs if j < len(d["loss"]) and d["loss"][j] is not None]
            if vals:
                xs.append((lo[j] + hi[j]) / 2)
                ys.append(sum(vals) / len(vals))
        if xs:
            ax.plot(xs, ys, "-", marker=".", color=f"C{i % 10}", label=v.name, linewidth=1.3)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axvline(train_len, color="grey", linestyle="--", linewidth=1, label=f"training length {train_len}")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{comp.title}: loss by position", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def throughput(res: SweepResults, comp: ComparisonResult) -> bytes | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    drawn = False
    for i, v in enumerate(comp.variants):
        docs = res.eval_data(v.lm_runs, "throughput")
        if not docs:
            continue
        by_len: dict[int, list[float]] = {}
        for d in docs:
            for row in d:
                if row.get("tokens_per_s"):
                    by_len.setdefault(int(row["seq_len"]), []).append(float(row["tokens_per_s"]))
        if by_len:
            xs = sorted(by_len)
            ax.plot(xs, [sum(by_len[x]) / len(by_len[x]) for x in xs], "-o", color=f"C{i % 10}", label=v.name,
                    markersize=3.5, linewidth=1.3)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("forward tokens/s")
    ax.set_title(f"{comp.title}: throughput by sequence length", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def comparison_figures(res: SweepResults, comp: ComparisonResult) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) of each figure a comparison has data for. Loss by position and
    throughput only where the comparison asks for those evaluations: a shared baseline carries
    them from another comparison, and a figure of the baseline alone compares nothing."""
    out = []
    for stem, caption, fn in (("loss", "Loss curves", loss_curves), ("positions", "Loss by position", loss_by_position),
                              ("throughput", "Throughput against sequence length", throughput)):
        if stem != "loss" and stem not in comp.evals:
            continue
        png = fn(res, comp)
        if png is not None:
            out.append((f"{comp.name}-{stem}", caption, png))
    return out


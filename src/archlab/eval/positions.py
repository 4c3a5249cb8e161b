"""Loss by position: how the loss changes as the context grows past the training length.

Windows of ``k * train_len + 1`` tokens from a split are scored in one forward pass each; the
loss of predicting the token after ``c`` tokens of context is averaged over windows and then
over buckets of context lengths. A model that extrapolates keeps falling (or stays flat) past
``train_len``; one that does not rises there. RoPE scaling can be applied at inference only:
the model is rebuilt from ``cfg.replace(position.scaling...)`` with the same weights (the
scaling changes only non-persistent frequency buffers). Learned absolute positions have no
vectors past ``position.max_positions``: those buckets are reported as not defined.

Shapes: W windows, L evaluated length (k * train_len), B batch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
from torch import nn

from archlab.errors import ConfigError
from archlab.eval.common import check_positive_int, token_losses, with_progress

if TYPE_CHECKING:
    from archlab.config import ModelConfig
    from archlab.data.dataset import TokenDataset

#: kinds accepted by --scaling; longrope needs per-frequency factors and is set through the config
SCALING_KINDS = ("none", "linear", "ntk", "dynamic", "yarn", "llama3")
UNDEFINED = "not defined past max_positions"


def parse_scaling(spec: str | None, default_factor: float = 4.0) -> tuple[str, float] | None:
    """``"yarn:4"`` -> ("yarn", 4.0); ``"dynamic"`` -> ("dynamic", default_factor); none/None -> None."""
    if spec is None or spec == "" or spec == "none":
        return None
    kind, sep, raw = spec.partition(":")
    if kind not in SCALING_KINDS:
        raise ConfigError(f"scaling: {spec!r}: unknown kind {kind!r}; accepted: {', '.join(SCALING_KINDS)}, "
                          "optionally with a factor, e.g. yarn:4, ntk:4, linear:4, dynamic")
    try:
        factor = float(raw) if sep else float(default_factor)
    except ValueError:
        raise ConfigError(f"scaling: {spec!r}: the factor after ':' must be a number, e.g. yarn:4") from None
    if factor < 1.0:
        raise ConfigError(f"scaling: {spec!r}: the factor must be >= 1, got {factor}")
    return kind, factor


def scaled_config(cfg: "ModelConfig", kind: str, factor: float, train_len: int) -> "ModelConfig":
    """``cfg`` with RoPE scaling ``kind`` x ``factor`` over a trained context of ``train_len``."""
    if cfg.position.kind != "rope":
        raise ConfigError(f"scaling: {kind}:{factor:g} applies to RoPE models only; this model has "
                          f"position.kind={cfg.position.kind!r} (drop --scaling)")
    return cfg.replace(**{"position.scaling.kind": kind, "position.scaling.factor": float(factor),
                          "position.scaling.original_max_positions": int(train_len)})


def with_scaling(model: nn.Module, kind: str, factor: float, train_len: int) -> nn.Module:
    """A copy of ``model`` rebuilt with inference-time RoPE scaling and the same weights."""
    from archlab.model import build

    cfg = scaled_config(model.cfg, kind, factor, train_len)
    ref = next(model.parameters())
    new = build(cfg, device=ref.device, dtype=ref.dtype)
    new.load_state_dict(model.state_dict())
    return new.eval()


def learned_limit(cfg: "ModelConfig") -> int | None:
    """The smallest learned-position table among the model's layers, or None if none is learned."""
    limits = [c.position.max_positions for c in [cfg] + [cfg.layer_config(i) for i in range(cfg.n_layers)]
              if c.position.kind == "learned"]
    return min(limits) if limits else None


@dataclass(frozen=True)
class LossByPosition:
    train_len: int  # context the model was trained at
    eval_len: int  # k * train_len: longest context scored
    scaling: str  # "none" or "kind:factor"
    bucket_lo: tuple[int, ...]  # first context length of each bucket (1-based: 1 = one token seen)
    bucket_hi: tuple[int, ...]  # last context length of each bucket (inclusive)
    loss: tuple[float | None, ...]  # mean nats per token in each bucket; None where not defined
    per_position: tuple[float, ...]  # mean loss at each context length 1..defined_up_to
    n_windows: int  # windows averaged
    defined_up_to: int  # longest context the model can score (max_positions for learned tables)
    label: str = ""  # name used in tables and plots
    note: str | None = None  # why some buckets are missing
    split: str = "val"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        return compare_table([self])


def loss_by_position(model: nn.Module, dataset: "TokenDataset", *, train_len: int, k: float = 4,
                     bucket_size: int | None = None, scaling: str | tuple[str, float] | None = None,
                     batch_size: int = 8, max_windows: int | None = 256, split: str = "val",
                     label: str = "", progress: bool = True) -> LossByPosition:
    """Mean loss per context-length bucket from 1 to ``k * train_len`` tokens.

    ``bucket_size`` defaults to ``train_len // 8`` (so the training length is a bucket edge);
    ``scaling`` is ``"yarn:4"``-style or a ``(kind, factor)`` pair (default factor: ``k``).
    """
    check_positive_int("train_len", train_len)
    check_positive_int("batch_size", batch_size)
    if not k >= 1:
        raise ConfigError(f"k: the evaluated length is k * train_len; k must be >= 1, got {k}")
    L = int(round(k * train_len))
    bucket_size = bucket_size or max(1, train_len // 8)
    check_positive_int("bucket_size", bucket_size)
    sc = parse_scaling(scaling, k) if isinstance(scaling, (str, type(None))) else tuple(scaling)
    scaling_name = "none" if sc is None else f"{sc[0]}:{sc[1]:g}"
    if sc is not None:
        model = with_scaling(model, sc[0], sc[1], train_len)
    limit = learned_limit(model.cfg) if hasattr(model, "cfg") else None
    defined = L if limit is None else min(L, limit)
    seg = dataset.segments(split)
    n_avail = (seg.n_tokens - 1) // L
    if n_avail < 1:
        raise ConfigError(f"k: the {split} split has {seg.n_tokens} tokens, fewer than one window of "
                          f"k * train_len + 1 = {L + 1}; use a smaller k or a larger split")
    n_win = n_avail if max_windows is None else min(n_avail, check_positive_int("max_windows", max_windows))
    total = np.zeros(defined, dtype=np.float64)
    seen = 0
    was_training = model.training
    model.eval()
    try:
        batches = dataset.iter_eval_windows(L, batch_size, split)
        for window in with_progress(batches, math.ceil(n_win / batch_size), f"loss by position ({scaling_name})", progress):
            if window.shape[1] != L + 1:
                break  # the short tail of the split
            window = window[: n_win - seen, : defined + 1]  # [b, defined+1]
            total += token_losses(model, window).double().sum(0).cpu().numpy()
            seen += window.shape[0]
            if seen >= n_win:
                break
    finally:
        model.train(was_training)
    per_pos = total / seen  # [defined]: index c-1 = loss after c tokens of context
    lo = tuple(range(1, L + 1, bucket_size))
    hi = tuple(min(a + bucket_size - 1, L) for a in lo)
    losses = tuple(float(per_pos[a - 1: b].mean()) if b <= defined else None for a, b in zip(lo, hi))
    note = None
    if defined < L:
        note = f"{UNDEFINED} ({limit}): learned absolute positions have no vectors for longer contexts"
    return LossByPosition(train_len=train_len, eval_len=L, scaling=scaling_name, bucket_lo=lo, bucket_hi=hi,
                          loss=losses, per_position=tuple(float(x) for x in per_pos), n_windows=seen,
                          defined_up_to=defined, label=label or scaling_name, note=note, split=split)


def compare_table(results: Sequence[LossByPosition]) -> str:
    """One row per bucket, one column per result; ``*`` marks buckets past the training length."""
    from archlab.cli import table

    if not results:
        return ""
    base = results[0]
    for r in results[1:]:
        if r.bucket_lo != base.bucket_lo:
            raise ValueError("compare_table: results have different buckets (train_len, k or bucket_size differ)")
    rows = []
    for i, (a, b) in enumerate(zip(base.bucket_lo, base.bucket_hi)):
        mark = "*" if a > base.train_len else ""
        rows.append([f"{a}-{b}{mark}"] + [("n/a" if r.loss[i] is None else f"{r.loss[i]:.4f}") for r in results])
    out = table(rows, ["context"] + [r.label for r in results])
    notes = [f"{r.label}: {r.note}" for r in results if r.note]
    legend = f"(* past the training length {base.train_len}; loss in nats/token; n/a = {UNDEFINED})"
    return "\n".join([out, legend] + notes)


def plot_loss_by_position(results: Sequence[LossByPosition], path: str, *, smooth: int | None = None,
                          title: str | None = None) -> str:
    """Save a plot of per-position loss (a running mean over ``smooth`` positions, default
    ``train_len // 16``) with the training length marked; returns ``path``."""
    from archlab.data.errors import require

    require("matplotlib", "plot", "plotting loss by position")
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train_len = results[0].train_len if results else 0
    for r in results:
        y = np.asarray(r.per_position)
        w = smooth or max(1, r.train_len // 16)
        if w > 1 and len(y) >= w:
            y = np.convolve(y, np.ones(w) / w, mode="valid")  # [defined - w + 1]
            x = np.arange(len(y)) + (w + 1) / 2
        else:
            x = np.arange(1, len(y) + 1)
        ax.plot(x, y, label=r.label)
    ax.axvline(train_len, color="grey", linestyle="--", linewidth=1, label=f"training length {train_len}")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "loss by position")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


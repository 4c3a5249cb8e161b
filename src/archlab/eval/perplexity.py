"""Perplexity on a corpus split, with a bootstrap confidence interval over documents.

The split is read once as a stream of windows (``TokenDataset.iter_eval_windows``): every
token after the first is predicted exactly once, with up to ``seq_len - 1`` tokens of
context. Losses are summed per document (the split's units: a document, or a piece of at
most ``unit_tokens`` of a long one), and the interval comes from resampling documents with
replacement (Efron 1979; the percentile interval), because tokens of one document are not
independent: a token-level interval would be far too narrow.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from archlab.eval.common import check_positive_int, token_losses, with_progress

if TYPE_CHECKING:
    from archlab.data.dataset import TokenDataset


@dataclass(frozen=True)
class PerplexityResult:
    loss: float  # mean nats per predicted token
    perplexity: float  # exp(loss)
    n_tokens: int  # tokens predicted (the split's tokens minus one, or fewer with max_tokens)
    n_docs: int  # documents (split units) that had at least one predicted token
    loss_ci: tuple[float, float]  # bootstrap interval of the mean loss
    perplexity_ci: tuple[float, float]  # the same interval as perplexity
    confidence: float  # level of the interval (0.95)
    n_bootstrap: int  # resamples drawn
    seq_len: int  # window length (context of the evaluation)
    split: str  # which split of the dataset
    bits_per_token: float  # loss / ln 2

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lo, hi = self.perplexity_ci
        return (f"perplexity {self.perplexity:.4g} ({100 * self.confidence:.0f}% CI {lo:.4g}-{hi:.4g}) "
                f"loss {self.loss:.4f} nats over {self.n_tokens:,} tokens in {self.n_docs:,} documents")


def bootstrap_ratio_ci(sums: np.ndarray, counts: np.ndarray, n_bootstrap: int, confidence: float,
                       seed: int) -> tuple[float, float]:
    """Percentile interval of ``sum(sums[idx]) / sum(counts[idx])`` over documents resampled with
    replacement: the mean loss per token of a resampled corpus (long documents weigh more, as in
    the point estimate)."""
    n = len(sums)
    point = float(sums.sum() / counts.sum())
    if n < 2 or n_bootstrap < 1:
        return point, point
    rng = np.random.default_rng(seed)
    # [n_bootstrap, n] multiplicities, drawn in slices to bound memory on large splits
    stats = []
    per = max(1, 2_000_000 // n)
    for lo in range(0, n_bootstrap, per):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(per, n_bootstrap - lo))  # [b, n]
        stats.append((w @ sums) / np.maximum(w @ counts, 1))
    s = np.concatenate(stats)
    a = (1.0 - confidence) / 2.0
    return float(np.quantile(s, a)), float(np.quantile(s, 1.0 - a))


def perplexity(model: nn.Module, dataset: "TokenDataset", *, seq_len: int, batch_size: int = 16,
               split: str = "val", n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
               max_tokens: int | None = None, progress: bool = True) -> PerplexityResult:
    """Mean loss and perplexity of ``model`` on ``dataset``'s ``split`` with windows of ``seq_len``.

    ``max_tokens`` stops after about that many predicted tokens (whole batches), for quick checks.
    """
    check_positive_int("seq_len", seq_len)
    check_positive_int("batch_size", batch_size)
    check_positive_int("n_bootstrap", n_bootstrap, low=0)
    if max_tokens is not None:
        check_positive_int("max_tokens", max_tokens)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    seg = dataset.segments(split)
    n_units = len(seg.lengths)
    sums = np.zeros(n_units, dtype=np.float64)
    counts = np.zeros(n_units, dtype=np.int64)
    total = min(seg.n_tokens - 1, max_tokens or seg.n_tokens)
    n_batches = math.ceil(total / (seq_len * batch_size)) + 1
    was_training = model.training
    model.eval()
    offset = 0  # stream position of the current window's first token
    done = 0
    try:
        for window in with_progress(dataset.iter_eval_windows(seq_len, batch_size, split), n_batches,
                                    f"perplexity ({split})", progress):
            losses = token_losses(model, window).double().cpu().numpy()  # [b, t]
            b, t = losses.shape
            # targets of window i are stream positions offset + i*t + 1 .. offset + (i+1)*t
            pos = offset + 1 + np.arange(b * t, dtype=np.int64)  # [b*t], windows are consecutive
            unit = np.searchsorted(seg.cum, pos, side="right") - 1  # [b*t]
            sums += np.bincount(unit, weights=losses.reshape(-1), minlength=n_units)
            counts += np.bincount(unit, minlength=n_units)
            offset += b * t
            done += b * t
            if max_tokens is not None and done >= max_tokens:
                break
    finally:
        model.train(was_training)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    loss = float(sums.sum() / counts.sum())
    lo, hi = bootstrap_ratio_ci(sums, counts.astype(np.float64), n_bootstrap, confidence, seed)
    return PerplexityResult(
        loss=loss, perplexity=math.exp(loss), n_tokens=int(counts.sum()), n_docs=int(keep.sum()),
        loss_ci=(lo, hi), perplexity_ci=(math.exp(lo), math.exp(hi)), confidence=confidence,
        n_bootstrap=n_bootstrap, seq_len=seq_len, split=split, bits_per_token=loss / math.log(2),
    )

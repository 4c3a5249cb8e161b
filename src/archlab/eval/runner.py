"""Run evaluations on a trained run directory or an in-memory model, and record the results.

    target = load_target("runs/my-run")                 # or EvalTarget(model, tokenizer, train_len=256)
    results = evaluate(target, ["ppl", "positions"], scaling=["yarn:4"])

Each task is a function ``(target, scaling, options) -> {key: result}`` in ``TASKS``; results are
written to ``eval.json`` beside the checkpoint (``results.write_results``). Tasks:
- ``ppl``: perplexity on the validation split with a bootstrap interval over documents.
- ``positions``: loss by position up to ``k`` times the training length, without and with each
  ``scaling``; a plot with ``plot=True`` (extra ``plot``).
- ``passkey``: passkey retrieval over lengths x depths (with each scaling as well).
- ``mqar``: trains the target's *architecture* from scratch on MQAR (weights are not used:
  recall is a property of the architecture, learned on the task itself, as in Zoology).
- ``copy``, ``induction``: zero-shot in-context copying diagnostics of the trained weights.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from archlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class EvalTarget:
    """What the evaluations need: a model, its tokenizer, and what the run knew."""

    model: nn.Module
    tokenizer: Any
    train_len: int | None = None  # context the model was trained at (loss-by-position, default windows)
    data: Any = None  # the run's DataConfig (which corpus to read the validation split from)
    directory: Path | None = None  # where eval.json goes (None: results are not written)
    label: str = ""
    meta: dict = field(default_factory=dict)  # run facts copied into eval.json (step, config name)

    def require_train_len(self, task: str) -> int:
        if self.train_len is None:
            raise ConfigError(f"{task}: the training length is unknown for this model; pass train_len= "
                              f"(EvalTarget(..., train_len=N) or --train-len N)")
        return self.train_len


def load_target(path: str | os.PathLike, *, device=None) -> EvalTarget:
    """A run (or checkpoint) directory written by ``archlab train``: config, weights, tokenizer."""
    from archlab.eval import run_dir

    return run_dir.load(Path(path), device=device)


# -- tasks ----------------------------------------------------------------------------------------
TaskFn = Callable[[EvalTarget, Sequence[tuple[str, float]], dict], dict]
TASKS: dict[str, TaskFn] = {}


def task(name: str) -> Callable[[TaskFn], TaskFn]:
    def deco(fn: TaskFn) -> TaskFn:
        TASKS[name] = fn
        return fn
    return deco


def _dataset(target: EvalTarget, opts: dict):
    """The dataset to read: ``opts["dataset"]`` (a TokenDataset), ``opts["corpus"]`` (any corpus
    spec, tokenised with the model's tokenizer) or the run's own data section."""
    if opts.get("dataset") is not None:
        return opts["dataset"]
    from archlab.data.dataset import TokenDataset
    from archlab.data.loaders import load_corpus

    data = target.data
    spec = opts.get("corpus") or (getattr(data, "corpus", None) if data is not None else None)
    if spec is None:
        raise ConfigError("corpus: this model has no recorded data section; pass a corpus (--corpus stdlib) "
                          "or a dataset")
    kw = {}
    if data is not None and not opts.get("corpus"):
        kw = {"max_docs": data.max_docs, "max_bytes": data.max_bytes, "decode_errors": data.decode_errors}
    corpus = load_corpus(spec, **kw)
    val_fraction = getattr(data, "val_fraction", 0.05) if data is not None else 0.05
    cache_dir = getattr(data, "cache_dir", None) if data is not None else None
    return TokenDataset.build(corpus, target.tokenizer, cache_dir=cache_dir, val_fraction=val_fraction,
                              progress=opts.get("progress", True))


def _suffix(sc: tuple[str, float] | None) -> str:
    return "" if sc is None else f"@{sc[0]}:{sc[1]:g}"


@task("ppl")
def _ppl(target: EvalTarget, scalings, opts: dict) -> dict:
    from archlab.eval.perplexity import perplexity

    seq_len = opts.get("seq_len") or target.require_train_len("ppl")
    r = perplexity(target.model, _dataset(target, opts), seq_len=seq_len, batch_size=opts.get("batch_size", 16),
                   max_tokens=opts.get("max_tokens"), n_bootstrap=opts.get("n_bootstrap", 1000),
                   progress=opts.get("progress", True))
    print(f"ppl: {r.summary()}")
    return {"ppl": r}


@task("positions")
def _positions(target: EvalTarget, scalings, opts: dict) -> dict:
    from archlab.eval.positions import compare_table, loss_by_position, plot_loss_by_position

    train_len = target.require_train_len("positions")
    ds = _dataset(target, opts)
    out = {}
    for sc in [None, *scalings]:
        out["positions" + _suffix(sc)] = loss_by_position(
            target.model, ds, train_len=train_len, k=opts.get("k", 4), scaling=sc,
            bucket_size=opts.get("bucket_size"), batch_size=opts.get("batch_size", 8),
            max_windows=opts.get("max_windows", 256), label=target.label + _suffix(sc) if sc else (target.label or "none"),
            progress=opts.get("progress", True))
    print(compare_table(list(out.values())))
    if opts.get("plot"):
        where = Path(opts.get("plot_path") or (target.directory or Path(".")) / "positions.png")
        plot_loss_by_position(list(out.values()), str(where))
        print(f"plot: {where}")
    return out


@task("passkey")
def _passkey(target: EvalTarget, scalings, opts: dict) -> dict:
    from archlab.eval.passkey import passkey_grid
    from archlab.eval.positions import with_scaling

    from archlab.eval.passkey import min_length

    train_len = target.train_len or 256
    shortest = min_length(target.tokenizer) + 32  # room for a few filler sentences
    default = sorted({max(shortest, int(train_len * m)) for m in (0.5, 1, 2, 4)})
    lengths = opts.get("lengths") or tuple(default)
    out = {}
    for sc in [None, *scalings]:
        model = target.model if sc is None else with_scaling(target.model, sc[0], sc[1], target.require_train_len("passkey"))
        r = passkey_grid(model, target.tokenizer, lengths=lengths, depths=opts.get("depths", (0.0, 0.25, 0.5, 0.75, 1.0)),
                         n_trials=opts.get("n_trials", 8), batch_size=opts.get("batch_size", 8),
                         progress=opts.get("progress", True), scaling="none" if sc is None else f"{sc[0]}:{sc[1]:g}")
        print(f"passkey{_suffix(sc)}:\n{r.table()}")
        out["passkey" + _suffix(sc)] = r
    return out


@task("mqar")
def _mqar(target: EvalTarget, scalings, opts: dict) -> dict:
    from archlab.eval.mqar import MQAR_SETTINGS
    from archlab.eval.recipe import train_on_task

    setting = MQAR_SETTINGS[opts.get("mqar_setting", "cpu")]
    recipe = setting.recipe.replace(**opts.get("mqar_recipe", {}))
    r = train_on_task(target.model.cfg, setting.task, recipe, device=next(target.model.parameters()).device,
                      label="mqar", progress=opts.get("progress", True))
    print(f"mqar: accuracy {r.accuracy:.3f} (best {r.best_accuracy:.3f}) after {r.steps} steps, {r.seconds:.0f} s "
          f"-- the architecture trained from scratch on {setting.task.to_dict()}")
    return {"mqar": r}


def _zero_shot(name: str, target: EvalTarget, opts: dict) -> dict:
    from archlab.eval.synthetic import CopyConfig, InductionConfig, zero_shot

    V = target.model.cfg.vocab_size
    n = max(2, min(opts.get("length") or (target.train_len or 256) // 2 - 1, 256))
    # printable ASCII for byte-level vocabularies (random control bytes are far off-distribution)
    lo, hi = (32, 127) if V in (256, 257, 258) else (0, V)
    if name == "copy":
        task_cfg = CopyConfig(vocab_size=V, length=n, token_lo=lo, token_hi=hi, separator=10 if hi == 127 else 0)
    else:
        task_cfg = InductionConfig(vocab_size=V, length=n, token_lo=lo, token_hi=hi)
    r = zero_shot(target.model, task_cfg, n_sequences=opts.get("n_sequences", 64), batch_size=opts.get("batch_size", 16))
    print(f"{name}: accuracy {r['accuracy']:.3f}, loss {r['loss']:.3f} on the repeat vs "
          f"{r['first_half_loss']:.3f} on the first (random) half")
    return {name: r}


TASKS["copy"] = lambda target, scalings, opts: _zero_shot("copy", target, opts)
TASKS["induction"] = lambda target, scalings, opts: _zero_shot("induction", target, opts)


def evaluate(target: EvalTarget | str | os.PathLike, tasks: Sequence[str] = ("ppl",), *,
             scaling: str | Sequence[str] | None = None, write: bool = True, progress: bool = True,
             **options: Any) -> dict:
    """Run ``tasks`` on ``target``; results are returned and (if ``write`` and the target has a
    directory) merged into ``<directory>/eval.json``. ``options`` reach the tasks (``corpus``,
    ``dataset``, ``seq_len``, ``k``, ``max_windows``, ``plot``, ``lengths``, ``mqar_setting``...)."""
    from archlab.eval.positions import parse_scaling
    from archlab.eval.results import write_results

    if not isinstance(target, EvalTarget):
        target = load_target(target)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"tasks: unknown {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(TASKS))}")
    specs = [scaling] if isinstance(scaling, str) else list(scaling or [])
    specs = [s for spec in specs for s in spec.split(",") if s.strip()]
    scalings = [sc for sc in (parse_scaling(s.strip(), options.get("k", 4)) for s in specs) if sc is not None]
    options["progress"] = progress
    results: dict[str, Any] = {}
    for name in tasks:
        t0 = time.perf_counter()
        got = TASKS[name](target, scalings, options)
        seconds = round(time.perf_counter() - t0, 2)
        for key, value in got.items():
            results[key] = {"result": value, "seconds": seconds, "task": name}
        if write and target.directory is not None:
            path = write_results(target.directory, {k: results[k] for k in got}, meta=target.meta)
            log.info("wrote %s", path)
    return results

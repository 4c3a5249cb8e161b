"""Running one job of a sweep: ``run_job(job) -> JobResult``.

An ``lm`` job trains the variant on the corpus with the trainer (``archlab.train.Trainer``),
then evaluates the trained weights with the evaluation suite (``archlab.eval``): perplexity,
loss by position past the training length, passkey retrieval, and forward throughput by
sequence length (measured here). An ``mqar`` job trains the architecture from scratch on
multi-query associative recall (``archlab.eval.recipe.train_on_task``).

The trainer writes its log and checkpoints under ``OUT/runs/<run key>/``; a job that was
interrupted after a checkpoint resumes from it (the trainer repeats an uninterrupted run
exactly on the CPU), and per-step metrics are read back from its JSON Lines log, the last
record of each step winning, so a resumed job contributes every step once.
"""
from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

LM_METRICS = ("loss", "lm_loss", "aux_loss", "lr", "grad_norm", "tokens_per_s", "val_loss")


@dataclass
class JobResult:
    metrics: list[tuple[str, int, Any]] = field(default_factory=list)  # (name, step, value)
    evals: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (number or None, JSON data or None)
    summary: dict[str, Any] = field(default_factory=dict)  # what ranks learning rates and fills the tables


def read_metrics(path: Path) -> dict[int, dict]:
    """The trainer's JSON Lines log as {step: record}; later records of a step replace earlier
    ones (a resumed run repeats the steps after its checkpoint) and a torn last line is skipped."""
    out: dict[int, dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "step" in rec and "event" not in rec:
            out[int(rec["step"])] = rec
    return out


_DATASETS: dict[str, Any] = {}


def dataset_for(data_cfg) -> Any:
    """The token dataset of a DataConfig, opened once per process."""
    from archlab.data import prepare_dataset

    key = data_cfg.to_json()
    if key not in _DATASETS:
        _DATASETS[key] = prepare_dataset(data_cfg, progress=False)
    return _DATASETS[key]


def run_job(job: dict, *, device: str, run_dir: Path, say: Callable[[str], None] = lambda s: None,
            beat: Callable[[], None] = lambda: None) -> JobResult:
    """Run one job spec (as stored in the ``runs`` table) on ``device``."""
    if job["kind"] == "lm":
        return run_lm(job, device=device, run_dir=run_dir, say=say, beat=beat)
    if job["kind"] == "mqar":
        return run_mqar(job, device=device, say=say, beat=beat)
    raise ValueError(f"job kind: {job['kind']!r} is not accepted; expected lm or mqar")


# -- language-model jobs ----------------------------------------------------------------------
def run_lm(job: dict, *, device: str, run_dir: Path, say: Callable[[str], None] = lambda s: None,
           beat: Callable[[], None] = lambda: None) -> JobResult:
    from archlab.config import ModelConfig
    from archlab.train import RunConfig, TrainConfig, latest_checkpoint
    from archlab.train.loop import Trainer

    model_cfg = ModelConfig.from_dict(job["model"])
    tc = TrainConfig.from_dict(job["train"]).replace(device=device)
    run = RunConfig(model=model_cfg, train=tc)
    if run_dir.exists() and latest_checkpoint(run_dir) is None:
        shutil.rmtree(run_dir)  # killed before its first checkpoint: start clean (no duplicate log lines)
    ds = dataset_for(tc.data)

    def log(line: str) -> None:
        say(line)
        beat()

    trainer = Trainer(run, run_dir, dataset=ds, resume=True, progress=False, say=log)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    model = result.model.eval()
    recs = read_metrics(run_dir / "metrics.jsonl")
    res = JobResult()
    for step, rec in sorted(recs.items()):
        for name in LM_METRICS:
            if isinstance(rec.get(name), (int, float)):
                res.metrics.append((name, step, rec[name]))
    tps = [r["tokens_per_s"] for s, r in sorted(recs.items()) if s > 5 and isinstance(r.get("tokens_per_s"), (int, float))]
    train_tps = statistics.median(tps) if tps else result.tokens_per_s
    vals = {s: r["val_loss"] for s, r in recs.items() if isinstance(r.get("val_loss"), (int, float))}
    val_loss = vals[max(vals)] if vals else None
    res.summary = {"val_loss": val_loss, "train_tokens_per_s": train_tps, "steps": result.step,
                   "final_loss": recs[max(recs)]["loss"] if recs else None}
    res.evals["val_loss"] = (val_loss, None)
    res.evals["train_tokens_per_s"] = (train_tps, None)
    with torch.no_grad():
        for name, opts in job.get("evals", {}).items():
            beat()
            say(f"eval {name}")
            res.evals.update(LM_EVALUATIONS[name](model, ds, tc, opts))
    for key in ("ppl", "loss_ratio_2x", "loss_ratio_4x", "passkey"):
        if key in res.evals:
            res.summary[key] = res.evals[key][0]
    return res


def eval_ppl(model, ds, tc, opts: dict) -> dict:
    from archlab.eval.perplexity import perplexity

    r = perplexity(model, ds, seq_len=tc.seq_len, batch_size=opts["batch_size"], max_tokens=opts["max_tokens"],
                   n_bootstrap=opts["n_bootstrap"], progress=False)
    return {"ppl": (r.perplexity, r.to_dict()), "ppl_loss": (r.loss, None)}


def loss_ratio(per_position: list[float], train_len: int, mult: int, defined_up_to: int) -> float | None:
    """Mean loss over contexts ((mult - 1/2) L, mult L] over the mean over (L/2, L]: 1 means the
    loss at mult x the training length equals the loss at its end; above 1, extrapolation fails."""
    L = train_len
    hi = mult * L
    if hi > min(defined_up_to, len(per_position)):
        return None
    ref = per_position[L // 2: L]  # context lengths L/2+1 .. L (index c-1)
    far = per_position[hi - L // 2: hi]
    if not ref or not far:
        return None
    return (sum(far) / len(far)) / (sum(ref) / len(ref))


def eval_positions(model, ds, tc, opts: dict) -> dict:
    from archlab.eval.positions import loss_by_position

    r = loss_by_position(model, ds, train_len=tc.seq_len, k=opts["k"], max_windows=opts["max_windows"],
                         batch_size=opts["batch_size"], progress=False)
    pp = list(r.per_position)
    data = {"train_len": r.train_len, "eval_len": r.eval_len, "bucket_lo": list(r.bucket_lo),
            "bucket_hi": list(r.bucket_hi), "loss": list(r.loss), "n_windows": r.n_windows,
            "defined_up_to": r.defined_up_to, "note": r.note}
    out = {"positions": (None, data)}
    for m in (2, 4):
        if m <= opts["k"]:
            out[f"loss_ratio_{m}x"] = (loss_ratio(pp, tc.seq_len, m, r.defined_up_to), None)
    return out


def eval_passkey(model, ds, tc, opts: dict) -> dict:
    from archlab.eval.passkey import passkey_grid

    r = passkey_grid(model, ds.tokenizer, lengths=tuple(opts["lengths"]), depths=tuple(opts["depths"]),
                     n_trials=opts["n_trials"], batch_size=opts["batch_size"], progress=False)
    cells = [a for row in r.accuracy for a in row if a is not None]
    return {"passkey": (sum(cells) / len(cells) if cells else None, r.to_dict())}


def eval_throughput(model, ds, tc, opts: dict) -> dict:
    """Forward (prefill) tokens per second at each length: batch max(1, tokens // length), one
    warm-up call, the median of ``repeats`` timed calls."""
    from archlab.eval.positions import learned_limit

    device = next(model.parameters()).device
    limit = learned_limit(model.cfg) if hasattr(model, "cfg") else None
    rows = []
    for L in opts["lengths"]:
        if limit is not None and L > limit:
            rows.append({"seq_len": L, "tokens_per_s": None, "note": "past max_positions"})
            continue
        b = max(1, opts["tokens"] // L)
        x = torch.randint(0, model.cfg.vocab_size, (b, L), device=device)  # [b, L]
        times = []
        for i in range(opts["repeats"] + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                times.append(time.perf_counter() - t0)
        rows.append({"seq_len": L, "batch": b, "tokens_per_s": b * L / statistics.median(times)})
    return {"throughput": (None, rows)}


LM_EVALUATIONS: dict[str, Callable[..., dict]] = {
    "ppl": eval_ppl,
    "positions": eval_positions,
    "passkey": eval_passkey,
    "throughput": eval_throughput,
}


# -- recall jobs ------------------------------------------------------------------------------
def run_mqar(job: dict, *, device: str, say: Callable[[str], None] = lambda s: None,
             beat: Callable[[], None] = lambda: None) -> JobResult:
    from archlab.config import ModelConfig
    from archlab.eval.mqar import MQARConfig
    from archlab.eval.recipe import TrainRecipe, train_on_task

    cfg = ModelConfig.from_dict(job["model"])
    task = MQARConfig.from_dict(job["task"])
    recipe = TrainRecipe.from_dict(job["recipe"])
    dev = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"

    def on_eval(row: dict) -> None:
        say(f"mqar step {row['step']}: loss {row['loss']:.4f} accuracy {row['accuracy']:.3f}")
        beat()

    r = train_on_task(cfg, task, recipe, device=dev, label="mqar", progress=False, on_eval=on_eval)
    res = JobResult()
    for row in r.history:
        if "step" in row:
            for name in ("loss", "accuracy"):
                res.metrics.append((name, row["step"], row[name]))
    res.summary = {"accuracy": r.accuracy, "best_accuracy": r.best_accuracy, "steps": r.steps, "seconds": r.seconds}
    res.evals["mqar"] = (r.accuracy, {"best_accuracy": r.best_accuracy, "steps": r.steps, "task": r.task,
                                      "params": r.params})
    res.evals["mqar_best"] = (r.best_accuracy, None)
    # the recall-vs-memory plot places the model that was trained on the task (it may be wider than
    # the language model, evals.mqar.set) at its own cache size
    from archlab.analysis import cache_bytes

    for n, name in ((4096, "mqar_cache_4k"), (32768, "mqar_cache_32k"), (131072, "mqar_cache_128k")):
        res.evals[name] = (cache_bytes(cfg, n, 1, torch.bfloat16), None)
    return res


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)

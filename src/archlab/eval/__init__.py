"""The evaluation suite: perplexity, loss by position, MQAR, passkey, copying/induction, lm-eval.

    from archlab.eval import EvalTarget, evaluate, load_target
    results = evaluate("runs/my-run", ["ppl", "positions", "passkey"], scaling="yarn:4")

Every evaluation also runs on an in-memory ``(model, tokenizer)``; see each module. Names are
loaded lazily so that ``import archlab.eval`` stays cheap (lm-eval and matplotlib are optional
extras ``lmeval`` and ``plot``).
"""
from __future__ import annotations

from archlab.lazy import lazy_getattr

_EXPORTS = {
    "EvalTarget": "archlab.eval.runner",
    "evaluate": "archlab.eval.runner",
    "load_target": "archlab.eval.runner",
    "TASKS": "archlab.eval.runner",
    "perplexity": "archlab.eval.perplexity",
    "PerplexityResult": "archlab.eval.perplexity",
    "loss_by_position": "archlab.eval.positions",
    "LossByPosition": "archlab.eval.positions",
    "compare_table": "archlab.eval.positions",
    "plot_loss_by_position": "archlab.eval.positions",
    "parse_scaling": "archlab.eval.positions",
    "with_scaling": "archlab.eval.positions",
    "MQARConfig": "archlab.eval.mqar",
    "mqar_batch": "archlab.eval.mqar",
    "MQAR_SETTINGS": "archlab.eval.mqar",
    "TrainRecipe": "archlab.eval.recipe",
    "TaskResult": "archlab.eval.recipe",
    "train_on_task": "archlab.eval.recipe",
    "sweep_lr": "archlab.eval.recipe",
    "task_accuracy": "archlab.eval.recipe",
    "passkey_grid": "archlab.eval.passkey",
    "PasskeyResult": "archlab.eval.passkey",
    "make_prompt": "archlab.eval.passkey",
    "CopyConfig": "archlab.eval.synthetic",
    "InductionConfig": "archlab.eval.synthetic",
    "zero_shot": "archlab.eval.synthetic",
    "LMEvalModel": "archlab.eval.lm_eval_adapter",
    "write_results": "archlab.eval.results",
    "read_results": "archlab.eval.results",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)

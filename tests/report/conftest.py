"""A results database filled with made-up numbers (no training), for the report tests."""
from __future__ import annotations

import math

import pytest

from archlab.sweep.plan import plan_sweep
from archlab.sweep.runner import record_plan
from archlab.sweep.spec import load_spec
from archlab.sweep.store import Store

SPEC = {
    "name": "fake",
    "description": "made-up results for the report tests",
    "base": {"preset": "llama-3-debug", "set": {"attention.kv_heads": None}},
    "train": {"seq_len": 32, "batch_size": 4},
    "budget": {"tokens": 12800},
    "seeds": [0, 1],
    "lrs": [0.001, 0.003],
    "evals": {"ppl": {}, "positions": {}, "passkey": {}, "throughput": {"lengths": [32, 64, 128]},
              "mqar": {"task": {"vocab_size": 32, "seq_len": 16, "n_pairs": 2}}},
    "comparisons": [
        {"name": "kv", "title": "MHA vs MQA", "question": "Does sharing one key/value head hurt?",
         "budget": {"match": "params"},
         "variants": [{"name": "mha"}, {"name": "mqa", "set": {"attention.kv_heads": 1}, "note": "one key/value head"},
                      {"name": "bad", "set": {"attention.kind": "nonesuch"}}]},
        {"name": "norm", "title": "pre vs post", "evals": ["ppl"],
         "variants": [{"name": "pre"}, {"name": "post", "set": {"norm.placement": "post"}}]},
    ],
}
# made-up validation loss per variant at the better lr (3e-3); the worse lr adds 0.2, seed 1 adds 0.02
BASE_LOSS = {"mha": 2.0, "mqa": 2.1, "post": 2.3}
MQAR = {"mha": (0.98, 1.0), "mqa": (0.90, 0.86)}  # by seed


def fill(db) -> dict:
    spec = load_spec(SPEC)
    plan = plan_sweep(spec, vocab_size=258, build_check=False)
    name_of = {}
    for v in plan.valid():
        name_of.setdefault(v.config_hash, v.name if v.name != "pre" else "mha")
    with Store(db) as s:
        record_plan(s, plan, data={"corpus": "fake", "tokenizer": "byte", "train_tokens": 1000, "val_tokens": 100},
                    unigram=3.3)
        while (job := s.claim()) is not None:
            name = name_of[job.config_hash]
            if job.kind == "mqar":
                acc = MQAR[name][job.seed]
                s.complete(job, metrics=[("accuracy", 100, acc / 2), ("accuracy", 200, acc)],
                           evals={"mqar": (acc, {"steps": 200}), "mqar_best": (acc, None)},
                           summary={"accuracy": acc, "best_accuracy": acc, "steps": 200}, seconds=1.0)
                continue
            if name == "post" and job.lr < 0.002:
                s.fail(job, "NonFiniteLossError: the loss is not finite at step 7", 1.0)
                continue
            val = BASE_LOSS[name] + (0.2 if job.lr < 0.002 else 0.0) + 0.02 * job.seed
            curve = [("loss", step, 5.5 - (5.5 - val) * (1 - math.exp(-step / 30))) for step in range(1, 101)]
            curve += [("val_loss", 50, val + 0.3), ("val_loss", 100, val)]
            loss_pos = [val + 0.5 / (1 + i) + (0.05 * i if name == "mqa" else 0.0) for i in range(16)]
            evals = {
                "val_loss": (val, None), "ppl": (math.exp(val), {"perplexity": math.exp(val)}),
                "train_tokens_per_s": (1000.0 + 100 * job.seed + (500 if name == "mqa" else 0), None),
                "loss_ratio_2x": (1.0 + (0.1 if name == "mqa" else 0.0), None),
                "loss_ratio_4x": (1.1 + (0.2 if name == "mqa" else 0.0), None),
                "passkey": (0.5 if name == "mha" else 0.25, None),
                "positions": (None, {"train_len": 32, "eval_len": 128, "bucket_lo": list(range(1, 129, 8)),
                                     "bucket_hi": list(range(8, 129, 8)), "loss": loss_pos}),
                "throughput": (None, [{"seq_len": L, "tokens_per_s": 1e5 / (1 + L / 64)} for L in (32, 64, 128)]),
            }
            s.complete(job, metrics=curve, evals=evals, summary={"val_loss": val}, seconds=2.0)
    return {"spec": spec, "plan": plan}


@pytest.fixture
def fake_db(tmp_path):
    db = tmp_path / "results.db"
    fill(db)
    return db

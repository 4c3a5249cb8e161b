"""LMEvalModel: rolling windows, log-likelihoods against a direct computation, generate_until, and
one lm-evaluation-harness run on a local task (no download)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.data.tokenizer import ByteTokenizer
from archlab.eval.lm_eval_adapter import LMEvalModel, rolling_windows

TOK = ByteTokenizer()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return archlab.build(archlab.ModelConfig(vocab_size=258, d_model=32, n_layers=1)).eval().requires_grad_(False)


@torch.no_grad()
def _logprob(model, ids: list[int], start: int) -> float:
    """log p(ids[start:] | ids[:start]) by one forward pass."""
    x = torch.tensor([ids])
    lp = F.log_softmax(model(x[:, :-1]).float(), -1)[0]  # [T-1, V]
    return float(sum(lp[t - 1, ids[t]] for t in range(start, len(ids))))


@pytest.mark.parametrize("n,max_len", [(1, 4), (4, 4), (10, 4), (9, 3), (7, 16)])
def test_rolling_windows_predict_every_token_once(n, max_len):
    tokens = list(range(100, 100 + n))
    wins = list(rolling_windows(tokens, 0, max_len))
    assert [t for _, pred in wins for t in pred] == tokens
    for inp, pred in wins:
        assert len(inp) <= max_len and len(pred) <= len(inp)
        full = [0] + tokens
        end = full.index(pred[-1])  # pred[-1] sits at full[end]; the input must end right before it
        assert inp == full[end - len(inp): end]
    if n > max_len:
        assert len(wins[-1][0]) == max_len  # the last window has full context


def test_loglikelihood_matches_a_direct_forward(model):
    lm = LMEvalModel(model, TOK, batch_size=2)
    reqs = [("alpha beta", " gamma"), ("", "delta"), ("x", "yz"), ("alpha ", "beta")]
    got = lm.loglikelihood(reqs)
    eos = TOK.eos_id
    want = [_logprob(model, TOK.encode("alpha beta gamma"), 10), _logprob(model, [eos] + TOK.encode("delta"), 1),
            _logprob(model, TOK.encode("xyz"), 1), _logprob(model, TOK.encode("alpha beta"), 5)]
    for (lp, greedy), w in zip(got, want):
        assert lp == pytest.approx(w, abs=1e-4) and isinstance(greedy, bool)


def test_loglikelihood_rolling_sums_the_windows(model):
    lm = LMEvalModel(model, TOK, batch_size=3, max_length=8)
    text = "the quick brown fox"
    ids = TOK.encode(text)
    want = sum(float(F.log_softmax(model(torch.tensor([inp])).float(), -1)[0, -len(pred):]
                     .gather(-1, torch.tensor(pred)[:, None]).sum())
               for inp, pred in rolling_windows(ids, TOK.eos_id, 8))
    assert lm.loglikelihood_rolling([(text,)])[0] == pytest.approx(want, abs=1e-4)
    short = LMEvalModel(model, TOK, max_length=64).loglikelihood_rolling([(text,)])[0]
    assert short == pytest.approx(_logprob(model, [TOK.eos_id] + ids, 1), abs=1e-4)


def test_greedy_flag_and_generate_until_with_an_oracle(h):
    text = "abcabcabcabc"

    def nxt(prefix):  # continues the alphabet cycle a->b->c->a
        last = prefix[-1]
        return {97: 98, 98: 99, 99: 97}.get(last, 97)

    lm = LMEvalModel(h.Lookup(258, nxt), TOK, batch_size=2)
    (lp, greedy), (_, not_greedy) = lm.loglikelihood([("ab", "cab"), ("ab", "cba")])
    assert greedy and not not_greedy
    out = lm.generate_until([("xa", {"until": ["ca"], "max_gen_toks": 10}), ("ya", {"until": "\n", "max_gen_toks": 5}),
                             ("za", {"until": ["ca"], "max_gen_toks": 10})])
    assert out == ["b", "bcabc", "b"] and text.startswith("abc")


def test_accepts_lm_eval_instances(model):
    inst = pytest.importorskip("lm_eval.api.instance")
    lm = LMEvalModel(model, TOK)
    req = inst.Instance("loglikelihood", {}, ("alpha", " beta"), 0)
    assert lm.loglikelihood([req])[0][0] == pytest.approx(lm.loglikelihood([("alpha", " beta")])[0][0])


def test_harness_runs_a_local_task(model, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    data = tmp_path / "data.jsonl"
    rows = [{"q": "alpha beta", "choices": [" gamma", " delta"], "answer": 0},
            {"q": "beta gamma", "choices": [" delta", " alpha"], "answer": 1}]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "tiny.yaml").write_text(
        "task: archlab_tiny\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {tmp_path / 'hf'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    lm = LMEvalModel(model, TOK, batch_size=4)
    res = lm_eval.simple_evaluate(model=lm, tasks=["archlab_tiny"], bootstrap_iters=0, log_samples=False,
                                  task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False))
    acc = res["results"]["archlab_tiny"]["acc,none"]
    # the harness picks the choice with the higher log-likelihood: recompute it here
    want = [max(range(2), key=lambda i: lm.loglikelihood([(r["q"], r["choices"][i])])[0][0]) == r["answer"]
            for r in rows]
    assert acc == pytest.approx(sum(want) / 2)


def test_duck_typed_without_lm_eval(model, monkeypatch):
    import importlib.util
    import sys

    from archlab.eval import lm_eval_adapter

    for name in ("lm_eval", "lm_eval.api", "lm_eval.api.model", "lm_eval.api.registry"):
        monkeypatch.setitem(sys.modules, name, None)  # importing them now raises ImportError
    spec = importlib.util.spec_from_file_location("_adapter_without_lm_eval", lm_eval_adapter.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod._Base.__module__ == "_adapter_without_lm_eval"
    lm = mod.LMEvalModel(model, TOK)
    assert lm.rank == 0 and lm.world_size == 1
    assert lm.loglikelihood([("alpha", " beta")])[0][0] == pytest.approx(
        LMEvalModel(model, TOK).loglikelihood([("alpha", " beta")])[0][0])

"""MQAR generator statistics, the task-training loop and the accuracy count."""
from __future__ import annotations

import pytest
import torch

from archlab.errors import ConfigError
from archlab.eval.common import IGNORE
from archlab.eval.mqar import MQAR_SETTINGS, MQARConfig, mqar_batch
from archlab.eval.recipe import TrainRecipe, task_accuracy, train_on_task



@pytest.mark.parametrize("filler", ["random", "zero"])
@pytest.mark.parametrize("query", ["power_law", "uniform"])
def test_every_query_key_appears_exactly_once_before_it(filler, query):
    cfg = MQARConfig(vocab_size=64, seq_len=48, n_pairs=6, query=query, filler=filler)
    x, y = mqar_batch(cfg, 200, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (200, 48) and x.dtype == y.dtype == torch.int64
    assert int(x.min()) >= 0 and int(x.max()) < 64
    half = 32
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        keys, values = row_x[0:12:2], row_x[1:12:2]
        assert len(set(keys)) == 6 and all(1 <= k < half for k in keys)
        assert len(set(values)) == 6 and all(half <= v < 64 for v in values)
        qpos = [t for t, v in enumerate(row_y) if v != IGNORE]
        assert len(qpos) == 6 and all(t >= 12 and (t - 12) % 2 == 0 for t in qpos)
        pairs = dict(zip(keys, values))
        for t in qpos:
            key = row_x[t]
            assert row_x[:t].count(key) == 1, "the queried key occurs exactly once before its query"
            assert row_y[t] == pairs[key]
        assert sorted(row_x[t] for t in qpos) == sorted(keys), "every key is queried once"
        # filler never repeats a key: the only occurrences are the pair and the query
        assert all(row_x.count(k) == 2 for k in keys)
        if filler == "zero":
            assert all(v == 0 for t, v in enumerate(row_x[12:], 12) if t not in qpos)


def test_power_law_queries_favour_short_gaps():
    g = torch.Generator().manual_seed(1)
    pl = MQARConfig(vocab_size=256, seq_len=256, n_pairs=8)
    un = pl.replace(query="uniform")
    gap = lambda c: (mqar_batch(c, 400, g)[1] != IGNORE).nonzero()[:, 1].float().mean()  # noqa: E731
    assert gap(pl) < gap(un) - 20  # uniform slots average near the middle of the query region
    p = pl.slot_probs()
    assert p.shape == (pl.n_slots,) and torch.isclose(p.sum(), torch.tensor(1.0, dtype=p.dtype))
    assert bool((p[1:] <= p[:-1]).all())


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="mqar.seq_len"):
        MQARConfig(seq_len=16, n_pairs=8)
    with pytest.raises(ConfigError, match="mqar.vocab_size"):
        MQARConfig(vocab_size=16, n_pairs=8, seq_len=64)
    with pytest.raises(ConfigError, match="mqar.query"):
        MQARConfig(query="zipf")


def test_accuracy_counts_only_query_positions(h):
    cfg = MQARConfig(vocab_size=32, seq_len=16, n_pairs=4)
    x, y = mqar_batch(cfg, 8, torch.Generator().manual_seed(0))

    def recall(prefix):  # the value that followed the last token's first occurrence
        k = prefix[-1]
        return prefix[prefix.index(k) + 1] if prefix.index(k) < len(prefix) - 1 else 0

    assert task_accuracy(h.Lookup(32, recall), x, y) == (32, 32)
    assert task_accuracy(h.Lookup(32, lambda p: 0), x, y) == (0, 32)
    # right on the first query of each row only
    first = [min(t for t in range(16) if y[b, t] != IGNORE) for b in range(8)]
    y_mask = torch.full_like(y, IGNORE)
    for b, t in enumerate(first):
        y_mask[b, t] = y[b, t]
    assert task_accuracy(h.Lookup(32, recall), x, y_mask) == (8, 8)


def test_training_loop_runs_and_reports(h):
    task = MQARConfig(vocab_size=32, seq_len=16, n_pairs=2)
    seen = []
    r = train_on_task(h.tiny_cfg(), task, TrainRecipe(steps=4, batch_size=4, eval_every=2, eval_examples=8,
                                                    warmup_steps=2, schedule="cosine"),
                      progress=False, on_eval=seen.append)
    assert r.steps == 4 and len(r.history) == 2 == len(seen)
    assert 0.0 <= r.accuracy <= 1.0 and r.best_accuracy >= r.accuracy
    assert r.model["vocab_size"] == 32 and r.task["n_pairs"] == 2 and r.params > 0
    assert all(row["loss"] > 0 for row in r.history)


def test_recipe_schedule_and_stop_at(monkeypatch, h):
    rec = TrainRecipe(steps=10, lr=1.0, warmup_steps=4, schedule="cosine")
    assert rec.lr_at(0) == pytest.approx(0.25) and rec.lr_at(3) == pytest.approx(1.0)
    assert rec.lr_at(4) == pytest.approx(1.0) and rec.lr_at(10) == pytest.approx(0.0)
    wsd = TrainRecipe(steps=10, lr=1.0, schedule="wsd", decay_fraction=0.5)
    assert [wsd.lr_at(s) for s in (0, 4, 5, 9)] == pytest.approx([1.0, 1.0, 1.0, 0.2])
    from archlab.eval import recipe

    monkeypatch.setattr(recipe, "task_accuracy", lambda model, x, y: (3, 4))
    task = MQARConfig(vocab_size=32, seq_len=16, n_pairs=2)
    r = train_on_task(h.tiny_cfg(), task, TrainRecipe(steps=50, batch_size=2, eval_every=1, eval_examples=2,
                                                    stop_at=0.7), progress=False)
    assert r.steps == 1 and r.accuracy == 0.75
    with pytest.raises(ConfigError, match="recipe.lr"):
        TrainRecipe(lr=0)


def test_settings_build():
    import archlab

    for name, s in MQAR_SETTINGS.items():
        cfg = archlab.ModelConfig.from_dict(s.model)
        assert cfg.vocab_size == s.task.vocab_size, name

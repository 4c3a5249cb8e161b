"""Loss by position: buckets, inference-time RoPE scaling, learned tables, the table and the plot."""
from __future__ import annotations

import sys

import pytest
import torch

import archlab
from archlab.data.errors import MissingExtraError
from archlab.errors import ConfigError
from archlab.eval.common import token_losses
from archlab.eval.positions import (compare_table, loss_by_position, parse_scaling, plot_loss_by_position,
                                    with_scaling)



def test_parse_scaling():
    assert parse_scaling("yarn:4") == ("yarn", 4.0)
    assert parse_scaling("dynamic", 8) == ("dynamic", 8.0)
    assert parse_scaling("none") is None and parse_scaling(None) is None
    with pytest.raises(ConfigError, match="accepted: none, linear, ntk"):
        parse_scaling("rope:2")
    with pytest.raises(ConfigError, match="factor"):
        parse_scaling("yarn:x")


def test_buckets_and_per_position_means(tiny_model, byte_ds):
    r = loss_by_position(tiny_model, byte_ds, train_len=16, k=2, bucket_size=4, max_windows=6, batch_size=4,
                         progress=False)
    assert r.eval_len == 32 and r.n_windows == 6 and len(r.per_position) == 32
    assert r.bucket_lo == (1, 5, 9, 13, 17, 21, 25, 29) and r.bucket_hi[-1] == 32
    windows = torch.cat([w for w, _ in zip(byte_ds.iter_eval_windows(32, 6), range(1))])[:6]
    direct = token_losses(tiny_model, windows).mean(0)  # [32]
    torch.testing.assert_close(torch.tensor(r.per_position, dtype=torch.float64), direct.double(), rtol=1e-5, atol=1e-6)
    assert r.loss[0] == pytest.approx(float(direct[:4].mean()), rel=1e-5)
    assert "17-20*" in r.table()


def test_scaling_rebuilds_with_the_same_weights(tiny_model):
    ids = torch.randint(0, 258, (1, 12))
    same = with_scaling(tiny_model, "linear", 1.0, train_len=16)
    assert same is not tiny_model and same.cfg.position.scaling.kind == "linear"
    torch.testing.assert_close(same(ids), tiny_model(ids))
    yarn = with_scaling(tiny_model, "yarn", 4.0, train_len=16)
    assert yarn.cfg.position.scaling.original_max_positions == 16
    assert not torch.allclose(yarn(ids), tiny_model(ids))
    assert tiny_model.cfg.position.scaling.kind == "none"  # the original is untouched


def test_scaling_needs_rope(byte_ds, h):
    alibi = archlab.build(h.tiny_cfg(**{"position.kind": "alibi"}))
    with pytest.raises(ConfigError, match="RoPE models only"):
        loss_by_position(alibi, byte_ds, train_len=8, k=2, scaling="yarn:2", progress=False)


def test_learned_positions_report_undefined_instead_of_crashing(byte_ds, h):
    model = archlab.build(h.tiny_cfg(**{"position.kind": "learned", "position.max_positions": 16}))
    r = loss_by_position(model, byte_ds, train_len=16, k=2, bucket_size=8, max_windows=2, progress=False)
    assert r.defined_up_to == 16 and len(r.per_position) == 16
    assert r.loss[:2] != (None, None) and r.loss[2:] == (None, None)
    assert "not defined past max_positions" in r.note and "n/a" in r.table()


def test_too_short_split_is_a_named_error(tiny_model, byte_ds):
    with pytest.raises(ConfigError, match="k: the val split"):
        loss_by_position(tiny_model, byte_ds, train_len=100_000, k=1, progress=False)


def test_compare_table_and_plot(tiny_model, byte_ds, tmp_path):
    a = loss_by_position(tiny_model, byte_ds, train_len=8, k=2, max_windows=2, label="rope", progress=False)
    b = loss_by_position(tiny_model, byte_ds, train_len=8, k=2, max_windows=2, scaling="ntk:2", progress=False)
    text = compare_table([a, b])
    assert "rope" in text and "ntk:2" in text and len(text.splitlines()) == 2 + 16 + 1
    pytest.importorskip("matplotlib")
    out = plot_loss_by_position([a, b], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000 and out.endswith("p.png")


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # importing it now raises ImportError
    with pytest.raises(MissingExtraError, match=r"archlab\[plot\]"):
        plot_loss_by_position([], str(tmp_path / "x.png"))

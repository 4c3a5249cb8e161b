"""``archlab kv`` and the planner behind it."""
from __future__ import annotations

import sys

import pytest

import archlab
from archlab import presets
from archlab.analysis.planner import kv_report, max_batch, parse_bytes, plot_cache_vs_context
from archlab.cli import main


def test_parse_bytes():
    assert parse_bytes("141GiB") == 141 * 2**30
    assert parse_bytes("80GB") == 80 * 10**9
    assert parse_bytes("1.5 MiB") == 3 * 2**19
    assert parse_bytes("4096") == 4096
    for bad in ("lots", "12XB", "0GiB"):
        with pytest.raises(ValueError, match="--gpu-mem"):
            parse_bytes(bad)


def test_report_figures():
    cfg = presets.get("llama-3-70b")
    r = kv_report(cfg, [4096, 131072], dtype="bf16", batch=4, gpu_mem=parse_bytes("141GiB"))
    assert r.bytes_per_token == 327_680
    assert r.weight_bytes == 2 * archlab.count_params(cfg).total
    first = r.rows[0]
    assert first.cache_bytes == 4096 * 327_680 and first.batch_cache_bytes == 4 * first.cache_bytes
    assert first.cache_over_weights == pytest.approx(first.batch_cache_bytes / r.weight_bytes)
    free = 141 * 2**30 - r.weight_bytes
    assert first.max_batch == free // first.cache_bytes == 7
    assert r.rows[1].max_batch == 0  # one 128k request (40 GiB) does not fit beside 131 GiB of weights
    # the weights alone exceed the GPU: nothing fits
    v3 = presets.get("deepseek-v3")
    assert max_batch(v3, 4096, parse_bytes("141GiB"), weight_bytes=2 * archlab.count_params(v3).total) == 0


def test_quantized_dtype_counts_values_and_scales():
    cfg = presets.get("llama-3-8b")
    bf16 = kv_report(cfg, [4096], dtype="bf16")
    int8 = kv_report(cfg, [4096], dtype="int8")
    assert int8.bytes_per_token == 32 * 8 * 2 * (128 + 4)
    assert int8.rows[0].cache_bytes < bf16.rows[0].cache_bytes
    with pytest.raises(ValueError, match="--dtype"):
        kv_report(cfg, [4096], dtype="int4")


def test_cli_prints_the_table_for_published_presets(capsys):
    assert main(["kv", "llama-3-70b", "deepseek-v3", "mistral-7b", "--context", "4k,32k,128k"]) == 0
    out = capsys.readouterr().out
    assert "327,680 bytes/token" in out and "70,272 bytes/token" in out and "131,072 bytes/token" in out
    assert "the weights alone do not fit" in out  # deepseek-v3 in bf16 on 141 GiB
    mistral = out[out.index("mistral-7b:"):]
    assert mistral.count("512.00 MiB") >= 3 * 2  # flat at 4096 x 131,072 bytes past the window (request and batch columns)
    assert "4,096" in mistral  # mean bytes per token at 128k: 4096 x 131072 / 131072


def test_cli_errors_are_named(capsys):
    assert main(["kv", "llama-3-8b", "--dtype", "int4"]) == 2
    assert "--dtype" in capsys.readouterr().err
    assert main(["kv", "llama-3-8b", "--context", "4k,abc"]) == 2
    assert main(["kv", "no-such-preset"]) == 2


def test_cli_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "kv.png"
    assert main(["kv", "llama-3-8b", "mistral-7b", "deepseek-debug", "--context", "1k,8k", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"archlab\[plot\]"):
        plot_cache_vs_context([presets.get("llama-3-debug")], str(tmp_path / "x.png"))

"""``archlab bench`` on the CPU at the test size: every row reports figures, --only filters,
bad options are named, --out writes the report. Speeds are never asserted."""
from __future__ import annotations

import re
import sys

import pytest
import torch

from archlab.bench import suite
from archlab.bench.result import Figure, Line, speedup
from archlab.cli import main

FIGURE = re.compile(r"^[\d,.]+(e[+-]\d+)? (tokens/s|ms)$")
PCT = re.compile(r"^[\d,.]+%$")


def sections(text: str) -> dict[str, list[list[str]]]:
    """Row name -> its table's body rows (cells), from the Markdown report."""
    out: dict[str, list[list[str]]] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].split(":")[0]
            out[name] = []
        elif name and line.startswith("| ") and not line.startswith(("| case", "| ---")):
            out[name].append([c.strip() for c in line.strip("|").split(" | ")])
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.md"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["bench", "--device", "cpu", "--size", "tiny", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_every_row_reports_figures(full_run):
    rc, printed, out = full_run
    assert rc == 0, printed
    assert printed.startswith("CPU (")
    header = printed.splitlines()[0]
    assert f"torch {torch.__version__}" in header and "float32 matmul 256^3" in header and "GB/s" in header
    rows = sections(printed)
    assert list(rows) == list(suite.ROWS)
    for name, body in rows.items():
        assert body, f"{name}: no table"
        for case, ours, _ref_name, ref, ratio, ours_pct, ref_pct in body:
            assert FIGURE.match(ours), (name, case, ours)
            assert FIGURE.match(ref), (name, case, ref)  # transformers is installed in the test environment
            assert re.match(r"^[\d.]+x$", ratio), (name, ratio)
            assert PCT.match(ours_pct) and PCT.match(ref_pct), (name, ours_pct, ref_pct)
    assert len(rows["decode"]) == 2 and len(rows["moe"]) == 2
    assert "roofline" in printed


def test_out_writes_the_report(full_run):
    _, printed, out = full_run
    text = out.read_text()
    assert text.startswith("# archlab bench\n")
    assert sections(text) == sections(printed)
    assert not out.with_name(out.name + ".tmp").exists()


def test_only_filters_rows(capsys):
    assert main(["bench", "--device", "cpu", "--size", "tiny", "--only", "sliding_window, linear_attention"]) == 0
    rows = sections(capsys.readouterr().out)
    assert list(rows) == ["linear_attention", "sliding_window"]  # suite order


def test_bad_only_names_the_option_and_the_rows(capsys):
    assert main(["bench", "--device", "cpu", "--only", "decode,attn"]) == 2
    err = capsys.readouterr().err
    assert "--only" in err and "'attn'" in err
    assert all(name in err for name in suite.ROWS)


def test_cuda_without_a_device_is_refused(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--only", "decode"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "auto" in err and "cpu" in err


def test_bad_device_and_size_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--device", "tpu"])
    assert "--device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--size", "huge"])
    assert "--size" in capsys.readouterr().err


def test_a_failing_row_reports_and_the_others_run(capsys, monkeypatch):
    def broken(ctx):
        raise RuntimeError("no inputs for this row")

    monkeypatch.setitem(suite.ROWS, "decode", broken)
    assert main(["bench", "--device", "cpu", "--size", "tiny", "--only", "decode,sliding_window"]) == 1
    out = capsys.readouterr().out
    assert "failed: RuntimeError: no inputs for this row" in out
    assert FIGURE.match(sections(out)["sliding_window"][0][1])


def test_a_missing_reference_says_so(capsys, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "transformers"] + ["transformers"]:
        monkeypatch.setitem(sys.modules, name, None)  # every import of transformers fails
    assert main(["bench", "--device", "cpu", "--size", "tiny", "--only", "moe"]) == 0
    out = capsys.readouterr().out
    assert "transformers not installed" in out.splitlines()[0]
    for _case, ours, _ref_name, ref, ratio, _p, ref_pct in sections(out)["moe"]:
        assert FIGURE.match(ours) and ref == "transformers not installed" and ratio == "-" and ref_pct == "-"


def test_speedup_reads_both_units():
    fast, slow = Figure(2.0, "ms"), Figure(6.0, "ms")
    assert speedup(fast, slow) == "3.00x" and speedup(slow, fast) == "0.33x"
    assert speedup(Figure(300.0, "tokens/s"), Figure(100.0, "tokens/s")) == "3.00x"
    assert speedup(fast, "fla not installed") == "-"
    assert Line("c", fast, "r", Figure(1.0, "tokens/s")).cells()[4] == "-"
    with pytest.raises(ValueError, match="unit"):
        Figure(1.0, "s")


def test_ssm_reference_falls_back_to_eager_when_its_compile_fails(monkeypatch):
    """transformers' Mamba-2 does not compile under every torch (an inductor error on torch 2.11):
    the row then times it eager and says so; ours is compiled with CUDA graphs."""
    from archlab.bench import rows_ssm
    from archlab.bench.context import Context
    from archlab.bench.sizes import SIZES
    from archlab.bench.timing import Ceilings

    calls = []

    def fake_rate(ctx, build, loss_of, ids, flops, *, compile=None, mode=None):
        ref = build.__name__ == "hf_build"
        calls.append((ref, compile, mode))
        if ref and compile is None:
            raise RuntimeError("list indices must be integers or slices, not NoneType")
        return Figure(10.0 if ref else 500.0, "tokens/s", 0.1)

    monkeypatch.setattr(rows_ssm, "training_rate", fake_rate)
    ctx = Context(torch.device("cpu"), torch.float32, SIZES["tiny"], Ceilings(1.0, 1.0, torch.float32, 64), compile=True)
    line = rows_ssm.ssm_train(ctx).lines[0]
    assert calls == [(False, None, "reduce-overhead"), (True, None, None), (True, False, None)]
    assert line.ref.value == 10.0 and line.ours.value == 500.0
    assert "eager; compiled RuntimeError: list indices" in line.reference
    assert "CUDA graphs" in line.case

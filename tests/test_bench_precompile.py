"""benchmarks/fla_precompile.py: its workers compile every config of every autotuned kernel an op uses, split
between them, neither timed nor launched; an op that refuses is skipped; an earlier run's autotuning results
are recognised.
A toy autotuned Triton kernel stands in for fla's (under Triton's interpreter on the CPU)."""
import sys
import types
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fla_precompile  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"


@triton.autotune(configs=[triton.Config({"BLOCK": b}) for b in (16, 32, 64)], key=["n"])
@triton.jit
def _toy_kernel(out_ptr, n, BLOCK: tl.constexpr):
    tl.store(out_ptr + tl.program_id(0), BLOCK)


@triton.autotune(configs=[triton.Config({"BLOCK": b}) for b in (8, 128)], key=["n"])
@triton.jit
def _toy_kernel_b(out_ptr, n, BLOCK: tl.constexpr):
    tl.store(out_ptr + tl.program_id(0), BLOCK)


@pytest.fixture
def toy_module(monkeypatch):
    mod = types.ModuleType("fla_toy.kernels")
    mod.a, mod.b = _toy_kernel, _toy_kernel_b
    monkeypatch.setitem(sys.modules, "fla_toy.kernels", mod)
    yield mod
    for t in (_toy_kernel, _toy_kernel_b):  # undo the workers' patches
        for name in ("prune_configs", "_bench", "run"):
            vars(t).pop(name, None)
        t.cache.clear()


@pytest.fixture
def calls(monkeypatch):
    """(kernel, BLOCK, warm-up flag) of every call that reaches the toy kernels' jitted functions."""
    seen = []
    for t in (_toy_kernel, _toy_kernel_b):
        def record(*args, _run=t.fn.run, _name=t.base_fn.__name__, **kwargs):
            seen.append((_name, kwargs["BLOCK"], kwargs["warmup"]))
            return _run(*args, **kwargs)
        monkeypatch.setattr(t.fn, "run", record)
    return seen


def _op(outs):
    def op():
        out = torch.zeros(2, dtype=torch.int32, device=DEV)
        _toy_kernel[(1,)](out, 4)
        _toy_kernel_b[(1,)](out[1:], 4)
        outs.append(tuple(out.tolist()))
    return op


def test_workers_compile_every_config_without_timing_or_launching(toy_module, calls, monkeypatch):
    tuners = fla_precompile.autotuners("fla_toy.")
    assert {t.base_fn.__name__ for t in tuners} == {"_toy_kernel", "_toy_kernel_b"}

    def no_timing(*args, **kwargs):
        raise AssertionError("a worker timed a config")
    monkeypatch.setattr(triton.testing, "do_bench", no_timing)
    outs = []
    runs = [fla_precompile.compile_rounds([_op(outs)], tuners, index=i, workers=2, log=lambda s: None)
            for i in range(2)]
    # worker 0 runs rounds 0 and 2, worker 1 round 1: the longest config list has 3 entries
    assert runs == [2, 1]
    assert {b for k, b, _ in calls if k == "_toy_kernel"} == {16, 32, 64}
    assert {b for k, b, _ in calls if k == "_toy_kernel_b"} == {8, 128}
    assert all(warm for _, _, warm in calls)  # compiled only: nothing was launched, no output written
    assert outs == [(0, 0)] * 3
    # where a Triton version times even a one-config autotune, the worker's stand-in runs the config once
    out = torch.zeros(1, dtype=torch.int32, device=DEV)
    assert _toy_kernel._bench(out, 4, config=_toy_kernel.configs[2], grid=(1,), warmup=False) == [0.0, 0.0, 0.0]
    assert out.item() == 64


def test_an_op_that_refuses_is_skipped(toy_module):
    seen, logged = [], []  # the toy op's outputs, the log

    def refuses():
        raise RuntimeError("this Triton version gives wrong results here")
    tuners = fla_precompile.autotuners("fla_toy.")
    n = fla_precompile.compile_rounds([refuses, _op(seen)], tuners, index=0, workers=1, log=logged.append)
    assert n == 3 and len(seen) == 3
    assert len(logged) == 1 and "op 0 skipped: RuntimeError" in logged[0]


def test_tuned_before_reads_the_autotuning_results(toy_module, tmp_path):
    tuners = fla_precompile.autotuners("fla_toy.")
    assert not fla_precompile.tuned_before(tuners, tmp_path)
    (tmp_path / "abc123").mkdir()
    (tmp_path / "abc123" / "unrelated_kernel.autotune.json").write_text("{}")
    assert not fla_precompile.tuned_before(tuners, tmp_path)
    (tmp_path / "abc123" / "_toy_kernel_b.autotune.json").write_text("{}")
    assert fla_precompile.tuned_before(tuners, tmp_path)

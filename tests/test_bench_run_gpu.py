"""benchmarks/run_gpu.py runs each benchmark in its own process group: past its time limit the whole group
is killed, so nothing a benchmark started goes on sharing the GPU with the next one."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from run_gpu import run_group  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_run_group_returns_the_exit_code_and_output(tmp_path):
    code, out = run_group([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], env=dict(os.environ),
                          cwd=tmp_path, timeout=60)
    assert code == 3 and "hello" in out


def _benchmark(pidfile: Path) -> str:
    """A stand-in benchmark that starts a worker of its own and waits."""
    return ("import subprocess, sys, time;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")


def _gone(pid: int) -> bool:
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")


@needs_proc
def test_run_group_kills_what_the_benchmark_started(tmp_path):
    pidfile = tmp_path / "worker.pid"
    t = time.time()
    code, out = run_group([sys.executable, "-c", _benchmark(pidfile)], env=dict(os.environ), cwd=tmp_path, timeout=3)
    assert code is None and "started" in out and time.time() - t < 30
    assert _gone(int(pidfile.read_text()))


@needs_proc
def test_terminating_the_runner_kills_the_benchmark_group(tmp_path):
    pidfile = tmp_path / "worker.pid"
    runner = (f"import os, sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; import run_gpu;"
              f"run_gpu.exit_on_sigterm();"
              f"run_gpu.run_group([sys.executable, '-c', {_benchmark(pidfile)!r}], env=dict(os.environ),"
              f" cwd=Path({str(tmp_path)!r}), timeout=120)")
    r = subprocess.Popen([sys.executable, "-c", runner])
    deadline = time.time() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    r.send_signal(signal.SIGTERM)
    assert r.wait(timeout=30) == 128 + signal.SIGTERM
    assert _gone(int(pidfile.read_text()))


@needs_proc
def test_run_group_stamps_its_log_and_kills_what_outlives_the_benchmark(tmp_path):
    pidfile = tmp_path / "worker.pid"
    quits = ("import subprocess, sys;"
             "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
             f"open({str(pidfile)!r}, 'w').write(str(p.pid)); print('one'); print('two')")
    log = tmp_path / "bench.log"
    code, out = run_group([sys.executable, "-c", quits], env=dict(os.environ), cwd=tmp_path, timeout=60, log=log)
    assert code == 0 and out == "one\ntwo\n"
    lines = log.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["one", "two"]
    assert all(line.startswith("[") and " s] " in line for line in lines)
    assert _gone(int(pidfile.read_text()))


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name: [0] the state, [16] the nice value."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _state(pid: int) -> str:
    return _stat(pid)[0]


@needs_proc
def test_background_work_runs_niced_pauses_and_finishes(tmp_path):
    from run_gpu import Background

    bg = Background()
    work = "import time; time.sleep(1.5); print('compiled')"
    bg.start("late", [sys.executable, "-c", work], env=dict(os.environ), cwd=tmp_path, log=tmp_path / "bg.log")
    p = bg.jobs["late"][0]
    assert _stat(p.pid)[16] == "19"  # the lowest CPU priority while benchmarks run beside it
    bg.pause()
    deadline = time.time() + 10
    while _state(p.pid) != "T" and time.time() < deadline:
        time.sleep(0.05)
    assert _state(p.pid) == "T"  # stopped
    time.sleep(2)
    assert p.poll() is None  # it cannot finish while paused
    bg.resume()
    ok, how = bg.finish("late", timeout=30)
    assert ok and how.startswith("ok after") and how.endswith(": compiled")
    assert not bg.jobs


@needs_proc
def test_background_work_past_its_wait_is_killed(tmp_path):
    from run_gpu import Background

    bg = Background()
    bg.start("late", [sys.executable, "-c", "import time; time.sleep(60)"], env=dict(os.environ), cwd=tmp_path,
             log=tmp_path / "bg.log")
    p = bg.jobs["late"][0]
    ok, how = bg.finish("late", timeout=1)
    assert not ok and how.startswith("timed out")
    assert p.poll() is not None


def test_main_compiles_in_the_background_and_hands_the_benchmark_its_note(tmp_path, monkeypatch):
    import run_gpu

    (tmp_path / "early.py").write_text(
        "import sys, time; out = sys.argv[sys.argv.index('--out') + 1]; time.sleep(0.5); print('early ran');"
        "open(out, 'w').write('## early\\n\\nran\\n')")
    (tmp_path / "late.py").write_text(
        "import sys\n"
        "if '--precompile-only' in sys.argv:\n"
        "    print('kernels compiled'); sys.exit(0)\n"
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "open(out, 'w').write('## late\\n\\nargs: ' + ' '.join(sys.argv[1:]) + '\\n')\n")
    monkeypatch.setattr(run_gpu, "HERE", tmp_path)
    monkeypatch.setattr(run_gpu, "BENCHMARKS", {"early": ("early.py", [], 60, True),
                                                 "late": ("late.py", ["--x"], 120, True)})
    monkeypatch.setattr(run_gpu, "PRECOMPILE", {"late": (["--precompile-only"], ["--workers", "0"])})
    monkeypatch.setattr(run_gpu, "QUIET", {"early"})
    monkeypatch.setattr(sys, "argv", ["run_gpu.py", "--out-dir", str(tmp_path / "res")])
    assert run_gpu.main() == 0
    late = (tmp_path / "res" / "results" / "late.md").read_text()
    assert "args: --out" in late and "--x --workers 0 --note its kernels compiled in the background" in late
    # the command line shown is the benchmark's own; the note says how its kernels were compiled
    assert "`python benchmarks/late.py --x` -- ok" in late and "compiled in the background while" in late
    assert "kernels compiled" in (tmp_path / "res" / "late.precompile.log").read_text()
    assert (tmp_path / "res" / "early.log").read_text().endswith(" s] early ran\n")  # its output, stamped
    assert "## early" in (tmp_path / "res" / "RESULTS.md").read_text()

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

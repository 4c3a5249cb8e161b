import subprocess
import sys

from archlab.cli import main


def test_info_llama_prints_published_numbers(capsys):
    assert main(["info", "llama-3-8b"]) == 0
    out = capsys.readouterr().out
    assert "8,030,261,248" in out and "131,072" in out


def test_info_accepts_overrides_files_and_lengths(tmp_path, capsys):
    import archlab

    path = tmp_path / "m.yaml"
    archlab.presets.get("llama-3-debug").to_yaml(path)
    assert main(["info", str(path), "--set", "attention.kv_heads=1", "--seq-len", "8k"]) == 0
    out = capsys.readouterr().out
    assert "8,192 tokens" in out and "1 kv heads" in out


def test_errors_exit_2_and_name_the_field(capsys):
    assert main(["info", "llama-3-8b", "--set", "attention.kv_heads=3"]) == 2
    assert "attention.kv_heads" in capsys.readouterr().err
    assert main(["info", "no-such-model"]) == 2
    assert main(["info", "missing.yaml"]) == 2
    assert main(["info", "llama-3-8b", "--set", "novalue"]) == 2


def test_presets_lists_and_console_script_runs(capsys):
    assert main(["presets"]) == 0
    assert "llama-3-8b" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "archlab.cli", "presets"], capture_output=True, text=True)
    assert r.returncode == 0 and "gpt2-124m" in r.stdout


def test_info_shows_windowed_cache_flat_past_the_window(capsys):
    assert main(["info", "mistral-7b"]) == 0
    out = capsys.readouterr().out
    flat = f"{4096 * 131072:,}"
    assert all(f"@ {k}k tokens" in out for k in (4, 32, 128)) and out.count(flat) >= 3

"""The benchmark suite: every row, run on one device at one size, as Markdown.

Each row builds its own inputs and runs archlab and the reference in the same process; a row
that fails reports its error and the next one runs.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from archlab.bench.context import Context
from archlab.bench.result import Section
from archlab.bench.rows_model import decode, train_step
from archlab.bench.rows_ops import linear_attention, moe, sliding_window
from archlab.bench.rows_ssm import ssm_train
from archlab.bench.sizes import SIZES
from archlab.bench.timing import measure_ceilings
from archlab.errors import ConfigError

ROWS: dict[str, Callable[[Context], Section]] = {
    "train_step": train_step,
    "decode": decode,
    "moe": moe,
    "linear_attention": linear_attention,
    "sliding_window": sliding_window,
    "ssm_train": ssm_train,
}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: accepted: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; accepted: auto or cpu")
    return torch.device(name)


def select_rows(only: str | None) -> list[str]:
    """``--only train_step,moe`` -> those rows in suite order; None -> every row."""
    if only is None:
        return list(ROWS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in names if n not in ROWS]
    if bad or not names:
        raise ConfigError(f"--only {only!r}: unknown row {', '.join(map(repr, bad)) or '(none given)'}; "
                          f"accepted: {', '.join(ROWS)} (comma-separated)")
    return [n for n in ROWS if n in names]


@dataclass
class Report:
    header: str
    sections: list[Section] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n".join(["# archlab bench", "", self.header, ""] + [s.markdown() for s in self.sections])


def header_line(device: torch.device, size: str, ceilings) -> str:
    try:
        import transformers

        tf = f"transformers {transformers.__version__}"
    except ImportError:
        tf = "transformers not installed"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    return (f"{name} | torch {torch.__version__} | {tf} | size {size} | {time.strftime('%Y-%m-%d')} | "
            f"ceilings: {ceilings.describe()}")


def run_suite(device: str = "auto", size: str | None = None, only: str | None = None,
              say: Callable[[str], None] = print) -> Report:
    """Run the selected rows; ``say`` gets the header and then each row's Markdown as it finishes."""
    dev = resolve_device(device)
    names = select_rows(only)
    size = size or ("full" if dev.type == "cuda" else "small")
    if size not in SIZES:
        raise ConfigError(f"--size {size!r}: accepted: small, full")
    sizes = SIZES[size]
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    ceilings = measure_ceilings(dev, dtype, matmul_n=sizes.matmul_n, copy_bytes=sizes.copy_bytes,
                                warmup=sizes.warmup, rep=max(sizes.rep, 3))
    ctx = Context(device=dev, dtype=dtype, sizes=sizes, ceilings=ceilings, compile=dev.type == "cuda")
    report = Report(header_line(dev, size, ceilings))
    say(report.header + "\n")
    for name in names:
        t0 = time.perf_counter()
        try:
            section = ROWS[name](ctx)
        except Exception as e:  # noqa: BLE001 - a failing row is reported; the others run
            traceback.print_exc()
            section = Section(name, error=f"{type(e).__name__}: {str(e).strip()[:200]}")
        ctx.free()
        section.seconds = time.perf_counter() - t0
        report.sections.append(section)
        say(section.markdown())
    return report


def write_markdown(text: str, path: str | Path) -> Path:
    """Write atomically: a reader sees the old file or the whole new one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return p

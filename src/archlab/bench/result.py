"""What a benchmark row measures, and its Markdown table.

A row is a few lines, each "archlab beside a reference on the same inputs": the two figures,
how many times faster archlab is, and each figure as a fraction of the measured ceiling.
A side that could not run holds the reason as text instead of a figure.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable, Union


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str  # "tokens/s" (higher is better) or "ms" (lower is better)
    of_ceiling: float | None = None

    def __post_init__(self):
        if self.unit not in ("tokens/s", "ms"):
            raise ValueError(f"unit: 'tokens/s' or 'ms', got {self.unit!r}")

    def text(self) -> str:
        return f"{num(self.value)} {self.unit}"


Outcome = Union[Figure, str]


def num(x: float) -> str:
    """Three significant digits, without exponents for figures of 100 and more."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def attempt(fn: Callable[[], Figure]) -> Outcome:
    """fn()'s figure, or why there is none: a missing package, or the error (printed in full)."""
    try:
        return fn()
    except ModuleNotFoundError as e:
        return f"{(e.name or 'a module').split('.')[0]} not installed"
    except Exception as e:  # noqa: BLE001 - one side failing is a result, not the end of the run
        traceback.print_exc()
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        return f"failed: {type(e).__name__}: {first}"


def speedup(ours: Outcome, ref: Outcome) -> str:
    """How many times faster archlab is (reference time / ours, or ours tokens/s / reference's)."""
    if not (isinstance(ours, Figure) and isinstance(ref, Figure)) or ours.unit != ref.unit:
        return "-"
    r = ours.value / ref.value if ours.unit == "tokens/s" else ref.value / ours.value
    return f"{r:.2f}x"


def _cell(x: Outcome) -> str:
    return x.text() if isinstance(x, Figure) else x


def _pct(x: Outcome) -> str:
    return f"{x.of_ceiling:.1%}" if isinstance(x, Figure) and x.of_ceiling is not None else "-"


@dataclass(frozen=True)
class Line:
    case: str
    ours: Outcome
    reference: str  # what the reference is
    ref: Outcome

    def cells(self) -> list[str]:
        return [self.case, _cell(self.ours), self.reference, _cell(self.ref), speedup(self.ours, self.ref),
                _pct(self.ours), _pct(self.ref)]


HEADER = ["case", "archlab", "reference", "reference figure", "archlab speed-up", "archlab of ceiling",
          "reference of ceiling"]


@dataclass
class Section:
    name: str
    title: str = ""
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the row as a whole failed (e.g. building its inputs)
    seconds: float = 0.0

    def markdown(self) -> str:
        out = [f"## {self.name}: {self.title}" if self.title else f"## {self.name}", ""]
        if self.error:
            out += [f"failed: {self.error}", ""]
        if self.lines:
            out += ["| " + " | ".join(HEADER) + " |", "|" + "|".join(" --- " for _ in HEADER) + "|"]
            out += ["| " + " | ".join(c.replace("|", "/") for c in ln.cells()) + " |" for ln in self.lines]
            out.append("")
        for note in [*self.notes, f"({self.seconds:.1f} s)"]:
            out += [note, ""]
        return "\n".join(out)

"""Where metrics go: a JSON Lines file (every step), TensorBoard event files (when the
``tensorboard`` package is installed) and the terminal (a progress bar plus a line every
``log_every`` steps). Only the main process writes."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable


def _clean(v: Any) -> Any:
    """JSON has no NaN or infinity: write them as strings so the file stays standard JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class MetricsLog:
    def __init__(self, out_dir: Path | None, *, enabled: bool, total_steps: int, start_step: int,
                 tensorboard: bool, progress: bool, say: Callable[[str], None]):
        self.enabled = enabled
        self.say = say if enabled else (lambda s: None)
        self.file = None
        self.tb = None
        self.bar = None
        if not enabled:
            return
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.file = open(out_dir / "metrics.jsonl", "a")
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:  # tensorboard not installed: the JSONL log has everything
                    pass
                else:
                    self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        if progress:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                                file=sys.stderr, dynamic_ncols=True, leave=False)
                self.say = lambda s: self.bar.write(s, file=sys.stdout)

    def record(self, rec: dict[str, Any]) -> None:
        """One JSON object per line; numeric top-level (and nested ``moe``) values to TensorBoard."""
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write(json.dumps(_clean(rec)) + "\n")
            self.file.flush()
        if self.tb is not None and "step" in rec:
            step = int(rec["step"])
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step" and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, step)
            for layer, stats in rec.get("moe", {}).items():
                for k, v in stats.items():
                    if isinstance(v, (int, float)):
                        self.tb.add_scalar(f"moe/{layer}/{k}", v, step)

    def progress(self, step: int, postfix: str) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()

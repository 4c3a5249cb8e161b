"""A progress bar for one-off cache builds: tqdm when installed, else a line every few seconds."""
from __future__ import annotations

import sys
import time
from typing import Any


class _Plain:
    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n = total, desc, 0
        self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last > 5.0:
            self.last = now
            print(f"{self.desc}: {100.0 * self.n / max(1, self.total):.0f}%", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Null(_Plain):
    def update(self, n: int) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True) -> Any:
    """An object with ``update(n_bytes)`` and ``close()``."""
    if not enabled:
        return _Null(total, desc)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Plain(total, desc)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)

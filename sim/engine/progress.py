"""The run's progress bar on stderr: conditions and replicates done, elapsed time and ETA."""

from __future__ import annotations

import math
import sys
import time

import numpy as np


class Progress:
    """Minimal stderr progress bar: conditions and replicates done, elapsed, ETA."""

    def __init__(self, n_conditions: int, reps: int, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.reps = reps
        self.total = n_conditions * reps
        self.n_conditions = n_conditions
        self.done_per_condition = np.zeros(n_conditions, dtype=np.int64)
        self.start = time.monotonic()
        self.resumed = 0
        self.last_draw = 0.0

    def add(self, c: int, n: int, resumed: bool = False) -> None:
        self.done_per_condition[c] += n
        if resumed:
            self.resumed += n

    def draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last_draw < 0.2:
            return
        self.last_draw = now
        done = int(self.done_per_condition.sum())
        cdone = int((self.done_per_condition >= self.reps).sum())
        elapsed = now - self.start
        computed = done - self.resumed
        remaining = self.total - done
        eta = elapsed / computed * remaining if computed > 0 else float("nan")
        frac = done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = (f"\r[{bar}] conditions {cdone}/{self.n_conditions}  reps {done}/{self.total}  "
                f"elapsed {_fmt_time(elapsed)}  ETA {_fmt_time(eta)} ")
        self.stream.write(line + ("\n" if final else ""))
        self.stream.flush()


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

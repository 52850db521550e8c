"""A run's results: failures in memory, replicate rows in memory, in the run's chunk files, or in
its compacted store (replicates.parquet, sim.engine.compact).

Why: a grid of conditions x 10^4-10^5 replicates has gigabytes of replicate rows. A run that
leaves them on disk (run_chunks(keep_rows=False)) and reads them back one condition at a time
(`condition_replicates`) needs the memory of one condition, whatever the grid. `replicates` read
back is the table the run would have held (the same frames, concatenated the same way); a
condition's rows are its stored rows (replicates below the store's reps) followed by its chunks,
so their columns are those its chunks had. The files must still be there when the rows are read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import pandas as pd

from .store import empty_rows, read_chunk

@dataclass
class RunResult:
    """Outcome of ``run_chunks``.

    replicates: rows from the chunk function with ``condition`` and ``rep`` prepended, sorted by
        condition, rep, then the row order it returned; held in memory (``rows``) or read each
        time it is asked for from ``store`` (a completed run's replicates.parquet, the reps below
        its ``reps``) and ``chunk_files`` (condition, first rep, last rep, path).
    failures: one row per failed replicate (columns condition, rep, reason).
    conditions: the conditions list; ``condition`` indexes into it.
    out_dir: the run directory (None: a run without one).
    """

    failures: pd.DataFrame
    conditions: list[dict] = field(default_factory=list)
    n_computed_chunks: int = 0
    n_resumed_chunks: int = 0
    rows: pd.DataFrame | None = None
    chunk_files: list[tuple[int, int, int, Path]] = field(default_factory=list)
    store: Any = None  # StoreFile | None
    out_dir: Path | None = None
    dropped: str = ""  # why a finished run's rows were deleted (it kept its summaries only)

    @property
    def replicates(self) -> pd.DataFrame:
        if self.rows is not None:
            return self.rows
        return concat_rows([f for _, frames in self._frames(None) for f in frames])

    def condition_replicates(self, conditions: Collection[int] | None = None) -> Iterator[pd.DataFrame]:
        """The rows of each condition that has any (of `conditions`, default all), in condition
        order, one condition in memory at a time; the others' files are not read."""
        if self.rows is not None:
            for c, rows in self.rows.groupby("condition", sort=True):
                if conditions is None or c in conditions:
                    yield rows
            return
        for _, frames in self._frames(conditions):
            rows = concat_rows(list(frames))
            if len(rows):
                yield rows

    def _frames(self, conditions: Collection[int] | None) -> Iterator[tuple[int, Iterator[pd.DataFrame]]]:
        """(condition, its frames: stored rows, then its chunks' rows), in condition order."""
        if self.dropped:
            raise FileNotFoundError(f"the run kept no replicate rows ({self.dropped}); run it without out_dir "
                                    "to hold them in memory")
        store = self.store  # a sim.engine.compact.StoreFile, or None
        stored = store.conditions if store is not None else []
        files = {c: list(fs) for c, fs in groupby(self.chunk_files, key=lambda f: f[0])}
        for c in sorted(set(stored) | set(files)):
            if conditions is not None and c not in conditions:
                continue
            head = [store.rows(c)] if c in stored else []
            yield c, iter(head + [_rows(path) for *_, path in files.get(c, [])])


def _rows(path: Path) -> pd.DataFrame:
    try:
        return read_chunk(path)["replicates"]
    except FileNotFoundError:
        raise FileNotFoundError(f"the run's replicate rows are read from its chunk files, and {path} is gone: keep "
                                "the run directory while its result is used (a run without a directory keeps "
                                "them in memory)") from None


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks' rows stacked (chunks without rows left out), as the run holds them."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty_rows()

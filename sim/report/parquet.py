"""replicates.parquet written a condition at a time: the frames of one run stacked into one
Parquet file without holding them all (sim.report.montecarlo.write_tables). The writer is the
engine's (sim.engine.columnar.write_frames: packed, each column encoded the way it compresses best;
read back by sim.read_replicates), which also compacts a completed run's chunks into the same file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import pandas as pd

from sim.engine.atomic import atomic_writer
from sim.engine.columnar import write_frames
from sim.engine.compact import compact

if TYPE_CHECKING:
    from sim.jobs.contract import ExperimentResult


def write_parquet(frames: Callable[[], Iterable[pd.DataFrame]], fh, rows: int = 1 << 20) -> bool:
    """The frames of `frames()` stacked into one Parquet file, which read_frames (sim.read_replicates)
    reads back as their concatenation (pd.concat: the union of their columns, missing values where a frame has none)
    written at once would; written `rows` at a time (row groups). False, and nothing written,
    when there is no frame."""
    return write_frames(frames, fh, rows=rows)


def keeps_replicates(result: "ExperimentResult") -> bool:
    """The run's `keep_replicates` setting (false: summaries only, no replicates.parquet)."""
    return bool(result.conditions[0].cfg.get("keep_replicates", True)) if result.conditions else True


def write_replicates(result: "ExperimentResult", out_dir: Path) -> None:
    """replicates.parquet, unless keep_replicates=false. A run with its rows in `out_dir` has them
    compacted into it (sim.engine.compact: the chunk files go, the file is the run's store from
    then on; a run read back complete from it is left as it is); other runs' rows are written a
    condition at a time. Parquet: a 30th of the time of a gzipped CSV."""
    if not keeps_replicates(result):
        return
    run = result.run
    if run.out_dir is not None and run.rows is None and Path(run.out_dir).resolve() == Path(out_dir).resolve():
        if run.chunk_files or run.store is None:
            compact(run, result.grid)
        return
    with atomic_writer(Path(out_dir) / "replicates.parquet") as fh:  # a condition in memory at a time
        if not write_parquet(result.condition_replicates, fh):
            result.replicates.to_parquet(fh, index=False)  # no rows: the empty table's columns

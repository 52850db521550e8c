"""Outputs of the matched design computed piece by piece, to bound their working memory: the
summary condition by condition equals the whole-table computation, row for row and to the bit (and
falls back to it when conditions give different tables); replicates.parquet written in row groups
reads back as the whole table written at once; a run into a directory reads its rows back from
the chunk files."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest

import sim
from sim.engine.columnar import read_frames
from sim.jobs import psm
from sim.report.parquet import write_parquet

SENS = "method.outcomes.analyses=[wilcoxon,diff_means,rosenbaum,tost]"
GRID = "experiment.grid={method.matching.caliper:[0.05,0.2,null],cohort.effect_mcid:[0.0]}"


@pytest.fixture(scope="module")
def run():
    return sim.run("caliper_sweep", [SENS, GRID, "reps=12", "n_jobs=1"])


def _both(run, replicates, monkeypatch):
    calls = []
    real = psm.measure_tables
    monkeypatch.setattr(psm, "measure_tables", lambda rows, *a: calls.append(rows["condition"].nunique()) or real(rows, *a))
    args = (run.failures, run.conditions, "matched", 0.05, 12)
    split = psm.summary_table(replicates, *args)
    pd.testing.assert_frame_equal(split, psm.summary_table(replicates, *args, by_condition=False), check_exact=True)
    return calls[:-1]  # the calls of the condition-by-condition table


def test_by_condition_equals_the_whole_table(run, monkeypatch):
    assert _both(run, run.replicates, monkeypatch) == [1, 1, 1]


def test_conditions_with_other_tables_are_summarised_whole(run, monkeypatch):
    """No p-value in one condition: it has no rejection tables, so the whole table is computed."""
    reps = run.replicates.copy()
    reps.loc[reps["condition"] == 1, "p_value"] = float("nan")
    assert _both(run, reps, monkeypatch) == [1, 1, 1, 3]


def read_back(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame written to Parquet at once and read back."""
    fh = io.BytesIO()
    frame.to_parquet(fh, index=False)
    return pd.read_parquet(io.BytesIO(fh.getvalue()))


def test_replicates_written_in_row_groups_read_back_whole(run):
    frames = [rows.assign(nothing=float("nan")) for _, rows in run.replicates.groupby("condition")]
    frames[0] = frames[0].assign(note=[None if i % 3 else "x" for i in range(len(frames[0]))])
    assert frames[0]["note"].isna().any() and frames[0]["note"].notna().any()  # strings and None in one column
    frames[1] = frames[1].assign(note=None)  # a column without any value in one condition
    frames[2] = frames[2].assign(note=float("nan")).drop(columns="gamma_star")  # NaN for text; a column missing
    for parts in (frames, frames[1:2], frames[2:]):
        fh = io.BytesIO()
        assert write_parquet(lambda: iter(parts), fh, rows=100)
        pd.testing.assert_frame_equal(read_frames(pq.ParquetFile(io.BytesIO(fh.getvalue()))),
                                      read_back(pd.concat(parts)))
    assert not write_parquet(lambda: iter([]), io.BytesIO())


def test_a_run_into_a_directory_reads_its_rows_back(run, tmp_path):
    """With a directory the rows stay on disk: the same summary (computed a condition at a time
    from the chunk files), the same replicates, and replicates.parquet holds them: the chunks are
    compacted into it and removed, and the run reads its rows from it; without it, reading them
    is one clear error."""
    disk = sim.run("caliper_sweep", [SENS, GRID, "reps=12", "n_jobs=1", "draw_figures=false"], out_dir=tmp_path)
    assert disk.run.rows is None and run.run.rows is not None
    pd.testing.assert_frame_equal(disk.summary, run.summary, check_exact=True)
    pd.testing.assert_frame_equal(disk.replicates, run.replicates)
    pd.testing.assert_frame_equal(sim.read_replicates(tmp_path), read_back(run.replicates))
    zipped = pd.concat(list(disk.condition_replicates(lambda g: g["caliper"] == 0.2)), ignore_index=True)
    pd.testing.assert_frame_equal(zipped, run.replicates[run.replicates["caliper"] == 0.2].reset_index(drop=True))
    assert not list((tmp_path / "chunks").glob("c*")) and disk.run.store is not None
    pd.testing.assert_frame_equal(disk.run.replicates, run.run.replicates, check_exact=True)  # read from the file
    (tmp_path / "replicates.parquet").unlink()  # the rows are read where the run left them: gone, one clear error
    with pytest.raises(FileNotFoundError, match="keep the run directory"):
        next(disk.condition_replicates())


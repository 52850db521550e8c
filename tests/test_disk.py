"""Disk: storage proportional to information. Chunks are compressed columnar files (value for
value what the run computed); a complete run is compacted into replicates.parquet (the chunks
removed) and re-read from it without recomputing; a larger reps tops a directory up to what a
fresh run gives, a smaller one is refused; a killed run still resumes bit-exactly; the disk a run
takes is estimated before it starts and a run over max_disk_gb is refused leaving nothing behind;
keep_replicates=false keeps summaries only; an interrupted run says how many chunks it kept."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_helpers import run_sim_lines
from sim.engine import ManifestMismatchError, per_replicate, run_chunks
from sim.engine.columnar import read_frames
from sim.engine.compact import STORE_FILE, compact
from sim.engine.disk import estimate_disk
from sim.engine.store import (decode_chunk, encode_chunk, failures_frame, read_manifest,
                              write_chunk)

ROOT = Path(__file__).resolve().parents[1]
CONDS = [{"mu": 0.0}, {"mu": 1.0}, {"mu": 3.0}]
LABELS = pd.DataFrame({"condition": [0, 1, 2], "mu": [0.0, 1.0, 3.0]})


def long_rows(cond: dict, rng: np.random.Generator) -> pd.DataFrame:
    """A replicate as the jobs give it: replicate-level values repeated on every analysis row,
    one value per outcome x analysis, missing values where an analysis has none."""
    n_pairs, smd = int(rng.integers(40, 70)), rng.random()
    if rng.random() < 0.2:
        raise ValueError("no pairs")
    rows = []
    for outcome in ("barthel", "vas"):
        truth = cond["mu"] + rng.normal()
        for analysis in ("wilcoxon", "paired_t", "diff_means"):
            est = np.nan if analysis == "wilcoxon" else truth + rng.normal()
            rows.append({"outcome": outcome, "n_pairs": n_pairs, "max_abs_smd": smd, "truth": truth,
                         "analysis": analysis, "estimate": est, "p_value": rng.random(), "separated": smd > 0.9,
                         "note": None if analysis == "wilcoxon" else ""})
    return pd.DataFrame(rows)


FN = per_replicate(long_rows)


def never_called(plan, rngs):
    raise AssertionError("a complete run recomputed a replicate")


def held(tmp_path: Path, reps: int):
    """The run's table held in memory (the reference)."""
    return run_chunks(FN, CONDS, CONDS, reps, 5, tmp_path / f"held{reps}", n_jobs=1, chunk_size=4, progress=False)


def chunks_in(out: Path) -> list[Path]:
    return sorted((out / "chunks").glob("c*.chunk"))


def same(a, b) -> None:
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    pd.testing.assert_frame_equal(a.failures, b.failures, check_exact=True)


# ----------------------------------------------------------------------------- the chunk format

def test_chunk_rows_round_trip_to_the_bit():
    x = np.array([0.1, -0.0, np.inf, -np.inf, 5e-324, np.nan, 1 / 3, 0.0])
    rows = pd.DataFrame({"condition": np.full(8, 2), "rep": np.arange(8), "x": x, "x_rep": np.repeat(x[:2], 4),
                         "k": np.arange(8, dtype=np.int64) * 10**12, "flag": x > 0,
                         "s": pd.array(["a", None, "", "b", "a", None, "c", "d"], dtype="str"),
                         "o": ["u", None, "v", None, "u", "v", "w", None], "none": np.full(8, np.nan),
                         "none_s": pd.array([None] * 8, dtype="str"), "none_o": [None] * 8})
    fails = failures_frame([(2, 8, "ValueError: no pairs"), (2, 9, "x" * 500)])
    back = decode_chunk(encode_chunk({"condition": 2, "first": 0, "last": 9, "replicates": rows, "failures": fails}))
    pd.testing.assert_frame_equal(back["replicates"], rows, check_exact=True)
    pd.testing.assert_frame_equal(back["failures"], fails, check_exact=True)
    finite = ~np.isnan(x)
    for col in ("x", "x_rep"):
        got, want = back["replicates"][col].to_numpy(), rows[col].to_numpy()
        assert (got[finite[:len(got)]].view(np.int64) == want[finite[:len(want)]].view(np.int64)).all()  # -0.0 kept


def bits_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames (dtypes included), every float to the bit (-0.0 is not 0.0)."""
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for col in a.columns:
        if a[col].dtype.kind == "f":
            x, y = a[col].to_numpy(), b[col].to_numpy()
            assert ((x.view(np.int64) == y.view(np.int64)) | (np.isnan(x) & np.isnan(y))).all(), col


def test_the_packed_replicates_file_reads_back_to_the_bit():
    """replicates.parquet is packed (repeats once, CIs as half-widths, rows position-major): read
    back, it is the frames as written, whatever the values: intervals a half-width cannot give back
    (an open end, one end missing, no estimate, -0.0), a missing value after a repeated one, rows of
    unequal count per replicate, row groups that split a replicate, a column one frame lacks."""
    import io

    import pyarrow.parquet as pq

    from sim.engine.columnar import read_frames, write_frames

    rng = np.random.default_rng(1)
    n = 60
    rep = np.repeat(np.arange(12), 5)
    est = rng.normal(size=n)
    width = rng.random(n) * 2
    lo, hi = est - width, est + width
    lo[:7] = [np.nan, -np.inf, 0.1, -0.0, np.nan, lo[5] + 1e-3, np.nan]  # open, shifted, missing ends
    hi[:7] = [np.nan, np.inf, np.nan, 0.0, 1.0, hi[5], 2.0]
    est[6] = np.nan
    truth = np.repeat(rng.normal(size=24), [2, 3] * 12)  # repeated within a replicate, then not
    truth[[3, 4, 17]] = [np.nan, np.nan, -0.0]
    frame = pd.DataFrame({"condition": 3, "rep": rep, "analysis": np.tile(list("abcde"), 12), "estimate": est,
                          "ci_low": lo, "ci_high": hi, "truth": truth, "n_pairs": np.repeat(rng.integers(0, 9, 12), 5),
                          "flag": np.repeat(rng.random(12) > 0.5, 5), "p_value": rng.random(n)})
    frame = frame.drop(index=[7, 8, 30]).reset_index(drop=True)  # replicates of 3 and 4 rows
    other = frame.assign(condition=4, n_pairs=frame["n_pairs"] / 2).drop(columns="truth")  # ints, then floats
    for rows in (1000, 7):
        fh = io.BytesIO()
        assert write_frames(lambda: iter([frame, other]), fh, rows=rows)
        pf = pq.ParquetFile(io.BytesIO(fh.getvalue()))
        assert b"sim.packed" in pf.metadata.metadata and "ci_halfwidth" in pf.schema_arrow.names
        bits_equal(read_frames(pf), pd.concat([frame, other], ignore_index=True))
        bits_equal(read_frames(pf, [0], ["ci_high", "rep"]), frame[["ci_high", "rep"]].iloc[:min(rows, len(frame))])
    unsorted = frame.iloc[::-1].reset_index(drop=True)  # not sorted by condition and rep: stored as it is
    fh = io.BytesIO()
    write_frames(lambda: iter([unsorted]), fh)
    pf = pq.ParquetFile(io.BytesIO(fh.getvalue()))
    assert b"sim.packed" not in pf.metadata.metadata
    bits_equal(read_frames(pf), unsorted)
    bits_equal(pd.read_parquet(io.BytesIO(fh.getvalue())), unsorted)


def test_a_chunk_is_a_fraction_of_its_pickle():
    rngs = [np.random.default_rng(i) for i in range(250)]
    out = FN({"mu": 1.0}, rngs)
    rows = out.rows.rename(columns={"replicate": "rep"})
    rows.insert(0, "condition", 0)
    payload = {"condition": 0, "first": 0, "last": 249, "replicates": rows,
               "failures": failures_frame([(0, int(i), r) for i, r in out.failures.items()])}
    assert len(encode_chunk(payload)) < len(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)) / 2.5


# ----------------------------------------------------------------------------- compaction

def test_a_complete_run_is_compacted_and_read_back_as_it_ran(tmp_path):
    ref = held(tmp_path, 8)
    res = run_chunks(FN, CONDS, CONDS, 8, 5, tmp_path / "run", n_jobs=1, chunk_size=3, progress=False,
                     keep_rows=False)
    assert len(res.failures) and chunks_in(tmp_path / "run")
    same(res, ref)
    path = compact(res, LABELS)
    assert path == tmp_path / "run" / STORE_FILE and not chunks_in(tmp_path / "run")
    rec = read_manifest(tmp_path / "run" / "chunks")["complete"]
    assert rec["reps"] == 8 and rec["bytes"] == path.stat().st_size
    same(res, ref)  # now read from replicates.parquet
    per = list(res.condition_replicates([1, 2]))
    pd.testing.assert_frame_equal(pd.concat(per, ignore_index=True),
                                  ref.replicates[ref.replicates["condition"] > 0].reset_index(drop=True))
    # the file is the tidy table users read (sim.read_replicates): labels in front
    pd.testing.assert_frame_equal(read_frames(path), LABELS.merge(ref.replicates, on="condition", how="right"))
    # re-run: complete, nothing recomputed (the chunk function is never called), the same table
    again = run_chunks(never_called, CONDS, CONDS, 8, 5, tmp_path / "run", n_jobs=1, progress=False, keep_rows=False)
    assert again.n_computed_chunks == 0 and again.store is not None
    same(again, ref)
    in_memory = run_chunks(never_called, CONDS, CONDS, 8, 5, tmp_path / "run", n_jobs=1, progress=False)
    same(in_memory, ref)


def test_a_larger_reps_tops_up_to_a_fresh_run_and_a_smaller_one_is_refused(tmp_path):
    out = tmp_path / "run"
    small = run_chunks(FN, CONDS, CONDS, 6, 5, out, n_jobs=1, chunk_size=4, progress=False, keep_rows=False)
    compact(small, LABELS)
    big = run_chunks(FN, CONDS, CONDS, 10, 5, out, n_jobs=1, chunk_size=3, progress=False, keep_rows=False)
    assert big.n_computed_chunks == 3 * 2 and big.store.reps == 6  # reps 6..9 of each condition only
    compact(big, LABELS)
    fresh = run_chunks(FN, CONDS, CONDS, 10, 5, tmp_path / "fresh", n_jobs=1, progress=False, keep_rows=False)
    compact(fresh, LABELS)
    same(big, fresh)
    pd.testing.assert_frame_equal(read_frames(out / STORE_FILE), read_frames(tmp_path / "fresh" / STORE_FILE),
                                  check_exact=True)
    with pytest.raises(ManifestMismatchError, match=r"^reps: .* holds a run of reps=10; ask for reps >= 10"):
        run_chunks(FN, CONDS, CONDS, 7, 5, out, n_jobs=1, progress=False)


def test_a_killed_run_resumes_bit_exactly(tmp_path):
    calls = []

    def dies(plan, rngs):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(1)
        return FN(plan, rngs)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_chunks(dies, CONDS, CONDS, 9, 5, out, n_jobs=1, chunk_size=2, progress=False, keep_rows=False)
    assert len(chunks_in(out)) == 4
    res = run_chunks(FN, CONDS, CONDS, 9, 5, out, n_jobs=1, chunk_size=3, progress=False, keep_rows=False)
    assert res.n_resumed_chunks == 4
    same(res, held(tmp_path, 9))
    # killed after the compaction was recorded, before the chunk files went: they are dropped, not read
    leftovers = [(p.name, p.read_bytes()) for p in chunks_in(out)]
    compact(res, LABELS)
    for name, data in leftovers:
        (out / "chunks" / name).write_bytes(data)
    again = run_chunks(never_called, CONDS, CONDS, 9, 5, out, n_jobs=1, progress=False, keep_rows=False)
    assert not chunks_in(out) and again.n_computed_chunks == 0
    same(again, res)


def test_a_damaged_replicates_file_is_recomputed_never_trusted(tmp_path):
    out = tmp_path / "run"
    res = run_chunks(FN, CONDS, CONDS, 5, 5, out, n_jobs=1, progress=False, keep_rows=False)
    compact(res, LABELS)
    data = bytearray((out / STORE_FILE).read_bytes())
    data[len(data) // 3] ^= 0xFF
    (out / STORE_FILE).write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="checksum.*recomputing its 5 replicates"):
        again = run_chunks(FN, CONDS, CONDS, 5, 5, out, n_jobs=1, progress=False, keep_rows=False)
    assert (out / (STORE_FILE + ".corrupt")).is_file() and again.store is None and again.n_computed_chunks > 0
    same(again, held(tmp_path, 5))


# ----------------------------------------------------------------------------- estimate, limits, messages

def test_the_disk_estimate_is_measured_and_a_run_over_the_limit_is_refused(tmp_path):
    from sim.cli.app import check_disk, check_disk_keys
    from sim.jobs.config import ConfigError
    from omegaconf import OmegaConf

    est = estimate_disk(FN, CONDS, [(1,), (2,), (3,)], 5, 1000)
    res = run_chunks(FN, CONDS, CONDS, 200, 5, tmp_path / "run", n_jobs=1, chunk_size=200, progress=False,
                     keep_rows=False)
    on_disk = sum(p.stat().st_size for p in chunks_in(tmp_path / "run")) / (3 * 200)
    kept = compact(res, LABELS).stat().st_size / (3 * 200)
    assert 0.5 * on_disk < est.bytes_per_replicate < 3 * on_disk  # measured, not guessed
    assert 0.5 * kept < est.kept_per_replicate < 3 * kept
    assert est.replicates == 3000 and est.peak_bytes == est.kept_bytes + 3000 * est.bytes_per_replicate
    assert "kept (replicates.parquet)" in est.line()
    slim = estimate_disk(FN, CONDS, [(1,), (2,), (3,)], 5, 1000, keep=False)
    assert slim.kept_bytes == 0 and slim.peak_bytes == 3000 * est.bytes_per_replicate and "summaries only" in slim.line()
    cfg = OmegaConf.create({"max_disk_gb": est.peak_bytes / 2e9})
    with pytest.raises(ConfigError, match=r"^max_disk_gb: this run would take about .* more than max_disk_gb=") as e:
        check_disk(cfg, est, tmp_path / "new")
    assert "keep_replicates=false" in str(e.value) and "\n" not in str(e.value)
    check_disk(OmegaConf.create({"max_disk_gb": 5}), est, tmp_path / "new")
    for key, bad in (("max_disk_gb", 0), ("max_disk_gb", "lots"), ("max_disk_gb", True), ("keep_replicates", "no")):
        with pytest.raises(ConfigError, match=f"^{key}: must be"):
            check_disk_keys({"max_disk_gb": 5, "keep_replicates": True, key: bad})


def test_the_interrupt_message_says_how_many_chunks_were_kept(tmp_path):
    from sim.cli.app import kept_chunks

    assert "none were kept" in kept_chunks(tmp_path)
    (tmp_path / "chunks").mkdir()
    assert "none were kept" in kept_chunks(tmp_path)
    rows = pd.DataFrame({"condition": pd.Series([], dtype="int64"), "rep": pd.Series([], dtype="int64")})
    for first in (0, 5):
        write_chunk(tmp_path / "chunks", {"condition": 0, "first": first, "last": first + 4, "replicates": rows,
                                          "failures": failures_frame([])})
    text = kept_chunks(tmp_path)
    assert "2 finished chunks (10 replicates) are kept" in text and "resume" in text


# ----------------------------------------------------------------------------- the main job's disk

# The main job (experiment=caliper_sweep: 14 conditions x 2,500 replicates) leaves a run directory of
# at most 30 MB (MB = 10^6 bytes, `du -sb`). Beside replicates.parquet the directory holds 1.69 MB that
# does not grow with reps (summary.csv 1.03 MB, five figures 0.57 MB, report.md, the small tables,
# .hydra, the manifest), so the file may take (30e6 - 1.69e6) / 35,000 = 809 bytes a replicate. A
# small run packs less well than the main job (a file's and a row group's fixed bytes, shorter runs of
# like values): 2 conditions x 500 replicates take about 775 bytes a replicate where the main job
# takes 727 (25.46 MB; the directory 27.15 MB), so a small run within the budget keeps the main job
# within 30 MB.
MAIN_JOB_REPLICATES = 14 * 2500
MAIN_JOB_OTHER_BYTES = 1.69e6
BYTES_PER_REPLICATE = (30e6 - MAIN_JOB_OTHER_BYTES) / MAIN_JOB_REPLICATES


@pytest.mark.slow
def test_the_main_job_keeps_its_replicates_within_budget_and_reads_them_back_exactly(tmp_path):
    import sim

    args = ["experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0,1.0]}", "reps=500", "n_jobs=1",
            "draw_figures=false"]
    held = sim.run("caliper_sweep", args)  # the rows in memory, as computed
    disk = sim.run("caliper_sweep", args, out_dir=tmp_path)
    per_replicate = (tmp_path / STORE_FILE).stat().st_size / (2 * 500)
    assert per_replicate < BYTES_PER_REPLICATE, f"{per_replicate:.0f} bytes a replicate"
    assert disk.run.rows is None and disk.run.store is not None  # read from the packed file
    bits_equal(disk.replicates, held.replicates)
    bits_equal(sim.read_replicates(tmp_path), held.replicates)


# ----------------------------------------------------------------------------- the command line

ONE = ["experiment=caliper_sweep", "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}", "n_jobs=1"]


@pytest.mark.slow
def test_a_refused_run_leaves_nothing_and_a_run_no_empty_log(tmp_path):
    refused = {"max_disk_gb": ["max_disk_gb=0.000001", "reps=50"], "keep_replicates": ["keep_replicates=maybe"],
               "reps": ["reps=0"]}
    lines = {**{key: [*ONE, *args] for key, args in refused.items()}, "run": [*ONE, "reps=2", "hydra.run.dir=runs/a/b"]}
    got = run_sim_lines(lines, tmp_path, {**os.environ, "PYTHONPATH": str(ROOT)})
    for key in refused:
        r = got[key]
        errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(errors) == 1 and errors[0].startswith(f"error: {key}:"), r.stderr
    assert not (tmp_path / "outputs").exists(), "a refused run left a folder"
    r = got["run"]
    assert r.returncode == 0, r.stderr
    out = tmp_path / "runs" / "a" / "b"
    assert "disk: " in r.stderr.splitlines()[0] and "max_disk_gb=5" in r.stderr.splitlines()[0]
    assert not (out / "__main__.log").exists() and (out / ".hydra" / "config.yaml").is_file()
    assert (out / STORE_FILE).is_file() and not chunks_in(out)


@pytest.mark.slow
def test_psm_top_up_equals_a_fresh_run_and_summaries_only_keep_no_rows(tmp_path, capsys):
    import sim
    from sim.cli.app import run as app_run

    def go(reps: int, out: Path, *extra: str) -> None:
        args = [*ONE[1:], f"reps={reps}", "draw_figures=false", *extra]
        assert app_run(sim.compose("caliper_sweep", args), out, args) == 0

    go(6, tmp_path / "topped")
    go(10, tmp_path / "topped")
    go(10, tmp_path / "fresh")
    assert (tmp_path / "topped" / "summary.csv").read_bytes() == (tmp_path / "fresh" / "summary.csv").read_bytes()
    pd.testing.assert_frame_equal(read_frames(tmp_path / "topped" / STORE_FILE),
                                  read_frames(tmp_path / "fresh" / STORE_FILE), check_exact=True)
    go(10, tmp_path / "slim", "keep_replicates=false")
    assert not (tmp_path / "slim" / STORE_FILE).exists() and not (tmp_path / "slim" / "chunks").exists()
    assert (tmp_path / "slim" / "summary.csv").read_bytes() == (tmp_path / "fresh" / "summary.csv").read_bytes()
    assert "none kept (keep_replicates=false" in capsys.readouterr().err

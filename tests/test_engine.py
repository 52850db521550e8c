"""Tests for sim.engine: grid order, seeding, chunked parallel runs, resume, failures."""

import functools
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from sim.engine import (ManifestMismatchError, condition_stream, ReplicateFailure, RunResult, conditions_frame, default_chunk_size,
                        expand_grid, replicate_rng, run_experiment)
from sim.engine import per_replicate, run_chunks
from sim.engine.heap import keep_freed_memory
from sim.engine.seeds import replicate_rngs
from sim.engine.store import chunk_filename, parse_chunk_filename


# ---- module-level replicate functions (picklable for loky) -----------------

def toy_replicate(condition, rng):
    """Two rows (analyses) per replicate; values depend on the condition and rng."""
    x = rng.normal(condition.get("mu", 0.0), 1.0, size=20)
    return pd.DataFrame({"analysis": ["mean", "median"],
                         "estimate": [x.mean(), np.median(x)],
                         "draw": rng.integers(0, 10**9, size=2)})


def _fail_on(condition, rng, fail_draws):
    """Fail deterministically based on the first draw (so it's tied to (condition, rep))."""
    u = rng.uniform()
    if u < fail_draws:
        raise ReplicateFailure(f"no matches\nfound (u={u:.3f})")
    if u > 1 - fail_draws / 2:
        raise ZeroDivisionError("boom")
    return pd.DataFrame({"estimate": [u]})


class Abort(KeyboardInterrupt):
    """Simulates the user killing the run (BaseException, so it is not recorded as a failure)."""


def toy_with_abort(condition, rng, abort_condition=None):
    if condition["mu"] == abort_condition:
        raise Abort()
    return toy_replicate(condition, rng)


CONDITIONS = expand_grid({"mu": [0.0, 1.0, 2.0], "kind": ["a"]})


# ---- grid and seeds ---------------------------------------------------------

def test_expand_grid_order_first_key_slowest():
    grid = {"method.matching.caliper": [None, 0.1, 0.2], "cohort.effect_mcid": [0, 1]}
    conds = expand_grid(grid)
    assert conds == [
        {"method.matching.caliper": None, "cohort.effect_mcid": 0},
        {"method.matching.caliper": None, "cohort.effect_mcid": 1},
        {"method.matching.caliper": 0.1, "cohort.effect_mcid": 0},
        {"method.matching.caliper": 0.1, "cohort.effect_mcid": 1},
        {"method.matching.caliper": 0.2, "cohort.effect_mcid": 0},
        {"method.matching.caliper": 0.2, "cohort.effect_mcid": 1},
    ]
    assert expand_grid({}) == [{}]
    assert expand_grid({"a": (1, 2)}) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("bad", [0.1, "abc", None, {"x": 1}])
def test_expand_grid_rejects_non_list_naming_key(bad):
    with pytest.raises(ValueError, match="cohort.n"):
        expand_grid({"cohort.n": bad})


def test_expand_grid_rejects_empty_list():
    with pytest.raises(ValueError, match="cohort.n"):
        expand_grid({"cohort.n": []})


def test_conditions_frame():
    cf = conditions_frame(expand_grid({"a": [1, 2], "b": ["x"]}))
    assert cf.to_dict("list") == {"condition": [0, 1], "a": [1, 2], "b": ["x", "x"]}


def test_replicate_rng_definition_and_independence():
    a = replicate_rng(7, 2, 3).normal(size=5)
    b = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(2, 3))).normal(size=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, replicate_rng(7, 3, 2).normal(size=5))
    with pytest.raises(ValueError, match="seed"):
        replicate_rng(-1, 0, 0)
    with pytest.raises(ValueError, match="replicate"):
        replicate_rng(1, 0, 1.5)


def test_replicate_rngs_are_the_replicate_rngs_of_a_chunk():
    chunk = replicate_rngs(7, (2, 9), 4, 6)
    assert [g.random() for g in chunk] == [replicate_rng(7, (2, 9), r).random() for r in (4, 5, 6)]
    with pytest.raises(ValueError, match="stream"):
        replicate_rngs(7, (2, -9), 4, 6)
    with pytest.raises(ValueError, match="replicate"):
        replicate_rngs(7, 2, -1, 6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_freed_memory_is_kept_for_the_next_chunk():
    """glibc accepts both thresholds (a rejected value would make keep_freed_memory False)."""
    assert keep_freed_memory() is True
    assert keep_freed_memory.cache_info().currsize == 1


def test_condition_stream_is_what_the_condition_is():
    """The stream is a digest of the factor values: key order, 1 vs 1.0 and position do not
    matter; other values and unshared factors do; shared factors are left out."""
    a = condition_stream({"cohort.n": 263, "caliper": 0.2})
    assert a == condition_stream({"caliper": 0.2, "cohort.n": 263.0})
    assert a != condition_stream({"cohort.n": 264, "caliper": 0.2})
    assert a != condition_stream({"cohort.n": 263, "caliper": None})
    assert len(a) == 4 and all(0 <= w < 2**32 for w in a)
    crn = condition_stream({"caliper": 0.2, "effect": 1.0}, shared=["effect"])
    assert crn == condition_stream({"caliper": 0.2, "effect": 0.0}, shared=["effect"]) == condition_stream({"caliper": 0.2})
    x = replicate_rng(7, a, 3).normal(size=3)
    np.testing.assert_array_equal(x, np.random.default_rng(np.random.SeedSequence(7, spawn_key=(*a, 3))).normal(size=3))


def test_results_do_not_depend_on_the_grid_around_a_condition(tmp_path):
    """A condition run alone, inside a reordered grid or an extended one gives the same rows."""
    alone = run_experiment(toy_replicate, [{"mu": 1.0, "kind": "b"}], 5, 3, tmp_path / "a", n_jobs=1, progress=False)
    grid = run_experiment(toy_replicate, expand_grid({"kind": ["a", "b"], "mu": [5.0, 1.0, 0.0]}), 5, 3,
                          tmp_path / "g", n_jobs=1, progress=False)
    c = [i for i, cond in enumerate(grid.conditions) if cond == {"kind": "b", "mu": 1.0}][0]
    rows = grid.replicates[grid.replicates["condition"] == c].drop(columns="condition").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, alone.replicates.drop(columns="condition").reset_index(drop=True))


def test_default_chunk_size():
    assert default_chunk_size(1000, 2) == 125
    assert default_chunk_size(100000, 8) == 250
    assert default_chunk_size(3, 8) == 1


# ---- runner -----------------------------------------------------------------

def _expected_table(conditions, reps, seed):
    """Reference built by hand, without the runner."""
    frames = []
    for c, cond in enumerate(conditions):
        for r in range(reps):
            df = toy_replicate(cond, replicate_rng(seed, condition_stream(cond), r))
            df.insert(0, "rep", r)
            df.insert(0, "condition", c)
            frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    return out.astype({"condition": "int64", "rep": "int64"})


def test_run_matches_reference_and_is_identical_across_jobs_and_chunks(tmp_path):
    reps, seed = 15, 11
    ref = _expected_table(CONDITIONS, reps, seed)
    results = {}
    for name, kw in {"j1_none": dict(n_jobs=1), "j1_c1": dict(n_jobs=1, chunk_size=1),
                     "j2_c7": dict(n_jobs=2, chunk_size=7), "j2_none": dict(n_jobs=2),
                     "j2_c1": dict(n_jobs=2, chunk_size=1)}.items():
        res = run_experiment(toy_replicate, CONDITIONS, reps, seed, tmp_path / name, progress=False, **kw)
        assert isinstance(res, RunResult)
        results[name] = res
        pd.testing.assert_frame_equal(res.replicates, ref)
        assert res.failures.empty and list(res.failures.columns) == ["condition", "rep", "reason"]
        assert res.n_resumed_chunks == 0
        assert res.conditions == CONDITIONS
    assert results["j1_c1"].n_computed_chunks == 3 * 15
    assert results["j2_c7"].n_computed_chunks == 3 * 3
    files = sorted(p.name for p in (tmp_path / "j2_c7" / "chunks").iterdir())
    assert "c0001_r000007-000013.chunk" in files and "c0002_r000014-000014.chunk" in files
    # different seed -> different numbers (the test can fail)
    other = run_experiment(toy_replicate, CONDITIONS, reps, seed + 1, tmp_path / "other", n_jobs=1, progress=False)
    assert not np.allclose(other.replicates["estimate"], ref["estimate"])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_rows_left_in_the_chunk_files_are_the_rows_held(tmp_path, n_jobs):
    """keep_rows=False: nothing held, the same table read back (whole, or condition by condition),
    after a resume too; failures are kept in memory as before."""
    reps, seed = 12, 3
    fn = per_replicate(functools.partial(_fail_on, fail_draws=0.3))
    held = run_chunks(fn, CONDITIONS, CONDITIONS, reps, seed, tmp_path / "held", n_jobs=n_jobs, chunk_size=5,
                      progress=False)
    left = run_chunks(fn, CONDITIONS, CONDITIONS, reps, seed, tmp_path / "left", n_jobs=n_jobs, chunk_size=5,
                      progress=False, keep_rows=False)
    assert left.rows is None and len(left.chunk_files) == 9 and not held.failures.empty
    pd.testing.assert_frame_equal(left.replicates, held.replicates)
    pd.testing.assert_frame_equal(left.failures, held.failures)
    per = list(left.condition_replicates())
    assert [int(f["condition"].iloc[0]) for f in per] == [0, 1, 2]
    pd.testing.assert_frame_equal(pd.concat(per, ignore_index=True), held.replicates)
    os.remove(tmp_path / "left" / "chunks" / chunk_filename(1, 5, 9))
    resumed = run_chunks(fn, CONDITIONS, CONDITIONS, reps, seed, tmp_path / "left", n_jobs=n_jobs, chunk_size=2,
                         progress=False, keep_rows=False)
    assert resumed.n_resumed_chunks == 8 and resumed.n_computed_chunks == 3
    pd.testing.assert_frame_equal(resumed.replicates, held.replicates)


def test_no_temp_files_left_and_manifest_written(tmp_path):
    # A stale temp file from a "killed" run is cleaned up too.
    run_experiment(toy_replicate, CONDITIONS, 4, 1, tmp_path, n_jobs=2, chunk_size=2, progress=False)
    stale = tmp_path / "chunks" / ".tmp-stale.part"
    stale.write_bytes(b"partial")
    run_experiment(toy_replicate, CONDITIONS, 4, 1, tmp_path, n_jobs=1, progress=False)
    names = os.listdir(tmp_path / "chunks")
    assert not [n for n in names if n.startswith(".tmp") or n.endswith(".part")]
    assert len([n for n in names if parse_chunk_filename(n)]) == 6
    manifest = json.loads((tmp_path / "chunks" / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["reps"] == 4 and manifest["n_conditions"] == 3
    assert manifest["conditions"] == [{"mu": 0.0, "kind": "a"}, {"mu": 1.0, "kind": "a"}, {"mu": 2.0, "kind": "a"}]
    assert len(manifest["conditions_hash"]) == 64


def test_chunk_filename_roundtrip():
    assert chunk_filename(3, 0, 99) == "c0003_r000000-000099.chunk"
    assert parse_chunk_filename("c0003_r000000-000099.chunk") == (3, 0, 99)
    assert parse_chunk_filename("c0003_r000000-000099.pkl") is None  # format 2: not a chunk of this format
    assert parse_chunk_filename("manifest.json") is None


def test_killed_run_resumes(tmp_path):
    reps, seed = 10, 5
    ref = _expected_table(CONDITIONS, reps, seed)
    killer = functools.partial(toy_with_abort, abort_condition=2.0)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(killer, CONDITIONS, reps, seed, tmp_path, n_jobs=1, chunk_size=4, progress=False)
    done = sorted(n for n in os.listdir(tmp_path / "chunks") if parse_chunk_filename(n))
    assert len(done) == 6  # conditions 0 and 1: chunks 0-3, 4-7, 8-9
    res = run_experiment(toy_replicate, CONDITIONS, reps, seed, tmp_path, n_jobs=1, chunk_size=4, progress=False)
    assert res.n_resumed_chunks == 6 and res.n_computed_chunks == 3
    pd.testing.assert_frame_equal(res.replicates, ref)
    # Running again computes nothing.
    again = run_experiment(toy_replicate, CONDITIONS, reps, seed, tmp_path, n_jobs=2, progress=False)
    assert again.n_resumed_chunks == 9 and again.n_computed_chunks == 0
    pd.testing.assert_frame_equal(again.replicates, ref)


def test_resume_after_deleting_chunks_with_other_chunk_size_and_jobs(tmp_path):
    reps, seed = 12, 3
    ref = _expected_table(CONDITIONS, reps, seed)
    run_experiment(toy_replicate, CONDITIONS, reps, seed, tmp_path, n_jobs=2, chunk_size=4, progress=False)
    chunks = tmp_path / "chunks"
    os.remove(chunks / chunk_filename(0, 4, 7))
    os.remove(chunks / chunk_filename(2, 8, 11))
    res = run_experiment(toy_replicate, CONDITIONS, reps, seed, tmp_path, n_jobs=2, chunk_size=3, progress=False)
    # 7 of 9 chunks kept; the two 4-rep holes are recomputed as 3 + 1 reps each.
    assert res.n_resumed_chunks == 7 and res.n_computed_chunks == 4
    pd.testing.assert_frame_equal(res.replicates, ref)
    assert (chunks / chunk_filename(0, 4, 6)).exists() and (chunks / chunk_filename(0, 7, 7)).exists()


def test_manifest_mismatch_raises(tmp_path):
    run_experiment(toy_replicate, CONDITIONS, 3, 1, tmp_path, n_jobs=1, progress=False)
    with pytest.raises(ManifestMismatchError, match="another out_dir"):
        run_experiment(toy_replicate, CONDITIONS, 3, 2, tmp_path, n_jobs=1, progress=False)
    with pytest.raises(ValueError, match="conditions_hash"):
        run_experiment(toy_replicate, expand_grid({"mu": [0.0, 1.0, 5.0], "kind": ["a"]}), 3, 1, tmp_path,
                       n_jobs=1, progress=False)
    with pytest.raises(ManifestMismatchError, match=r"^reps: .* holds a run of reps=3; ask for reps >= 3"):
        run_experiment(toy_replicate, CONDITIONS, 2, 1, tmp_path, n_jobs=1, progress=False)
    more = run_experiment(toy_replicate, CONDITIONS, 4, 1, tmp_path, n_jobs=1, progress=False)  # a top-up
    assert more.n_resumed_chunks >= 3 and more.n_computed_chunks == 3


def test_chunks_without_manifest_raise(tmp_path):
    (tmp_path / "chunks").mkdir()
    (tmp_path / "chunks" / chunk_filename(0, 0, 1)).write_bytes(b"x")
    with pytest.raises(ManifestMismatchError, match="manifest"):
        run_experiment(toy_replicate, CONDITIONS, 2, 1, tmp_path, n_jobs=1, progress=False)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_failures_recorded_and_run_continues(tmp_path, n_jobs):
    conds = [{"mu": 0.0}, {"mu": 1.0}]
    fn = functools.partial(_fail_on, fail_draws=0.3)
    res = run_experiment(fn, conds, 20, 9, tmp_path, n_jobs=n_jobs, chunk_size=6, progress=False)
    # Expected outcome from the seeds directly.
    exp_fail, exp_ok = [], []
    for c in range(2):
        for r in range(20):
            u = replicate_rng(9, condition_stream(conds[c]), r).uniform()
            if u < 0.3:
                exp_fail.append((c, r, f"ReplicateFailure: no matches found (u={u:.3f})"))
            elif u > 0.85:
                exp_fail.append((c, r, "ZeroDivisionError: boom"))
            else:
                exp_ok.append((c, r, u))
    assert len(exp_fail) > 0 and len(exp_ok) > 0
    assert list(res.failures.itertuples(index=False, name=None)) == sorted(exp_fail)
    assert res.failures["condition"].dtype == np.int64 and res.failures["rep"].dtype == np.int64
    assert all("\n" not in s for s in res.failures["reason"])
    got = list(res.replicates[["condition", "rep", "estimate"]].itertuples(index=False, name=None))
    assert got == exp_ok
    # Failures are stored in chunks, so a resumed run reports them too.
    again = run_experiment(fn, conds, 20, 9, tmp_path, n_jobs=1, chunk_size=6, progress=False)
    assert again.n_computed_chunks == 0
    pd.testing.assert_frame_equal(again.failures, res.failures)


def test_bad_return_type_is_a_failure(tmp_path):
    with pytest.warns(RuntimeWarning, match="all 2 replicates failed"):
        res = run_experiment(_returns_list, [{}], 2, 0, tmp_path, n_jobs=1, progress=False)
    assert len(res.failures) == 2 and res.failures["reason"].str.startswith("TypeError").all()
    assert res.replicates.empty and list(res.replicates.columns) == ["condition", "rep"]


def _returns_list(condition, rng):
    return [1, 2]


@pytest.mark.parametrize("kwargs,param", [
    (dict(reps=0), "reps"), (dict(seed=-3), "seed"), (dict(n_jobs=0), "n_jobs"),
    (dict(chunk_size=0), "chunk_size"), (dict(conditions=[]), "conditions"),
    (dict(progress="yes"), "progress"), (dict(reps=True), "reps"),
])
def test_runner_bad_input(tmp_path, kwargs, param):
    args = dict(replicate_fn=toy_replicate, conditions=CONDITIONS, reps=2, seed=1, out_dir=tmp_path,
                n_jobs=1, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=param):
        run_experiment(**args)


def test_progress_bar_writes_to_stderr_when_forced(tmp_path, capsys):
    run_experiment(toy_replicate, CONDITIONS, 3, 1, tmp_path / "p", n_jobs=1, progress=True)
    err = capsys.readouterr().err
    assert "conditions 3/3" in err and "reps 9/9" in err and "ETA" in err
    run_experiment(toy_replicate, CONDITIONS, 3, 1, tmp_path / "q", n_jobs=1)  # auto: not a TTY here
    assert capsys.readouterr().err == ""


def test_changed_fingerprint_refuses_to_resume(tmp_path):
    """A changed setting outside the grid (the caller's fingerprint) must never reuse old chunks."""
    conds = expand_grid({"mu": [0.0]})
    run_experiment(toy_replicate, conds, reps=3, seed=1, out_dir=tmp_path, n_jobs=1, fingerprint="settings-a")
    again = run_experiment(toy_replicate, conds, reps=3, seed=1, out_dir=tmp_path, n_jobs=1, fingerprint="settings-a")
    assert again.n_resumed_chunks > 0 and again.n_computed_chunks == 0
    with pytest.raises(ManifestMismatchError, match="fingerprint"):
        run_experiment(toy_replicate, conds, reps=3, seed=1, out_dir=tmp_path, n_jobs=1, fingerprint="settings-b")

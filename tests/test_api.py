"""The public API (sim.api), the job contract (sim.jobs.contract) and the chunk-level engine."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim.engine import ChunkOutput, per_replicate, run_chunks
from sim.jobs.contract import Job, job_class

ROOT = Path(__file__).resolve().parents[1]
PS = ["age", "male", "escc", "frankel_abc", "emergency"]
ONE = "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"


def test_readme_notebook_example_runs(tmp_path, monkeypatch):
    """The Python block of the README's 'Python API' section, run as it is."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    res = namespace["res"]
    assert isinstance(res, sim.ExperimentResult)
    for table in (res.summary, res.replicates, res.failures, namespace["df"], namespace["m"].balance):
        assert isinstance(table, pd.DataFrame)
    assert {"measure", "value", "mcse", "n"} <= set(res.summary.columns)
    assert len(res.replicates) > 0
    compat = namespace["c"].tables["compatibility"]
    assert len(compat) == 1 and bool(compat["open_high"].iloc[0])


def test_draw_cohort_is_reproducible_and_sized():
    cfg = sim.compose("caliper_sweep")
    a = sim.draw_cohort(cfg, seed=3, n=120)
    b = sim.draw_cohort(cfg, seed=3, n=120)
    assert len(a) == 120
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(sim.draw_cohort(cfg, seed=4, n=120))


def test_match_data_equals_the_matcher_and_the_cli_defaults():
    """match_data is the paper's matching: same pairs as fit_propensity + match with the caliper
    of conf/method/paper.yaml."""
    from sim.methods.matching import match
    from sim.methods.propensity import fit_propensity

    df = sim.draw_cohort(sim.compose("caliper_sweep"), seed=5)
    m = sim.match_data(df, "treated", PS)
    paper = sim.paper_method()["matching"]
    fit = fit_propensity(df[PS].to_numpy(float), df["treated"].to_numpy().astype(np.int8))
    ref = match(fit.ps, df["treated"].to_numpy(), algorithm=paper["algorithm"], caliper=paper["caliper"],
                caliper_scale=paper["caliper_scale"], caliper_sd=paper["caliper_sd"], order=paper["order"])
    np.testing.assert_array_equal(m.result.treated_idx, ref.treated_idx)
    np.testing.assert_array_equal(m.result.control_idx, ref.control_idx)
    assert len(m.matched) == 2 * ref.n_pairs
    assert m.matched["pair"].notna().all() and m.data["pair"].isna().sum() == len(df) - 2 * ref.n_pairs
    wider = sim.match_data(df, "treated", PS, caliper=None)
    assert wider.result.n_pairs >= m.result.n_pairs
    with pytest.raises(ValueError, match="nosuch"):
        sim.match_data(df, "treated", ["nosuch"])


def test_run_refuses_a_bad_setting_before_any_replicate(tmp_path):
    with pytest.raises(sim.ConfigError, match="experiment.estimand"):
        sim.run("caliper_sweep", ["experiment.estimand=x", ONE], out_dir=tmp_path)
    assert not (tmp_path / "chunks").exists()


def test_run_with_out_dir_writes_and_resumes(tmp_path):
    args = ["reps=4", "n_jobs=1", ONE, "draw_figures=false"]
    first = sim.run("caliper_sweep", args, out_dir=tmp_path)
    assert (tmp_path / "summary.csv").is_file() and first.n_computed_chunks > 0
    again = sim.run("caliper_sweep", args, out_dir=tmp_path)
    assert again.n_computed_chunks == 0 and again.n_resumed_chunks == first.n_computed_chunks
    pd.testing.assert_frame_equal(first.summary, again.summary)
    in_memory = sim.run("caliper_sweep", args)
    pd.testing.assert_frame_equal(first.summary, in_memory.summary)
    assert in_memory.out_dir is None


def _files(out: Path) -> list[str]:
    """A run directory's files and folders, Hydra's own (.hydra/) left out."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.relative_to(out).parts[0] != ".hydra")


@pytest.mark.slow  # ~10 s: three small runs, each by the API and by the command
def test_run_with_out_dir_leaves_the_directory_the_command_leaves(tmp_path):
    """sim.run(out_dir=...) finishes its directory as `python -m sim` does: no chunk files stay, so a
    job that writes no replicates (rct_planning) or keep_replicates=false leaves summaries only
    (and its result says so when asked for rows), and a job that does leaves replicates.parquet."""
    import os

    from cli_helpers import run_sim_lines

    rct = ["reps=3", "n_jobs=1", "experiment.grid={experiment.n_per_arm:[20],cohort.effect_mcid:[0.0]}",
           "experiment.reference_n=2000", "experiment.direct_checks.top=0", "draw_figures=false"]
    runs = (("rct_planning", rct), ("caliper_sweep", ["reps=3", "n_jobs=1", ONE, "draw_figures=false"]),
            ("caliper_sweep", ["reps=3", "n_jobs=1", ONE, "keep_replicates=false", "draw_figures=false"]))
    commands = run_sim_lines({f"cli{i}": [f"experiment={name}", *args, f"hydra.run.dir={tmp_path / f'cli{i}'}"]
                              for i, (name, args) in enumerate(runs)}, tmp_path, {**os.environ, "PYTHONPATH": str(ROOT)})
    for i, (name, args) in enumerate(runs):
        api, cli = tmp_path / f"api{i}", tmp_path / f"cli{i}"
        res = sim.run(name, args, out_dir=api)
        assert commands[f"cli{i}"].returncode == 0, commands[f"cli{i}"].stderr[-3000:]
        assert _files(api) == _files(cli), (name, args)
        assert not list(api.rglob("*.chunk")) and not list(api.glob("*.png")) and (api / "summary.csv").is_file()
        if (api / "replicates.parquet").is_file():
            pd.testing.assert_frame_equal(res.replicates, sim.read_replicates(api))
        else:
            with pytest.raises(FileNotFoundError, match="kept no replicate rows .*summaries only"):
                res.replicates


# ------------------------------------------------------------------ the job contract

def _draws(plan, rng):
    return pd.DataFrame({"x": rng.normal(plan["mu"], 1.0, size=2), "k": [0, 1]})


def _batched(plan, rngs):
    """The same draws as per_replicate(_draws), computed as one (B x 2) array; replicate 1 of
    every chunk fails."""
    x = np.stack([rng.normal(plan["mu"], 1.0, size=2) for rng in rngs])
    keep = [i for i in range(len(rngs)) if i != 1]
    rows = pd.DataFrame({"replicate": np.repeat(keep, 2), "x": x[keep].ravel(), "k": np.tile([0, 1], len(keep))})
    return ChunkOutput(rows, {1: "ValueError: planted failure"} if len(rngs) > 1 else {})


@pytest.mark.parametrize("chunk_size", [1, 3, 10])
def test_batched_simulate_equals_per_replicate(tmp_path, chunk_size):
    plans = [{"mu": 0.0}, {"mu": 5.0}]
    conds = [{"mu": 0.0}, {"mu": 5.0}]
    ref = run_chunks(per_replicate(_draws), plans, conds, reps=10, seed=3, out_dir=tmp_path / "ref", n_jobs=1,
                     chunk_size=10, progress=False)
    got = run_chunks(_batched, plans, conds, reps=10, seed=3, out_dir=tmp_path / "b", n_jobs=1,
                     chunk_size=chunk_size, progress=False)
    failed = set(zip(got.failures["condition"], got.failures["rep"]))
    # replicate 1 of each chunk failed: exactly those reps are missing, the rest equal the reference
    assert failed == {(c, first + 1) for c in (0, 1) for first in range(0, 10, chunk_size)
                      if first + 1 < min(first + chunk_size, 10)}
    kept = ref.replicates[[(c, r) not in failed for c, r in zip(ref.replicates["condition"], ref.replicates["rep"])]]
    pd.testing.assert_frame_equal(got.replicates.reset_index(drop=True), kept.reset_index(drop=True))


def _explodes(plan, rngs):
    raise RuntimeError("boom")


def _out_of_range(plan, rngs):
    return ChunkOutput(pd.DataFrame({"replicate": [len(rngs)], "x": [1.0]}))


@pytest.mark.parametrize("simulate, reason", [(_explodes, "boom"), (_out_of_range, "outside")])
def test_a_chunk_that_raises_fails_all_its_replicates(tmp_path, simulate, reason):
    with pytest.warns(RuntimeWarning, match="all 5 replicates failed"):
        res = run_chunks(simulate, [{}], [{}], reps=5, seed=1, out_dir=tmp_path, n_jobs=1, progress=False)
    assert len(res.failures) == 5 and res.failures["reason"].str.contains(reason).all()
    assert res.replicates.empty


class ToyJob(Job):
    """A user's own job: a normal mean, summarised as its bias."""

    name = "toy"
    simulate = per_replicate(_draws)

    def plan(self, cond):
        return {"mu": 1.0}

    def summarise(self, run, conds):
        return pd.DataFrame({"measure": ["bias"], "value": [run.replicates["x"].mean() - 1.0]})


def test_a_job_is_chosen_by_config_including_a_users_own():
    assert job_class("psm").__name__ == "PsmJob"
    assert job_class("test_api:ToyJob") is ToyJob
    for bad in ("nosuch", "sim.nosuch:Job", "sim.jobs.contract:ExperimentResult"):
        with pytest.raises(sim.ConfigError, match="experiment.job"):
            job_class(bad)
    res = sim.run("caliper_sweep", ["experiment.job=test_api:ToyJob", "reps=50", "n_jobs=1", ONE])
    assert abs(res.summary["value"].iloc[0]) < 4 / np.sqrt(100)  # 100 draws of N(1, 1): 4 SEs


def test_a_second_run_into_a_locked_run_dir_is_refused_in_one_line(tmp_path):
    """While one run holds the run directory, another refuses (exit 2, one line naming the lock and
    the process) and writes nothing."""
    import os
    import subprocess
    import sys

    from sim.engine import RunLock

    with RunLock(tmp_path):
        r = subprocess.run([sys.executable, "-m", "sim", "experiment=caliper_sweep", "reps=2", ONE,
                            f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=600,
                           env=os.environ.copy())
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert ".lock" in lines[0] and str(os.getpid()) in lines[0]
    assert not (tmp_path / "chunks").exists() and not (tmp_path / "summary.csv").exists()


def test_common_random_numbers_pair_the_effect_levels_and_a_sub_grid_reproduces_the_grid():
    """Conditions that differ only in the true effect share their cohorts (the matching, which
    does not see outcomes, forms the same pairs); a condition run alone equals itself in the grid."""
    grid = sim.run("caliper_sweep", ["reps=6", "n_jobs=1",
                                     "experiment.grid={method.matching.caliper:[0.1,0.2],cohort.effect_mcid:[0.0,1.0]}"])
    r = grid.replicates
    r = r[(r["outcome"] == "barthel") & (r["timepoint"] == "m6") & (r["analysis"] == "wilcoxon")]
    for cal in (0.1, 0.2):
        null = r[(r["caliper"] == cal) & (r["effect_mcid"] == 0.0)]["n_pairs"].to_numpy()
        one = r[(r["caliper"] == cal) & (r["effect_mcid"] == 1.0)]["n_pairs"].to_numpy()
        np.testing.assert_array_equal(null, one)
    a = r[r["caliper"] == 0.1]["n_pairs"].to_numpy()
    assert not np.array_equal(a, r[r["caliper"] == 0.2]["n_pairs"].to_numpy())  # other calipers: other pairs
    alone = sim.run("caliper_sweep", ["reps=6", "n_jobs=1",
                                      "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[1.0]}"])
    cols = ["rep", "outcome", "timepoint", "analysis", "estimate", "p_value", "n_pairs"]
    inside = grid.replicates[(grid.replicates["caliper"] == 0.2) & (grid.replicates["effect_mcid"] == 1.0)]
    pd.testing.assert_frame_equal(inside[cols].reset_index(drop=True), alone.replicates[cols].reset_index(drop=True))
    no_crn = sim.run("caliper_sweep", ["reps=6", "n_jobs=1", "+experiment.common_random_numbers=[]",
                                       "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0,1.0]}"])
    q = no_crn.replicates
    q = q[(q["outcome"] == "barthel") & (q["timepoint"] == "m6") & (q["analysis"] == "wilcoxon")]
    assert not np.array_equal(q[q["effect_mcid"] == 0.0]["n_pairs"].to_numpy(),
                              q[q["effect_mcid"] == 1.0]["n_pairs"].to_numpy())


@pytest.mark.parametrize("name, args", [
    ("austin2011", ["experiment.grid={experiment.beta:[0.0]}"]),
    ("published_compatibility", ["experiment.grid={cohort.effect_mcid:[-3.0,0.5,4.0],cohort.unmeasured.treatment_log_or:[0.0],"
                                 "cohort.unmeasured.outcome_effect:[0.0]}", "experiment.bias_analysis.draws=200"]),
])
def test_draw_figures_false_leaves_tables_and_report_only(tmp_path, name, args):
    """Every job honours draw_figures=false (the psm job's: tests/test_cli.py; reproduce_paper's:
    tests/test_reproduce.py; rct_planning's: above): no PNG, and the report says why."""
    sim.run(name, [*args, "reps=2", "n_jobs=1", "draw_figures=false"], out_dir=tmp_path)
    assert (tmp_path / "summary.csv").is_file() and not list(tmp_path.glob("*.png"))
    assert "No figures: draw_figures=false." in (tmp_path / "report.md").read_text()

"""End-to-end tests of `python -m sim` (the Hydra entry point), run as subprocesses.

Every run gets SIM_CACHE_DIR = the session's calibration cache (tests/conftest.py); the default
cohort model comes from the snapshot shipped with the package. To keep the file's wall time modest
the independent runs needed by the selected tests are started up front, in three processes that
each run their command lines one after another through `sim.__main__.cli`, two processes at a time
(results do not depend on it: every test still checks its own run); the runs that depend on
another run (resume, kill) happen inside the test, each in a `python -m sim` process of its own.
Under pytest-xdist the file must run on one worker (`--dist loadfile`, pyproject.toml), or each
worker would start every run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_helpers import run_sim_lines

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_DIR = ROOT / "conf" / "experiment"
EXPERIMENTS = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))  # the files present at collection
TIMEOUT = 600

# A 2-condition slice of caliper_sweep: the paper's caliper and no caliper, under the null.
SMALL_GRID = "experiment.grid={method.matching.caliper:[0.2,null],cohort.effect_mcid:[0.0]}"
SMALL = ["experiment=caliper_sweep", "reps=10", "seed=7", SMALL_GRID, "draw_figures=false"]  # their summaries
ONE_CONDITION = "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"

CALIBRATE = """
import sim
sim.cohort_model()
from sim.api import compose
from sim.engine import replicate_rng
from sim.jobs.conditions import conditions, matched_plan
from sim.jobs.psm import psm_chunk
# numba compiles (or loads) the kernels once: the main job's, the sensitivity, truncation and
# estimator kernels (their runs would otherwise compile them at once, two at a time)
for name in ("caliper_sweep", "unmeasured_confounding", "truncation_by_death", "estimator_comparison"):
    plan = matched_plan(conditions(compose(name, ["cohort.n=60"]))[0])
    psm_chunk(plan, [replicate_rng(0, (0,), r) for r in range(2)])
"""


# ----------------------------------------------------------------------------- bad overrides

@dataclass(frozen=True)
class Bad:
    id: str
    args: tuple[str, ...]
    must_contain: tuple[str, ...]  # every one of these appears in stderr
    first_line: str | None = "error:"  # stderr's first non-empty line starts with it (None: Hydra's own text)
    code: int | None = 2  # expected exit code (None: any non-zero)


BAD = [
    Bad("caliper", ("experiment=confounding_sweep", "method.matching.caliper=-1"),
        ("method.matching.caliper", "> 0")),
    Bad("reps", ("experiment=caliper_sweep", "reps=0"), ("reps", ">= 1")),
    Bad("draw_figures", ("experiment=caliper_sweep", "draw_figures=maybe"), ("draw_figures", "true", "false")),
    Bad("n_jobs", ("experiment=caliper_sweep", "n_jobs=0"), ("n_jobs",)),
    Bad("order", ("experiment=caliper_sweep", "method.matching.order=sideways"),
        ("method.matching.order", "sideways", "largest", "smallest", "random", "data", "closest")),
    Bad("confounding", ("experiment=caliper_sweep", "cohort.confounding=-1"), ("cohort.confounding", "[0, 10]")),
    Bad("unknown_key", ("experiment=caliper_sweep", "foo=1"), ("foo", "'+'")),
    Bad("unknown_experiment", ("experiment=nope",), ("experiment", "no such experiment", *EXPERIMENTS)),
    Bad("run_dir_is_a_file", ("experiment=caliper_sweep", f"hydra.run.dir={__file__}"),
        ("hydra.run.dir", "not a directory")),
    Bad("estimand", ("experiment=caliper_sweep", "experiment.estimand=x"), ("experiment.estimand", "matched")),
    Bad("outcome_name", ("experiment=caliper_sweep", "method.outcomes.names=[nosuch]"),
        ("method.outcomes.names", "nosuch", "barthel")),
    Bad("ps_covariate", ("experiment=caliper_sweep", "method.propensity.covariates=[nosuch]"),
        ("method.propensity.covariates", "nosuch")),
    Bad("balance_covariate", ("experiment=caliper_sweep", "method.balance.covariates=[nosuch]"),
        ("method.balance.covariates", "nosuch")),
    Bad("exact_name", ("experiment=caliper_sweep", "method.matching.exact=[nosuch]"),
        ("method.matching.exact", "nosuch")),
    Bad("unmeasured_in_ps", ("experiment=caliper_sweep", "method.propensity.covariates=[age,u]"),
        ("method.propensity.covariates", "unmeasured")),
    Bad("analysis", ("experiment=caliper_sweep", "method.outcomes.analyses=[paired_diff]"),
        ("method.outcomes.analyses", "paired_diff", "diff_means_paired")),
    Bad("omitted", ("experiment=caliper_sweep", "+cohort.omitted_confounders={nosuch: 1}"),
        ("cohort.omitted_confounders", "nosuch")),
    Bad("progress", ("experiment=caliper_sweep", "progress=maybe"), ("progress", "maybe")),
    Bad("effect_value", ("experiment=caliper_sweep", "+cohort.effect={barthel:{m1:x}}"),
        ("cohort.effect.barthel.m1", "number")),
    Bad("effect_needs_plus", ("experiment=caliper_sweep", "cohort.effect={barthel:{m1:5}}"),
        ("cohort.effect", "'+'")),
    Bad("job", ("experiment=caliper_sweep", "experiment.job=nosuch"), ("experiment.job", "psm", "rct")),
    Bad("no_experiment", (), ("experiment", *EXPERIMENTS)),
    # Regressions of bugs found in review; one small condition,
    # one rep, so that while the bug is there the accidental run is short.
    Bad("caliper_in_grid", ("experiment=caliper_sweep", "method.matching.caliper=-1", "reps=1", ONE_CONDITION),
        ("method.matching.caliper",)),
    Bad("unknown_cohort_key", ("experiment=caliper_sweep", "+cohort.bogus=1", "reps=1", ONE_CONDITION),
        ("cohort.bogus",), code=None),
]
BAD_XFAIL: dict[str, str] = {}  # bugs found here were fixed; keep the mechanism for new ones


# ----------------------------------------------------------------------------- run specs

def _experiment(name: str) -> dict:
    return (yaml.safe_load((EXPERIMENT_DIR / f"{name}.yaml").read_text()) or {}).get("experiment") or {}


def _hydra_value(v) -> str:
    return "null" if v is None else repr(v) if isinstance(v, float) else str(v)


def _experiment_args(name: str) -> list[str]:
    """Small but complete settings for one experiment file: few reps, small check cohorts, and
    (except caliper_sweep, whose full output is checked below) each grid factor cut to its first
    and last value, so the extremes (e.g. cohort.n = 5000) still run."""
    exp = _experiment(name)
    args = [f"experiment={name}", "reps=3"]
    grid = exp.get("grid") or {}
    if grid and name != "caliper_sweep":
        def kept(k, vals):
            if k == "cohort.effect_mcid" and exp.get("job") == "compatibility":  # it inverts over θ: three
                return [vals[0], vals[len(vals) // 2], vals[-1]]
            if k == "experiment.n_per_arm":  # the power curves solved for n need the points they cross at
                return vals
            return [vals[0], vals[-1]]
        cut = ",".join(f"{k}:[{','.join(_hydra_value(v) for v in dict.fromkeys(kept(k, vals)))}]"
                       for k, vals in grid.items())
        args.append(f"experiment.grid={{{cut}}}")
    if "check_n" in exp:
        args.append("experiment.check_n=20000")
    if "pair_cohorts" in exp:
        args.append("experiment.pair_cohorts=20")
    if "reference_n" in exp:
        args.append("experiment.reference_n=20000")
    if "direct_checks" in exp:  # one closed-form n checked (down and up), by 200 trials each
        args += ["experiment.direct_checks.top=1", "experiment.direct_checks.reps=200"]
    return args


def _job_of(name: str) -> str | None:
    return _experiment(name).get("job")


SPECS: dict[str, list[str]] = {
    "ref": [*SMALL, "n_jobs=1"],
    "jobs2": [*SMALL, "n_jobs=2"],
    "chunk1": [*SMALL, "n_jobs=1", "chunk_size=1"],
    **{f"bad:{b.id}": ["n_jobs=1", *b.args] for b in BAD},  # the bad value comes last, so it wins
    **{f"exp:{e}": [*_experiment_args(e), "n_jobs=1"] for e in EXPERIMENTS},
}


def needs(*names: str):
    """Declare the pre-started runs a test uses (its parametrised run is added automatically)."""
    def deco(fn):
        fn._needs = names
        return fn
    return deco


def _needed(item) -> list[str]:
    names = list(getattr(getattr(item, "function", None), "_needs", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "experiment" in params:
        names.append(f"exp:{params['experiment']}")
    if "bad" in params:
        names.append(f"bad:{params['bad'].id}")
    return names


# ----------------------------------------------------------------------------- running

@dataclass
class Run:
    args: list[str]
    dir: Path
    returncode: int
    stdout: str
    stderr: str

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-n:])

    def why(self) -> str:
        return f"`python -m sim {' '.join(self.args)}` -> exit {self.returncode}\nstderr (tail):\n{self.tail()}"


def sim_cmd(args: list[str], run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sim", *args, f"hydra.run.dir={run_dir}"]


def run_batch(names: list[str], root: Path, env: dict) -> dict[str, Run]:
    """The named command lines in one process (tests/cli_helpers.py), one after another: each with
    its exit code, stdout and stderr."""
    got = run_sim_lines({n: [*SPECS[n], f"hydra.run.dir={root / n.replace(':', '_')}"] for n in names}, ROOT, env)
    return {n: Run(list(SPECS[n]), root / n.replace(":", "_"), got[n].returncode, got[n].stdout, got[n].stderr)
            for n in names}


def run_sim(args: list[str], run_dir: Path, env: dict) -> Run:
    p = subprocess.run(sim_cmd(args, run_dir), cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return Run(list(args), run_dir, p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def sim_env(shared_calibration_cache) -> dict:
    """Environment of every run: the session's SIM_CACHE_DIR (tests/conftest.py, shared with the
    in-process tests), with the default cohort model loaded (the shipped snapshot, or calibrated
    once if it were stale) and the batched path's kernels compiled once (numba's disk cache)
    before the runs start two at a time, whose workers would otherwise all compile them at once."""
    cache = shared_calibration_cache
    env = {**os.environ, "SIM_CACHE_DIR": str(cache), "MPLBACKEND": "Agg"}
    env.pop("HYDRA_FULL_ERROR", None)
    p = subprocess.run([sys.executable, "-c", CALIBRATE], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, f"calibration failed:\n{p.stderr[-3000:]}"
    return env


class Runs:
    """The independent runs the selected tests need, started up front in three processes, two at a
    time: the refused command lines, then the others in two batches (Python, numpy, pandas, Hydra
    and the kernels load once per batch, not once per run, as under Hydra's basic multirun)."""

    def __init__(self, env: dict, root: Path, order: list[str]):
        self.env, self.root = env, root
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sim-run")
        self.futures: dict[str, Future] = {}
        refused = [n for n in order if n.startswith("bad:")]
        others = [n for n in order if not n.startswith("bad:")]
        for batch in (refused, others[0::2], others[1::2]):
            if batch:
                future = self.pool.submit(run_batch, batch, root, env)
                self.futures.update(dict.fromkeys(batch, future))

    def __getitem__(self, name: str) -> Run:
        if name not in self.futures:  # not declared by a test: a run of its own
            self.futures[name] = self.pool.submit(run_batch, [name], self.root, self.env)
        return self.futures[name].result()[name]


@pytest.fixture(scope="session")
def runs(request, sim_env, tmp_path_factory):
    order: list[str] = []
    for item in request.session.items:
        if item.module is not None and item.module.__name__ == __name__:
            order += [n for n in _needed(item) if n not in order]
    r = Runs(sim_env, tmp_path_factory.mktemp("runs"), order)
    yield r
    r.pool.shutdown(wait=True, cancel_futures=True)


def ok(run: Run) -> Run:
    assert run.returncode == 0, run.why()
    assert "Traceback" not in run.stderr, run.why()
    return run


def summary_bytes(run_dir: Path) -> bytes:
    path = run_dir / "summary.csv"
    assert path.is_file(), f"no summary.csv in {run_dir}"
    return path.read_bytes()


def assert_same_summary(a: Path, b: Path) -> None:
    """Byte-identical summary.csv; on failure show where the tables differ."""
    ba, bb = summary_bytes(a), summary_bytes(b)
    if ba == bb:
        return
    da, db = pd.read_csv(a / "summary.csv"), pd.read_csv(b / "summary.csv")
    pd.testing.assert_frame_equal(da, db, check_exact=True)
    pytest.fail(f"summary.csv of {a} and {b} differ in their text but not as tables")


def chunk_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "chunks").glob("c*.chunk"))


def resumed_line(run_dir: Path) -> tuple[int, int]:
    """(computed, resumed) from report.md's 'chunks computed this run: C, resumed from disk: K'."""
    import re

    text = (run_dir / "report.md").read_text()
    m = re.search(r"chunks computed this run: (\d+), resumed from disk: (\d+)", text)
    assert m, f"report.md of {run_dir} does not state the chunks computed and resumed"
    return int(m.group(1)), int(m.group(2))


# ----------------------------------------------------------------------------- determinism

@needs("ref", "jobs2")
def test_summary_identical_for_one_and_two_jobs(runs):
    ref, two = ok(runs["ref"]), ok(runs["jobs2"])
    assert_same_summary(ref.dir, two.dir)
    assert not list(ref.dir.glob("*.png")) and "No figures: draw_figures=false." in (ref.dir / "report.md").read_text()
    # different chunk layouts, same numbers (default chunk size depends on the workers)
    assert resumed_line(ref.dir)[0] != resumed_line(two.dir)[0]


@needs("ref", "chunk1")
def test_summary_identical_for_chunk_size_one_and_default(runs):
    ref, one = ok(runs["ref"]), ok(runs["chunk1"])
    assert_same_summary(ref.dir, one.dir)
    assert resumed_line(one.dir)[0] == 2 * 10  # 2 conditions x 10 reps, one rep per chunk
    assert resumed_line(ref.dir)[0] < resumed_line(one.dir)[0]


# ----------------------------------------------------------------------------- resume

@needs("ref")
def test_a_complete_run_rerun_recomputes_nothing(runs, sim_env, tmp_path):
    """A finished run keeps its rows in replicates.parquet (its chunks compacted into it): the same
    command into a copy of its directory computes no chunk and gives the same summary."""
    ref = ok(runs["ref"])
    assert resumed_line(ref.dir)[1] == 0 and not chunk_files(ref.dir)
    work = tmp_path / "resume"
    shutil.copytree(ref.dir, work)
    (work / "summary.csv").unlink()
    again = ok(run_sim(SPECS["ref"], work, sim_env))
    assert_same_summary(ref.dir, work)
    assert resumed_line(work)[0] == 0
    assert again.dir == work


@needs("chunk1")
def test_resume_after_kill(runs, sim_env, tmp_path):
    """SIGKILL a run once its first chunk is on disk, re-run the same command in the same
    directory: same summary as the uninterrupted run, and the report counts resumed chunks."""
    args = SPECS["chunk1"]
    work = tmp_path / "killed"
    proc = subprocess.Popen(sim_cmd(args, work), cwd=ROOT, env=sim_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not chunk_files(work):
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before writing a chunk:\n"
                            f"{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no chunk file appeared in time")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (work / "summary.csv").exists(), "the run finished before it was killed"
    n_on_disk = len(chunk_files(work))
    assert 1 <= n_on_disk < 20

    ok(run_sim(args, work, sim_env))
    computed, resumed = resumed_line(work)
    assert resumed >= n_on_disk >= 1
    assert computed >= 1 and computed + resumed == 20
    assert not list((work / "chunks").glob(".tmp-*")), "temp files of the killed run were left behind"
    uninterrupted = ok(runs["chunk1"])
    assert_same_summary(uninterrupted.dir, work)


@needs("ref")
def test_rerun_with_other_settings_in_same_dir_is_one_line_error(runs, sim_env, tmp_path):
    ref = ok(runs["ref"])
    work = tmp_path / "other"
    shutil.copytree(ref.dir, work)
    args = [a if not a.startswith("reps=") else "reps=9" for a in SPECS["ref"]]  # fewer than it holds
    r = run_sim(args, work, sim_env)
    assert r.returncode == 2, r.why()
    assert "Traceback" not in r.stderr, r.why()
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]  # after the run's plan line
    assert len(errors) == 1 and "reps" in errors[0] and r.stderr.strip().endswith(errors[0]), r.why()


# ----------------------------------------------------------------------------- bad overrides

@pytest.mark.parametrize("bad", [pytest.param(b, id=b.id, marks=[pytest.mark.xfail(strict=True, reason=BAD_XFAIL[b.id])]
                                              if b.id in BAD_XFAIL else []) for b in BAD])
def test_bad_override_is_one_line_error(runs, bad):
    r = runs[f"bad:{bad.id}"]
    assert r.returncode != 0, r.why()
    if bad.code is not None:
        assert r.returncode == bad.code, r.why()
    assert "Traceback" not in r.stderr, r.why()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines, r.why()
    if bad.first_line is not None:
        assert lines[0].startswith(bad.first_line), r.why()
        assert len(lines) == 1, r.why()
    for text in bad.must_contain:
        assert text in r.stderr, f"{text!r} not in stderr\n{r.why()}"
    assert not (r.dir / "summary.csv").exists()


# ----------------------------------------------------------------------------- every experiment

@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_and_writes_outputs(runs, experiment):
    r = runs[f"exp:{experiment}"]
    job = _job_of(experiment)
    assert "Traceback" not in r.stderr, r.why()
    if job == "reproduce":
        # exit 1 = a calibration target failed on the small check cohort: still a complete run
        assert r.returncode in (0, 1), r.why()
        for name in ("calibration.csv", "cohort.csv", "table1.md", "table3.md", "table4.md", "table5.md",
                     "calibration.png", "report.md"):
            assert (r.dir / name).is_file(), f"{name} missing\n{r.why()}"
        cal = pd.read_csv(r.dir / "calibration.csv")
        assert len(cal) > 0
    else:
        assert r.returncode == 0, r.why()
        main = ("summary.csv", "report.md", "failures.csv") + (("replicates.parquet",) if job == "psm" else ())
        for name in main:
            assert (r.dir / name).is_file(), f"{name} missing\n{r.why()}"
        summary = pd.read_csv(r.dir / "summary.csv")
        assert len(summary) > 0
        assert {"measure", "value", "mcse", "n"} <= set(summary.columns)
        assert f"experiment={experiment}" in (r.dir / "report.md").read_text()
        assert list(r.dir.glob("*.png")), f"no figures\n{r.why()}"
    assert f"{experiment}: done in" in r.stderr, r.why()


# ----------------------------------------------------------------------------- caliper_sweep outputs

@pytest.mark.skipif("caliper_sweep" not in EXPERIMENTS, reason="no conf/experiment/caliper_sweep.yaml")
@needs("exp:caliper_sweep")
def test_caliper_sweep_outputs(runs):
    r = ok(runs["exp:caliper_sweep"])
    s = pd.read_csv(r.dir / "summary.csv")
    assert list(s.columns) == ["caliper", "effect_mcid", "outcome", "timepoint", "analysis", "measure", "value",
                               "mcse", "n"]
    grid = yaml.safe_load((EXPERIMENT_DIR / "caliper_sweep.yaml").read_text())["experiment"]["grid"]
    calipers = {("none" if c is None else float(c)) for c in grid["method.matching.caliper"]}
    assert {("none" if pd.isna(c) else float(c)) for c in s["caliper"]} == calipers
    assert set(s["effect_mcid"]) == {float(e) for e in grid["cohort.effect_mcid"]}
    for measure in ("bias", "empse", "mse", "coverage", "rejection"):
        rows = s[s["measure"] == measure]
        assert len(rows) > 0, f"no {measure} rows"
        usable = rows[rows["n"] >= 2]
        assert len(usable) > 0, f"no {measure} rows with n >= 2"
        assert np.isfinite(usable["mcse"]).all(), f"non-finite mcse for {measure}:\n{usable[~np.isfinite(usable['mcse'])]}"
    assert set(s.loc[s["measure"] == "rejection", "analysis"]) >= {"wilcoxon"}
    for fig in ("bias.png", "rejection.png"):
        path = r.dir / fig
        assert path.is_file() and path.stat().st_size > 1000, f"{fig} missing or empty"
    report = (r.dir / "report.md").read_text()
    assert "python -m sim experiment=caliper_sweep reps=3" in report
    assert "bias.png" in report and "rejection.png" in report


@pytest.mark.skipif("rct_planning" not in EXPERIMENTS, reason="no conf/experiment/rct_planning.yaml")
@needs("exp:rct_planning")
def test_rct_planning_outputs(runs):
    r = ok(runs["exp:rct_planning"])
    for name in ("summary.csv", "sample_size.csv", "report.md", "failures.csv", "power_effect1.png",
                 "type1_error.png", "bias.png", "coverage.png"):
        assert (r.dir / name).is_file(), name
    summary = pd.read_csv(r.dir / "summary.csv")
    assert list(summary.columns)[:2] == ["n_per_arm", "effect_mcid"]
    assert set(summary["analysis"]) >= {"ttest", "welch", "ancova", "wilcoxon"}
    assert (summary.loc[summary["measure"] == "rejection", "n"] <= 3).all()
    assert "rejection_benefit" in set(summary["measure"])
    ss = pd.read_csv(r.dir / "sample_size.csv")
    at1 = ss[np.isclose(ss["effect_mcid"], 1.0)]
    assert len(at1) == 4 * 2 * 2  # outcomes x times x (80 %, 90 %)
    assert (at1["closed_ttest"] > 0).all() and (at1["closed_ancova"] <= at1["closed_ttest"]).all()
    report = (r.dir / "report.md").read_text()
    assert "## Sample size per arm" in report and "closed form t (normal)" in report
    assert "patients seen at it" in report and "informative loss" in report
    assert "rather than the share alive" not in report and "## Estimands (ICH E9(R1))" in report
    assert "8 outcome x visit comparisons" in report and "Bonferroni" in report
    cmp, checks = pd.read_csv(r.dir / "closed_vs_simulated.csv"), pd.read_csv(r.dir / "direct_checks.csv")
    assert (cmp["closed_n"] != np.ceil(cmp["closed_n"])).any() and set(cmp["analysis"]) <= set(summary["analysis"])
    assert len(checks) == 2 and (checks["reps"] == 200).all() and checks["role"].tolist() == ["floor", "ceil"]


# ----------------------------------------------------------------------------- multirun

@pytest.mark.slow  # ~25 s: two runs of the sweep and the plain run of its first value
def test_a_multirun_with_the_default_sweep_dir_runs_each_value(sim_env, tmp_path):
    """`python -m sim --multirun hydra/launcher=basic experiment=caliper_sweep ... cohort.confounding=0,1`
    with the default hydra.sweep.dir (multirun/<experiment>/<time>, which names the experiment through
    ${hydra:...}: "HydraConfig was not set" before sim.cli.app.RunGuard.on_multirun_start): one run
    per value, each the run of that value without --multirun."""
    args = ["experiment=caliper_sweep", "reps=5", "n_jobs=1", ONE_CONDITION, "draw_figures=false"]
    p = subprocess.run([sys.executable, "-m", "sim", "--multirun", "hydra/launcher=basic", *args,
                        "cohort.confounding=0,1"], cwd=tmp_path, env=sim_env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun" / "caliper_sweep").iterdir()
    jobs = sorted(d.name for d in sweep.iterdir() if d.is_dir())
    assert jobs == ["0", "1"] and (sweep / "multirun.yaml").is_file(), jobs
    for job, value in zip(jobs, ("0", "1")):
        assert f"cohort.confounding={value}" in yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert (sweep / job / "replicates.parquet").is_file() and not chunk_files(sweep / job)
    plain = ok(run_sim([*args, "cohort.confounding=0"], tmp_path / "plain", sim_env))
    assert_same_summary(sweep / "0", plain.dir)
    assert summary_bytes(sweep / "0") != summary_bytes(sweep / "1")

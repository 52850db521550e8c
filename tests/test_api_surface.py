"""The public surface a notebook user meets: dir(sim)/help(sim) list the lazily imported API while
`import sim` stays light; a result's repr is a few lines; result.tables holds the matched
design's small tables; sim.rosenbaum/evalue/tost agree with the command and independent
computations; sim.simulate runs a user's own functions on the engine with its guarantees."""

from __future__ import annotations

import math
import os
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim
from sim.engine import ManifestMismatchError, condition_stream, replicate_rng

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ dir, help, import cost

def test_dir_and_help_list_the_lazy_api_and_import_sim_stays_light():
    names = {"compose", "run", "match_data", "compatibility", "simulate", "rosenbaum", "evalue", "tost",
             "ExperimentResult", "ConfigError", "cohort_model", "draw_cohort"}
    assert names <= set(sim.__all__) and set(sim.__all__) <= set(dir(sim))
    page = pydoc.render_doc(sim, renderer=pydoc.plaintext)
    for name in sim.__all__:
        assert re.search(rf"\b{name}\b", page), name
        assert name in sim.__doc__, name  # the module docstring says what each is for
    code = ("import sys, sim; heavy = [m for m in ('numba', 'matplotlib', 'hydra', 'scipy', 'pandas', 'sim.api') "
            "if m in sys.modules]; print(heavy); assert not heavy; dir(sim)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ simulate

def _normal_mean():
    """generate/analyse defined inside a function, as in a notebook: pickled by value for n_jobs > 1."""
    def generate(condition, rng):
        return rng.normal(condition["mu"], 1.0, size=condition["n_obs"])

    def analyse(condition, x):
        m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
        p = math.erfc(abs(m) / se / math.sqrt(2))  # two-sided z-test (no scipy: the workers start light)
        return {"mean": {"estimate": m, "se": se, "ci": (m - 1.96 * se, m + 1.96 * se), "p_value": p},
                "median": float(np.median(x))}

    return generate, analyse


GRID = {"n_obs": [10, 40], "mu": [0.0, 0.5]}


@pytest.mark.slow  # starts two worker processes: a few seconds on a busy machine
def test_simulate_does_not_depend_on_n_jobs_or_chunks():
    generate, analyse = _normal_mean()
    truth = lambda c: c["mu"]  # noqa: E731
    one = sim.simulate(generate, analyse, GRID, reps=60, seed=3, n_jobs=1, truth=truth)
    two = sim.simulate(generate, analyse, GRID, reps=60, seed=3, n_jobs=2, chunk_size=7, truth=truth)
    pd.testing.assert_frame_equal(one.summary, two.summary)
    pd.testing.assert_frame_equal(one.replicates, two.replicates)
    pd.testing.assert_frame_equal(one.tables["performance"], two.tables["performance"])


def test_simulate_seeds_each_replicate_by_its_condition_and_chunks_do_not_matter():
    generate, analyse = _normal_mean()
    truth = lambda c: c["mu"]  # noqa: E731
    one = sim.simulate(generate, analyse, GRID, reps=60, seed=3, truth=truth)
    pd.testing.assert_frame_equal(one.summary, sim.simulate(generate, analyse, GRID, reps=60, seed=3, chunk_size=7,
                                                            truth=truth).summary)
    # replicate r of a condition draws from SeedSequence(seed, (*digest of its values, r))
    cond = {"n_obs": 40, "mu": 0.5}
    x = generate(cond, replicate_rng(3, condition_stream(cond), 17))
    rows = one.replicates
    got = rows[(rows["n_obs"] == 40) & (rows["mu"] == 0.5) & (rows["rep"] == 17) & (rows["analysis"] == "mean")]
    assert got["estimate"].item() == x.mean()
    # a condition run alone gives the replicates it has in the grid
    alone = sim.simulate(generate, analyse, {"n_obs": [40], "mu": [0.5]}, reps=60, seed=3, truth=truth)
    inside = rows[(rows["n_obs"] == 40) & (rows["mu"] == 0.5)].drop(columns="condition").reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.replicates.drop(columns="condition"), inside)


def test_simulate_summary_is_the_performance_measures_of_the_replicates():
    generate, analyse = _normal_mean()
    res = sim.simulate(generate, analyse, GRID, reps=400, seed=1, truth=lambda c: {"mean": c["mu"]})
    s = res.summary
    assert list(s.columns) == ["n_obs", "mu", "analysis", "measure", "value", "mcse", "n"]
    rows = res.replicates
    for (n_obs, mu), r in rows[rows["analysis"] == "mean"].groupby(["n_obs", "mu"]):
        at = s[(s["n_obs"] == n_obs) & (s["mu"] == mu) & (s["analysis"] == "mean")].set_index("measure")
        d = r["estimate"] - mu
        assert at.loc["bias", "value"] == pytest.approx(d.mean())
        assert at.loc["bias", "mcse"] == pytest.approx(d.std(ddof=1) / math.sqrt(len(d)))
        assert at.loc["empse", "value"] == pytest.approx(r["estimate"].std(ddof=1))
        assert at.loc["rejection", "value"] == pytest.approx((r["p_value"] < 0.05).mean())
        # against the closed forms: unbiased, SE 1/sqrt(n), z-interval covers ~95 %
        assert abs(at.loc["bias", "value"]) < 4 * at.loc["bias", "mcse"]
        assert abs(at.loc["empse", "value"] - 1 / math.sqrt(n_obs)) < 4 * at.loc["empse", "mcse"]
        assert abs(at.loc["coverage", "value"] - 0.95) < 0.03 + 4 * at.loc["coverage", "mcse"]
    # the median has no truth in the dict: no bias, but its empirical SE
    med = s[s["analysis"] == "median"]
    assert "bias" not in set(med["measure"]) and "empse" in set(med["measure"])
    assert (s[s["measure"] == "n_failed"]["value"] == 0).all()
    wide = res.tables["performance"]
    assert len(wide) == 8 and {"bias", "bias_mcse", "coverage", "rejection_mcse"} <= set(wide.columns)
    text = repr(res)
    assert len(text.splitlines()) <= 8 and "4 conditions x 400 replicates" in text and "performance" in text


def test_simulate_records_failures_takes_rows_and_own_truths_and_refuses_when_all_fail():
    def generate(c, rng):
        x = rng.normal(size=5)
        if x[0] > 1.0:
            raise ArithmeticError("planted")
        return x

    def analyse(c, x):
        return pd.DataFrame({"analysis": ["a", "b"], "estimate": [x.mean(), x[0]], "truth": [0.0, np.nan],
                             "width": [1.0, 2.0]})

    res = sim.simulate(generate, analyse, reps=200, seed=2, truth=lambda c: 1.0)
    n_failed = len(res.failures)
    assert 0 < n_failed < 200 and res.failures["reason"].str.contains("ArithmeticError: planted").all()
    s = res.summary.set_index(["analysis", "measure"])
    assert s.loc[("all", "n_failed"), "value"] == n_failed
    assert s.loc[("a", "bias"), "n"] == 200 - n_failed
    rows = res.replicates
    assert s.loc[("b", "bias"), "value"] == pytest.approx((rows[rows["analysis"] == "b"]["estimate"] - 1.0).mean())
    assert s.loc[("a", "bias"), "value"] == pytest.approx(rows[rows["analysis"] == "a"]["estimate"].mean())
    assert s.loc[("a", "mean_width"), "value"] == 1.0  # other numeric fields: their mean
    with pytest.raises(RuntimeError, match="every replicate failed.*analyse returned list"):
        sim.simulate(generate, lambda c, x: [1, 2], reps=3)


def test_simulate_resumes_from_out_dir_and_refuses_a_changed_function(tmp_path):
    generate, analyse = _normal_mean()
    first = sim.simulate(generate, analyse, GRID, reps=20, seed=4, out_dir=tmp_path)
    assert first.n_computed_chunks > 0 and (tmp_path / "summary.csv").is_file()
    assert str(tmp_path) in repr(first)
    again = sim.simulate(generate, analyse, GRID, reps=20, seed=4, out_dir=tmp_path)
    assert again.n_computed_chunks == 0 and again.n_resumed_chunks == first.n_computed_chunks
    pd.testing.assert_frame_equal(first.summary, again.summary)
    with pytest.raises(ManifestMismatchError):
        sim.simulate(generate, lambda c, x: float(x.sum()), GRID, reps=20, seed=4, out_dir=tmp_path)


def _ok(c, rng):
    return 0


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(generate=1), r"^generate: must be a function"),
    (dict(analyse=None), r"^analyse: must be a function"),
    (dict(truth="mu"), r"^truth: must be a function"),
    (dict(grid=[1, 2]), r"^grid: must be a dict"),
    (dict(grid={"a": []}), r"^grid\['a'\]: must be a non-empty list"),
    (dict(grid={"a": 3}), r"^grid\['a'\]: .*wrap a single value as \[3\]"),
    (dict(grid={"n": [10]}), r"^grid\['n'\]: 'n' is a column of the results.*'n_obs'"),
    (dict(grid={"f": [print]}), r"^grid\['f'\]: values must be numbers, strings"),
    (dict(reps=0), r"^reps: must be an integer >= 1"),
    (dict(reps=2.5), r"^reps: must be an integer >= 1"),
    (dict(seed=-1), r"^seed: must be an integer >= 0"),
    (dict(n_jobs=0), r"^n_jobs: must be a non-zero integer"),
    (dict(alpha=1.5), r"^alpha: must be a number in \(0, 1\)"),
])
def test_simulate_refuses_bad_arguments_naming_them(kwargs, pattern):
    args = dict(generate=_ok, analyse=lambda c, x: 0.0, grid=None, reps=2) | kwargs
    with pytest.raises(ValueError, match=pattern):
        sim.simulate(args.pop("generate"), args.pop("analyse"), args.pop("grid"), **args)


def test_readme_simulate_example_runs(monkeypatch, tmp_path):
    """The second Python block of the README's 'Python API' section, run as it is."""
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1]
    assert "sim.simulate(" in code
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    s = ns["s"]
    assert isinstance(s, sim.ExperimentResult) and {"bias", "coverage", "rejection"} <= set(s.summary["measure"])
    null = s.tables["performance"].query("effect == 0.0")
    assert (abs(null["rejection"] - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 200) + 0.02).all()  # type-I error near alpha


# ------------------------------------------------------------------ rosenbaum, evalue, tost

def _pairs(n: int = 15, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.6, 1.0, n)
    y0 = rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"pair": np.repeat(np.arange(1, n + 1), 2), "treated": np.tile([1, 0], n),
                         "y": np.column_stack([y0 + d, y0]).ravel()})


def test_rosenbaum_is_the_sensitivity_command_on_a_dataframe(tmp_path):
    from sim.cli.sensitivity import main

    df = _pairs()
    df.to_csv(tmp_path / "matched.csv", index=False)
    assert main([str(tmp_path / "matched.csv"), "--outcome", "y", "--gamma", "1,1.5,2", "--mcid", "0.5",
                 "--out", str(tmp_path)]) == 0
    cli = pd.read_csv(tmp_path / "sensitivity.csv")
    api = sim.rosenbaum(df, "y", gamma=[1, 1.5, 2], mcid=0.5)
    pd.testing.assert_frame_equal(api.reset_index(drop=True), cli, check_dtype=False)
    # at Γ = 1 the bound is the exact signed-rank p-value (scipy, independently)
    d = df[df["treated"] == 1]["y"].to_numpy() - df[df["treated"] == 0]["y"].to_numpy()
    assert api["p_upper"].iloc[0] == pytest.approx(stats.wilcoxon(d, method="exact").pvalue)
    assert api.attrs["n_pairs"] == 15 and api.attrs["gamma_star"] >= 1
    assert (np.diff(api["p_upper"]) >= 0).all()  # more hidden bias, a weaker bound
    # a 0/1 outcome: McNemar's bound on the discordant pairs, as the command gives it
    df["event"] = (df["y"] > 0.3).astype(int)
    df.to_csv(tmp_path / "matched.csv", index=False)
    assert main([str(tmp_path / "matched.csv"), "--outcome", "event", "--gamma", "1,2", "--out", str(tmp_path)]) == 0
    binary = sim.rosenbaum(df, "event", gamma=[1, 2])
    pd.testing.assert_frame_equal(binary, pd.read_csv(tmp_path / "sensitivity.csv"), check_dtype=False)
    assert "n_discordant" in binary.columns


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(outcome="nosuch"), r"^outcome: column 'nosuch' not found"),
    (dict(pair="nosuch"), r"^pair: column 'nosuch' not found"),
    (dict(gamma=0.5), r"^gamma: must be a number >= 1"),
    (dict(gamma=[]), r"^gamma: must be a number >= 1"),
    (dict(alternative="up"), r"^alternative: must be one of"),
    (dict(alpha=0.7), r"^alpha: must be a number in \(0, 0.5\)"),
    (dict(mcid=-1.0), r"^mcid: must be a finite number > 0"),
    (dict(mcid=1.0, alternative="greater"), r"^mcid: needs alternative='two-sided' or 'less'"),
    (dict(zero_method="x"), r"^zero_method: must be one of \['wilcox', 'pratt'\]"),
    (dict(binary=True), r"^binary: outcome 'y' is not 0/1"),
])
def test_rosenbaum_refuses_bad_arguments_naming_them(kwargs, pattern):
    args = dict(outcome="y") | kwargs
    with pytest.raises(ValueError, match=pattern):
        sim.rosenbaum(_pairs(), args.pop("outcome"), **args)


def test_evalue_and_tost_agree_with_closed_forms_and_statsmodels():
    rr = 2.0
    assert sim.evalue(rr, scale="rr")["evalue_estimate"] == pytest.approx(rr + math.sqrt(rr * (rr - 1)))
    assert sim.evalue(rr, ci=(0.9, 3.0), scale="rr")["evalue_ci"] == 1.0  # the CI contains the null
    e = sim.evalue(5.0, sd=10.0, se=2.0)
    r = math.exp(0.91 * 0.5)
    assert e["evalue_estimate"] == pytest.approx(r + math.sqrt(r * (r - 1)))
    assert sim.evalue(0.5, se=0.2, scale="smd") == pytest.approx(e)
    for kwargs, pattern in ((dict(), r"^sd: required"), (dict(sd=1, scale="or"), r"^scale: must be one of"),
                            (dict(scale="rr", se=0.1), r"^se: not used")):
        with pytest.raises(ValueError, match=pattern):
            sim.evalue(5.0, **kwargs)

    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.2, 1, 40), rng.normal(0, 1.3, 35)
    t = sim.tost(a, b, margin=0.8)
    p_ref = ttost_ind(a, b, -0.8, 0.8, usevar="unequal")[0]
    assert t.p_value == pytest.approx(p_ref) and t.equivalent == (p_ref <= 0.05)
    from_summary = sim.tost((a.mean(), a.std(ddof=1), 40), (b.mean(), b.std(ddof=1), 35), margin=0.8, summary=True)
    assert from_summary.p_value == pytest.approx(t.p_value)
    with pytest.raises(ValueError, match=r"^treated: with summary=True must be \(mean, sd, n\)"):
        sim.tost([1, 2], (0, 1, 3), margin=1, summary=True)


# ------------------------------------------------------------------ the matched design's tables and repr

@pytest.mark.slow
def test_run_tables_hold_the_key_table_and_effect_units_as_written_and_the_repr_is_short(tmp_path):
    res = sim.run("caliper_sweep", ["reps=3", "n_jobs=1",
                                    "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"],
                  out_dir=tmp_path)
    assert {"key_table", "effect_units"} <= set(res.tables)
    assert res.tables["key_table"].to_csv(index=False) == (tmp_path / "key_table.csv").read_text()
    assert res.tables["effect_units"].to_csv(index=False) == (tmp_path / "effect_units.csv").read_text()
    text = repr(res)
    lines = text.splitlines()
    assert len(text) < 1000 and len(lines) <= 8, text
    assert "'caliper_sweep'" in lines[0] and "1 condition x 3 replicates" in lines[0] and "failed replicates: 0" in text
    assert "key_table" in text and "effect_units" in text and str(tmp_path) in text


def test_compiled_kernels_are_cached_per_version_of_the_compiled_code(tmp_path):
    """numba checks only a cached function's own file, so a kernel calling a compiled function of
    another file kept stale code after an edit; the cache directory is keyed by every numba file."""
    import os

    import sim

    (tmp_path / "pkg").mkdir()
    kernel, other = tmp_path / "pkg" / "kernel.py", tmp_path / "pkg" / "plain.py"
    kernel.write_text("import numba\n")
    other.write_text("x = 1\n")
    key = sim.numba_cache_key(tmp_path)
    other.write_text("x = 2\n")
    assert sim.numba_cache_key(tmp_path) == key  # no numba: no recompilation
    kernel.write_text("import numba\n# edited\n")
    assert sim.numba_cache_key(tmp_path) != key
    assert os.environ["NUMBA_CACHE_DIR"].endswith(sim.numba_cache_key(os.path.dirname(sim.__file__)))

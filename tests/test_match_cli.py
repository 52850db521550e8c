"""Tests for the `python -m sim.match` command line: in process through main() (stdout, stderr and
the exit code as a subprocess would see them), and as a real subprocess where the process matters
(the happy path, the default output folder; the README's two commands end to end are in
tests/test_sensitivity_cli.py)."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cli_helpers import run_in_process
from sim.cli.match import main
from sim.methods.balance import smd
from sim.methods.matching import match
from sim.methods.propensity import fit_propensity

COVS = ["age", "male", "escc", "frankel_abc", "emergency"]


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory):
    rng = np.random.default_rng(2025)
    n = 263
    df = pd.DataFrame(
        {
            "id": [f"p{i:03d}" for i in range(n)],
            "age": rng.normal(68, 12, n).round(),
            "male": rng.integers(0, 2, n),
            "escc": rng.integers(0, 4, n),
            "frankel_abc": rng.integers(0, 2, n),
            "emergency": rng.integers(0, 2, n),
        }
    )
    eta = 0.9 + 0.03 * (df.age - 68) + 0.6 * df.frankel_abc
    df["decompression"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    path = tmp_path_factory.mktemp("data") / "cohort.csv"
    df.to_csv(path, index=False)
    return path


def run_cli(*args, process=False, cwd=None):
    if process:
        return subprocess.run([sys.executable, "-m", "sim.match", *map(str, args)], capture_output=True, text=True,
                              timeout=120, cwd=cwd)
    return run_in_process(main, *args)


def base_args(csv, out, covs=",".join(COVS)):
    return [csv, "--treatment", "decompression", "--covariates", covs, "--out", out]


def test_happy_path(cohort_csv, tmp_path):
    out = tmp_path / "res"
    r = run_cli(*base_args(cohort_csv, out), process=True)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    df = pd.read_csv(cohort_csv)
    m = pd.read_csv(out / "matched.csv")
    assert len(m) == len(df)
    assert list(m.columns) == list(df.columns) + ["ps", "logit_ps", "pair", "weight"]
    pd.testing.assert_frame_equal(m[df.columns], df)
    # same result as the library
    X = df[COVS].to_numpy(float)
    t = df["decompression"].to_numpy()
    fit = fit_propensity(X, t)
    res = match(fit.ps, t)
    np.testing.assert_allclose(m["ps"], fit.ps, rtol=1e-12)
    assert m["pair"].notna().sum() == 2 * res.n_pairs
    assert (m["pair"].isna() == (res.pair_id < 0)).all()
    np.testing.assert_allclose(m["weight"], res.weights)
    # each pair has one treated and one control
    g = m.dropna(subset=["pair"]).groupby("pair")["decompression"].agg(["sum", "count"])
    assert (g["sum"] == 1).all() and (g["count"] == 2).all()
    bal = pd.read_csv(out / "balance.csv")
    assert list(bal.columns) == ["covariate", "smd_before", "smd_after", "vr_before", "vr_after"]
    np.testing.assert_allclose(bal["smd_before"], smd(X, t))
    assert f"pairs: {res.n_pairs}" in r.stdout
    # the roles file sim.sensitivity reads: which column is what, and how the pairs were made
    roles = json.loads((out / "matched.json").read_text())
    assert roles == {**roles, "format": "sim.match/1", "treatment": "decompression", "pair": "pair", "weight": "weight",
                     "covariates": COVS, "exact": [], "method": "greedy", "caliper": 0.2, "caliper_scale": "logit",
                     "caliper_sd": "pooled", "order": "largest", "ratio": 1, "replace": False, "seed": None,
                     "n_rows": len(df), "n_pairs": res.n_pairs, "n_treated": res.n_treated,
                     "n_treated_matched": res.n_treated_matched, "n_control": res.n_control}
    assert roles["caliper_width"] == pytest.approx(res.caliper_width, rel=1e-12)
    assert roles["input"] == str(cohort_csv.resolve())
    assert roles["max_abs_smd_after"] == pytest.approx(bal["smd_after"].abs().max())
    assert str(out / "matched.json") in r.stdout


def test_options_pass_through(cohort_csv, tmp_path):
    out = tmp_path / "res2"
    r = run_cli(*base_args(cohort_csv, out), "--caliper", "none", "--order", "random", "--seed", "3",
                "--ratio", "2", "--exact", "male", "--caliper-sd", "whole", "--caliper-scale", "ps")
    assert r.returncode == 0, r.stderr
    m = pd.read_csv(out / "matched.csv")
    sets = m.dropna(subset=["pair"]).groupby("pair")["male"].nunique()
    assert (sets == 1).all()  # exact on male
    roles = json.loads((out / "matched.json").read_text())
    assert {k: roles[k] for k in ("caliper", "order", "seed", "ratio", "exact", "caliper_sd", "caliper_scale")} == {
        "caliper": None, "order": "random", "seed": 3, "ratio": 2, "exact": ["male"], "caliper_sd": "whole",
        "caliper_scale": "ps"}
    assert roles["caliper_width"] is None
    r = run_cli(*base_args(cohort_csv, tmp_path / "res3"), "--method", "optimal", "--replace")
    assert r.returncode == 0, r.stderr
    r = run_cli(*base_args(cohort_csv, tmp_path / "res4"), "--method", "optimal", "--order", "closest")
    assert r.returncode == 0, r.stderr


def _write(tmp_path, df, name="bad.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


@pytest.fixture
def small_df():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {"t": np.r_[np.ones(15, int), np.zeros(25, int)], "a": rng.normal(size=n), "b": rng.integers(0, 2, n)}
    )


def _assert_error(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_error_missing_file(tmp_path):
    _assert_error(run_cli(tmp_path / "nope.csv", "--treatment", "t", "--covariates", "a", "--out", tmp_path),
                  "not found")


def test_error_missing_column(tmp_path, small_df):
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a,zz", "--out", tmp_path / "o"), "zz")
    _assert_error(run_cli(p, "--treatment", "tt", "--covariates", "a", "--out", tmp_path / "o"), "tt")
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--exact", "qq", "--out", tmp_path / "o"),
                  "qq")


def test_error_nonbinary_treatment(tmp_path, small_df):
    small_df.loc[0, "t"] = 2
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--out", tmp_path / "o"), "binary", "'t'")


def test_error_missing_values(tmp_path, small_df):
    small_df["a"] = small_df["a"].astype(float)
    small_df.loc[3, "a"] = np.nan
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a,b", "--out", tmp_path / "o"), "'a'", "missing")


def test_error_constant_covariate(tmp_path, small_df):
    small_df["c"] = 1
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a,c", "--out", tmp_path / "o"), "'c'", "constant")


def test_error_non_numeric_covariate(tmp_path, small_df):
    small_df["s"] = ["x", "y"] * 20
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a,s", "--out", tmp_path / "o"), "'s'", "numeric")


@pytest.mark.parametrize("cal", ["0", "-0.2", "abc"])
def test_error_bad_caliper(tmp_path, small_df, cal):
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--caliper", cal, "--out", tmp_path / "o"),
                  "caliper")


def test_error_bad_choice_and_missing_args(tmp_path, small_df):
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--order", "biggest", "--out", tmp_path / "o"),
                  "order")
    _assert_error(run_cli(p, "--covariates", "a", "--out", tmp_path / "o"), "--treatment")
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--ratio", "0", "--out", tmp_path / "o"),
                  "ratio")


def test_error_single_arm(tmp_path, small_df):
    small_df["t"] = 1
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--out", tmp_path / "o"), "control")


def test_error_out_is_a_file(tmp_path, small_df):
    p = _write(tmp_path, small_df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--out", p), "output")


# ---------------------------------------------------------------- header, arm sizes, repeated covariates


def test_error_duplicate_header_column(tmp_path, small_df):
    # pandas would read the second 'a' as 'a.1' and match on the first without a word
    p = tmp_path / "dup.csv"
    body = small_df[["t", "a", "b", "a"]].to_csv(index=False)
    assert body.splitlines()[0] == "t,a,b,a"
    p.write_text(body)
    r = run_cli(p, "--treatment", "t", "--covariates", "a,b", "--out", tmp_path / "o")
    _assert_error(r, "same column", "'a' (2x)")
    assert not (tmp_path / "o").exists()
    # also when the repeated column is not one the command uses, quoted, after blank lines
    p.write_text('\n  \n"t","a","b","b"\n' + "\n".join(body.splitlines()[1:]) + "\n")
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--out", tmp_path / "o"), "'b' (2x)")


def test_duplicate_header_check_keeps_good_files(tmp_path, small_df):
    # a UTF-8 BOM, a name that merely looks like pandas' renaming, and one unnamed column are fine
    df = small_df.rename(columns={"b": "a.1"})
    p = tmp_path / "ok.csv"
    p.write_text("\ufeff" + df.to_csv())  # with the index: an empty first header cell
    r = run_cli(p, "--treatment", "t", "--covariates", "a,a.1", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert list(pd.read_csv(tmp_path / "o" / "matched.csv").columns[:4]) == ["Unnamed: 0", "t", "a", "a.1"]


@pytest.mark.parametrize("n_treated, n_control", [(1, 39), (39, 1), (1, 1)])
def test_error_fewer_than_two_per_arm(tmp_path, small_df, n_treated, n_control):
    df = small_df.iloc[: n_treated + n_control].copy()
    df["t"] = np.r_[np.ones(n_treated, int), np.zeros(n_control, int)]
    p = _write(tmp_path, df)
    _assert_error(run_cli(p, "--treatment", "t", "--covariates", "a", "--out", tmp_path / "o"),
                  "at least 2 treated", f"got {n_treated} treated and {n_control} control")


def test_two_per_arm_is_accepted_and_out_defaults_beside_the_input(tmp_path):
    df = pd.DataFrame({"t": [1, 0, 1, 0, 0], "a": [0.3, 0.1, -0.4, 0.8, 0.2]})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run_cli(_write(tmp_path, df, "ok.csv"), "--treatment", "t", "--covariates", "a", process=True, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "ok_matched").iterdir()) == ["balance.csv", "matched.csv",
                                                                            "matched.json", "ps_coefficients.csv"]
    assert not any(cwd.iterdir())


def test_help_documents_refusals():
    r = run_cli("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "same column name twice" in text
    assert "fewer than 2 treated (1) or fewer than 2 control (0) rows" in text
    assert "listed more than once in --covariates" in text


def test_repeated_covariate_warns_once_and_is_dropped(cohort_csv, tmp_path):
    r = run_cli(*base_args(cohort_csv, tmp_path / "dup", covs="age,male,age,escc,male,age"))
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert "more than once" in warnings[0] and "age, male" in warnings[0]
    assert "Traceback" not in r.stderr
    r2 = run_cli(*base_args(cohort_csv, tmp_path / "once", covs="age,male,escc"))
    assert r2.returncode == 0 and not r2.stderr.strip(), r2.stderr
    bal = pd.read_csv(tmp_path / "dup" / "balance.csv")
    assert bal["covariate"].tolist() == ["age", "male", "escc"]
    # same PS, same matching as the list without repeats
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dup" / "matched.csv"),
                                  pd.read_csv(tmp_path / "once" / "matched.csv"))
    pd.testing.assert_frame_equal(bal, pd.read_csv(tmp_path / "once" / "balance.csv"))

"""Tests for the `python -m sim.weight` command line: in process through main() (stdout, stderr and
the exit code as a subprocess would see them), and once as a real subprocess (the default output
folder beside the input). Its numbers are sim.weight_data's, checked in tests/test_weight.py; here:
what is written, that the files agree with the printed lines and the API, and each error line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim
from cli_helpers import run_in_process
from sim.cli.weight import main

DATA = Path(__file__).resolve().parent / "data" / "lalonde_psid.csv"
COV = "age,educ,black,hisp,married,nodegree,re74,re75"

FILES = {"weighted.csv", "ps_coefficients.csv", "balance.csv", "ess.csv", "estimate.csv", "weight.json",
         "love.png", "overlap.png"}


def run_cli(*args):
    return run_in_process(main, *args)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "out"
    r = run_cli(DATA, "--treatment", "treat", "--formula", "age + I(age**2) + educ + black + hisp + married + "
                "nodegree + re74 + re75", "--estimand", "ato", "--outcome", "re78", "--out", out)
    return r, out


def test_outputs_are_written_and_agree_with_the_api(done):
    r, out = done
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == FILES
    df = pd.read_csv(DATA)
    api = sim.weight_data(df, "treat", formula="age + I(age**2) + educ + black + hisp + married + nodegree + re74 + "
                          "re75", estimand="ato", outcome="re78")
    w = pd.read_csv(out / "weighted.csv")
    assert list(w.columns) == [*df.columns, "ps", "logit_ps", "weight"] and len(w) == len(df)
    pd.testing.assert_series_equal(w["weight"], api.weights, rtol=1e-12)
    est = pd.read_csv(out / "estimate.csv").iloc[0]
    assert est.estimate == pytest.approx(api.estimate.iloc[0].estimate, rel=1e-12)
    assert "M-estimation sandwich, PS estimated" in est.se_method
    assert f"ATO of re78 (weighted treated - control): {est.estimate:.6g} (SE {est.se:.4g}" in r.stdout
    assert "SE: M-estimation sandwich" in r.stdout and "treats the weights as known" in r.stdout
    coefs = pd.read_csv(out / "ps_coefficients.csv")
    assert list(coefs.columns) == ["term", "coef", "se", "odds_ratio", "ci_low", "ci_high", "p_value"]
    assert list(coefs["term"]) == ["Intercept", "age", "I(age ** 2)", "educ", "black", "hisp", "married", "nodegree",
                                   "re74", "re75"]
    assert "I(age ** 2)" in r.stdout  # the PS coefficients are printed too
    bal = pd.read_csv(out / "balance.csv")
    assert bal["denominator"].str.startswith("pooled SD").all()
    assert "SMD denominator: pooled SD" in r.stdout
    roles = json.loads((out / "weight.json").read_text())
    assert roles["treatment"] == "treat" and roles["estimand"] == "ato" and roles["outcome"] == "re78"
    assert roles["weight"] == "weight" and roles["denominator"] == "pooled" and roles["formula"].startswith("age")
    ess = pd.read_csv(out / "ess.csv")
    assert roles["ess"]["control"]["ess_after"] == pytest.approx(ess.set_index("arm").loc["control", "ess_after"])


def test_default_out_is_beside_the_input_and_the_module_runs(tmp_path):
    shutil.copy(DATA, tmp_path / "nsw.csv")
    r = subprocess.run([sys.executable, "-m", "sim.weight", "nsw.csv", "--treatment", "treat", "--covariates", COV],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "nsw_weighted"
    assert {p.name for p in out.iterdir()} == FILES - {"estimate.csv"}
    # the ATT's control arm: Kish ESS 42.6 of 2490, under 10 % of n
    assert "warning: extreme weights: max weight share" in r.stderr and "Kish ESS 42.6 of 2490" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.fixture()
def bad_csv(tmp_path):
    df = pd.read_csv(DATA).head(400)
    paths = {}
    for name, frame in {"three": df.assign(treat=df["treat"].where(df.index != 5, 2)),
                        "empty_arm": df[df["treat"] == 1],
                        "missing": df.assign(re74=df["re74"].where(df.index != 7))}.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    paths["dup"] = tmp_path / "dup.csv"
    paths["dup"].write_text("treat,age,age\n1,2,3\n0,3,4\n")
    return paths


@pytest.mark.parametrize("case, extra, message", [
    ("three", [], "error: treatment column 'treat' must be 0/1; found values [0, 1, 2]"),
    ("empty_arm", [], "error: treatment column 'treat' needs at least 2 treated (1) and 2 control (0) rows; got 185 treated and 0 control"),
    ("missing", [], "error: column 're74' has 1 missing value(s)"),
    ("dup", [], "error: input header names the same column more than once: age"),
    (None, ["--estimand", "atc"], "error: --estimand must be one of att, ate, ato; got 'atc'"),
    (None, ["--formula", "age + bs(re74, df=)"], "error: --formula: PS formula 'age + bs(re74, df=)' cannot be parsed: term 'bs(re74, df=)' is not"),
    (None, ["--covariates", "age,nosuch"], "error: --covariates: column(s) not found: nosuch"),
    (None, ["--formula", "age + I(age**2) + nosuch"], "error: --formula: column(s) not found: nosuch"),
    (None, ["--outcome", "nosuch"], "error: --outcome: column(s) not found: nosuch"),
    (None, ["--binary", "odd"], "error: argument --binary: invalid choice: 'odd'"),
])
def test_each_bad_input_is_one_error_line(tmp_path, bad_csv, case, extra, message):
    src = bad_csv[case] if case else DATA
    args = [src, "--treatment", "treat", "--out", tmp_path / "o"]
    if not any(a in extra for a in ("--covariates", "--formula")):
        args += ["--covariates", "age,educ" if case == "dup" else COV]
    r = run_cli(*args, *extra)
    assert r.returncode == 2 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_separation_is_one_error_line_that_names_it(tmp_path):
    path = tmp_path / "sep.csv"
    pd.DataFrame({"t": [0] * 20 + [1] * 20, "x": list(range(20)) + list(range(30, 50))}).to_csv(path, index=False)
    r = run_cli(path, "--treatment", "t", "--covariates", "x")
    assert r.returncode == 2 and r.stderr.startswith("error: PS of 0 or 1 (separation)")
    assert "fewer or coarser terms" in r.stderr and len(r.stderr.strip().splitlines()) == 1

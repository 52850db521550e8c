"""`python -m sim.match` beyond pairs, on the public LaLonde data (tests/data): full matching and
subclassification with MatchIt's weights (recomputed here from the sets, and by hand on a tiny
example), --formula, the PS coefficients against statsmodels, the plain-file path against pandas'
(the files read back equal; the input lines kept), the fast path's imports; then
`python -m sim.sensitivity` on matched sets against senm called directly and against brute force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.cli.match import main as match_main
from sim.cli.sensitivity import main as sens_main
from sim.methods.balance import smd, variance_ratio
from sim.methods.matching.full import full_match
from sim.methods.matching.subclass import subclassify
from sim.methods.propensity import fit_propensity
from sim.methods.sensitivity.matched_sets import senm_bounds, senm_gamma_star

DATA = Path(__file__).parent / "data" / "lalonde_psid.csv"
COVS = ["age", "educ", "black", "hisp", "married", "nodegree", "re74", "re75"]


def cli(main, *args):
    return main([str(a) for a in args])


def matchit_weights(sets, t, estimand="att"):
    """MatchIt's weights from the sets alone (get_weights_from_subclass, normalize = TRUE)."""
    w = np.zeros(t.size)
    for k in np.unique(sets[sets >= 0]):
        u = sets == k
        n1, n0 = (u & (t == 1)).sum(), (u & (t == 0)).sum()
        if estimand == "att":
            w[u & (t == 1)], w[u & (t == 0)] = 1.0, n1 / n0
        else:
            w[u & (t == 1)], w[u & (t == 0)] = (n1 + n0) / n1, (n1 + n0) / n0
    for arm in (t == 1, t == 0):
        used = arm & (sets >= 0)
        w[used] *= used.sum() / w[used].sum()
    return w


def test_full_matching_weights_by_hand():
    """Logit distances: treated 0, 0.05, 10; controls 0.02, 10.1, 10.2. Sets {T0, T0.05, C0.02} and
    {T10, C10.1, C10.2}. ATT: control of set 1 gets 2/1, those of set 2 1/2 each; the sum 3 equals the
    3 matched controls, so no rescaling: 2, 0.5, 0.5."""
    d = np.array([0.0, 0.05, 10.0, 0.02, 10.1, 10.2])
    t = np.array([1, 1, 1, 0, 0, 0])
    res = full_match(1 / (1 + np.exp(-d)), t)
    assert res.set_id.tolist() == [0, 0, 1, 0, 1, 1]
    np.testing.assert_allclose(res.weights, [1, 1, 1, 2.0, 0.5, 0.5])
    # one treated with two controls, one with one: raw 1/2, 1/2, 1 sum to 2 over 3 controls -> x 3/2
    d = np.array([0.0, 10.0, 0.1, 0.2, 10.1])
    res = full_match(1 / (1 + np.exp(-d)), np.array([1, 1, 0, 0, 0]))
    np.testing.assert_allclose(res.weights, [1, 1, 0.75, 0.75, 1.5])


@pytest.fixture(scope="module")
def lalonde():
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert cli(match_main, DATA, "--treatment", "treat", "--covariates", ",".join(COVS), "--method", "full",
               "--caliper", "0.5", "--out", out) == 0
    return out


def test_full_matching_cli_weights_sets_and_balance(lalonde, full_dir):
    m = pd.read_csv(full_dir / "matched.csv")
    t = m["treat"].to_numpy()
    sets = m["pair"].fillna(-1).to_numpy().astype(int)
    fit = fit_propensity(lalonde[COVS].to_numpy(float), lalonde["treat"].to_numpy())
    ref = full_match(fit.ps, t, caliper=0.5)
    np.testing.assert_array_equal(sets, ref.set_id)
    np.testing.assert_allclose(m["weight"], matchit_weights(sets, t), rtol=1e-12)
    w = m["weight"].to_numpy()
    assert w[(sets >= 0) & (t == 0)].sum() == pytest.approx(((sets >= 0) & (t == 0)).sum())
    bal = pd.read_csv(full_dir / "balance.csv")
    X = lalonde[COVS].to_numpy(float)
    np.testing.assert_allclose(bal["smd_after"], smd(X, t, w), rtol=1e-12)
    np.testing.assert_allclose(bal["vr_after"], variance_ratio(X, t, w), rtol=1e-12)
    roles = json.loads((full_dir / "matched.json").read_text())
    assert (roles["structure"], roles["method"], roles["estimand"], roles["n_sets"]) == (
        "matched_sets", "full", "att", ref.n_sets)
    assert roles["n_control_matched"] == ref.n_control_matched and roles["ratio"] is None


@pytest.mark.parametrize("estimand", ["att", "ate"])
def test_subclass_cli_equals_subclassify(lalonde, tmp_path, capsys, estimand):
    assert cli(match_main, DATA, "--treatment", "treat", "--covariates", ",".join(COVS), "--method", "subclass",
               "--subclasses", "4", "--estimand", estimand, "--out", tmp_path) == 0
    m = pd.read_csv(tmp_path / "matched.csv")
    t = m["treat"].to_numpy()
    ref = subclassify(fit_propensity(lalonde[COVS].to_numpy(float), t).ps, t, 4, estimand)
    np.testing.assert_array_equal(m["pair"].to_numpy(), ref.subclass)
    np.testing.assert_allclose(m["weight"], matchit_weights(ref.subclass, t, estimand), rtol=1e-12)
    assert f"subclasses: {ref.n_subclasses} (treated used 185 of 185" in capsys.readouterr().out
    roles = json.loads((tmp_path / "matched.json").read_text())
    assert (roles["structure"], roles["estimand"], roles["subclasses"]) == ("subclasses", estimand, ref.n_subclasses)


def _coefficients_against_statsmodels(table: pd.DataFrame, res):
    names = {"Intercept": "(intercept)", "const": "(intercept)"}
    params, bse = res.params.rename(names), res.bse.rename(names)
    tab = table.set_index("term").loc[params.index]
    np.testing.assert_allclose(tab["coef"], params, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tab["se"], bse, rtol=1e-6)
    ci = np.exp(res.conf_int()).rename(index=names)
    np.testing.assert_allclose(tab[["ci_low", "ci_high"]], ci, rtol=1e-6)
    np.testing.assert_allclose(tab["p_value"], res.pvalues, rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(tab["odds_ratio"], np.exp(params), rtol=1e-6)


def test_formula_coefficients_equal_statsmodels(lalonde, tmp_path):
    import statsmodels.formula.api as smf

    formula = "age + I(age**2) + educ + black + hisp + married + nodegree + re74 + re75 + I(re74 == 0)"
    assert cli(match_main, DATA, "--treatment", "treat", "--formula", formula, "--out", tmp_path) == 0
    res = smf.logit("treat ~ " + formula, lalonde).fit(disp=0, tol=1e-12, maxiter=200)
    _coefficients_against_statsmodels(pd.read_csv(tmp_path / "ps_coefficients.csv"), res)
    roles = json.loads((tmp_path / "matched.json").read_text())
    assert roles["covariates"] == ["age", "educ", "black", "hisp", "married", "nodegree", "re74", "re75"]
    assert roles["formula"] == formula and "I(age ** 2)" in roles["ps_terms"]
    bal = pd.read_csv(tmp_path / "balance.csv")
    assert bal["covariate"].tolist() == roles["covariates"]


def test_covariate_coefficients_equal_statsmodels_glm(lalonde, tmp_path):
    import statsmodels.api as sm

    assert cli(match_main, DATA, "--treatment", "treat", "--covariates", ",".join(COVS), "--out", tmp_path) == 0
    X = sm.add_constant(lalonde[COVS].astype(float))
    res = sm.GLM(lalonde["treat"], X, family=sm.families.Binomial()).fit(tol=1e-12)
    _coefficients_against_statsmodels(pd.read_csv(tmp_path / "ps_coefficients.csv"), res)


def test_plain_path_reads_back_as_the_pandas_path(lalonde, tmp_path):
    """The same data as a plain file (lines kept, fields appended) and quoted (read and written by
    pandas): pd.read_csv of the two matched.csv equal, and equal to pandas writing the result."""
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    text = DATA.read_text().replace("\n1,33,12,0,0,1,0,0.0,", "\n1,33,12,0,0,1,0,0.000,", 1)  # kept as written
    plain.write_text(text)
    pd.read_csv(plain).to_csv(quoted, index=False, quoting=1)
    for path, out in ((plain, "a"), (quoted, "b")):
        assert cli(match_main, path, "--treatment", "treat", "--covariates", ",".join(COVS), "--method", "full",
                   "--caliper", "0.3", "--out", tmp_path / out) == 0
    a, b = (pd.read_csv(tmp_path / o / "matched.csv") for o in "ab")
    pd.testing.assert_frame_equal(a, b)
    lines_in = plain.read_text().splitlines()
    lines_out = (tmp_path / "a" / "matched.csv").read_text().splitlines()
    assert all(o.startswith(i + ",") for i, o in zip(lines_in, lines_out)) and len(lines_in) == len(lines_out)
    for f in ("balance.csv", "ps_coefficients.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / f), pd.read_csv(tmp_path / "b" / f))


def test_plain_file_never_imports_pandas_or_scipy(tmp_path):
    code = ("import sys; from sim.cli.match import main; code = main(sys.argv[1:]); "
            "print('loaded', sorted(m for m in ('pandas', 'scipy', 'statsmodels', 'matplotlib', 'omegaconf', "
            "'hydra', 'numba') if m in sys.modules)); sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code, str(DATA), "--treatment", "treat", "--covariates",
                        ",".join(COVS), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "loaded []"


@pytest.mark.parametrize("flags, fragment", [
    (["--method", "full", "--ratio", "2"], "--ratio cannot be used with --method full"),
    (["--method", "subclass", "--caliper", "0.2"], "--caliper cannot be used with --method subclass"),
    (["--subclasses", "3"], "--subclasses cannot be used with --method greedy"),
    (["--estimand", "ate"], "--estimand ate cannot be used with --method greedy"),
    (["--method", "full", "--exact", "black"], "--exact cannot be used with --method full"),
])
def test_settings_that_do_not_apply_are_refused(tmp_path, capsys, flags, fragment):
    assert cli(match_main, DATA, "--treatment", "treat", "--covariates", "age,educ", *flags, "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_formula_errors_are_one_line(tmp_path, capsys):
    assert cli(match_main, DATA, "--treatment", "treat", "--formula", "age + nosuch", "--out", tmp_path) == 2
    assert "nosuch" in capsys.readouterr().err
    assert cli(match_main, DATA, "--treatment", "treat", "--formula", "black ~ age", "--out", tmp_path) == 2
    assert "left side 'black' is not the --treatment column 'treat'" in capsys.readouterr().err
    assert cli(match_main, DATA, "--treatment", "treat", "--out", tmp_path) == 2
    assert "--covariates" in capsys.readouterr().err


def test_sensitivity_on_full_matching_equals_senm(full_dir, tmp_path, capsys):
    out = tmp_path / "s"
    assert cli(sens_main, full_dir / "matched.csv", "--outcome", "re78", "--gamma", "1,1.2,1.5,2", "--out", out) == 0
    printed = capsys.readouterr().out
    m = pd.read_csv(full_dir / "matched.csv").dropna(subset=["pair"])
    y, t, s = m["re78"].to_numpy(), m["treat"].to_numpy(), m["pair"].to_numpy().astype(np.int64)
    g = [1, 1.2, 1.5, 2]
    two = np.minimum(1, 2 * np.minimum(senm_bounds(y, t, s, g), senm_bounds(y, t, s, g, alternative="less")))
    table = pd.read_csv(out / "sensitivity.csv")
    np.testing.assert_allclose(table["p_upper"], two, rtol=1e-12)
    assert table["method"].str.startswith("matched sets: m-statistic bound").all()
    summary = json.loads((out / "sensitivity.json").read_text())
    star = max(senm_gamma_star(y, t, s, 0.025, alternative=a) for a in ("greater", "less"))
    assert summary["gamma_star"] == pytest.approx(star, rel=1e-9)
    assert summary["structure"] == "matched_sets" and summary["sets_complete"] == len(np.unique(s))
    assert "matched sets (not 1:1 pairs)" in printed and "senm" in printed


def test_sensitivity_on_tiny_sets_equals_brute_force(tmp_path, capsys):
    from test_matched_sets_bounds import brute_force, random_sets

    y, t, s = random_sets(np.random.default_rng(7), 5, max_size=3, shift=1.0)
    pd.DataFrame({"treat": t.astype(int), "y": y, "pair": s}).to_csv(tmp_path / "matched.csv", index=False)
    (tmp_path / "matched.json").write_text(json.dumps({"format": "sim.match/1", "treatment": "treat", "pair": "pair",
                                                       "structure": "matched_sets"}))
    assert cli(sens_main, tmp_path / "matched.csv", "--outcome", "y", "--gamma", "1,1.5,2.5", "--method", "exact",
               "--alternative", "greater", "--out", tmp_path / "s") == 0
    table = pd.read_csv(tmp_path / "s" / "sensitivity.csv")
    np.testing.assert_allclose(table["p_upper"], [brute_force(y, t, s, g)[0] for g in (1, 1.5, 2.5)], rtol=1e-9)


def test_bench_times_a_command_by_its_own_cpu():
    from sim.bench.process import command_seconds

    busy = command_seconds([sys.executable, "-c", "sum(range(3 * 10**7))"], runs=1)
    idle = command_seconds([sys.executable, "-c", "import time; time.sleep(0.3)"], runs=1)
    assert busy[0] > 0.2 and idle[0] < 0.2 <= idle[2]


def test_match_data_is_the_command(lalonde, full_dir):
    """sim.match_data(algorithm="full") gives the command's matched.csv and its PS coefficients."""
    import sim

    m = sim.match_data(lalonde, "treat", COVS, algorithm="full", caliper=0.5)
    cli_rows = pd.read_csv(full_dir / "matched.csv")
    pd.testing.assert_frame_equal(m.data.astype({"pair": float}), cli_rows, check_dtype=False)
    pd.testing.assert_frame_equal(m.coefficients, pd.read_csv(full_dir / "ps_coefficients.csv"))
    assert m.structure == "matched_sets"


@pytest.mark.parametrize("variant", ["crlf", "no final newline", "bom"])
def test_plain_variants_keep_their_lines_and_read_back_as_pandas(tmp_path, variant):
    text = DATA.read_text()
    data = {"crlf": text.replace("\n", "\r\n").encode(), "no final newline": text.rstrip("\n").encode(),
            "bom": b"\xef\xbb\xbf" + text.encode()}[variant]
    (tmp_path / "in.csv").write_bytes(data)
    args = ["--treatment", "treat", "--covariates", ",".join(COVS), "--exact", "black,married", "--ratio", "2"]
    assert cli(match_main, tmp_path / "in.csv", *args, "--out", tmp_path / "a") == 0
    pd.read_csv(tmp_path / "in.csv").to_csv(tmp_path / "q.csv", index=False, quoting=1)  # pandas' path
    assert cli(match_main, tmp_path / "q.csv", *args, "--out", tmp_path / "b") == 0
    out = (tmp_path / "a" / "matched.csv").read_bytes()
    newline = b"\r\n" if variant == "crlf" else b"\n"
    lines_in = data.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n").split(newline)
    lines_out = out.rstrip(b"\r\n").split(newline)
    assert len(lines_in) == len(lines_out) and all(o.startswith(i + b",") for i, o in zip(lines_in, lines_out))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "matched.csv"),
                                  pd.read_csv(tmp_path / "b" / "matched.csv"))


def test_sensitivity_on_one_to_two_matching_uses_the_set_bound(tmp_path, capsys):
    assert cli(match_main, DATA, "--treatment", "treat", "--covariates", ",".join(COVS), "--ratio", "2",
               "--out", tmp_path) == 0
    assert json.loads((tmp_path / "matched.json").read_text())["structure"] == "matched_sets"
    assert cli(sens_main, tmp_path / "matched.csv", "--outcome", "re78", "--alternative", "less", "--gamma", "1,2",
               "--mcid", "500") == 0
    m = pd.read_csv(tmp_path / "matched.csv").dropna(subset=["pair"])
    y, t, s = m["re78"].to_numpy(), m["treat"].to_numpy(), m["pair"].to_numpy().astype(np.int64)
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    np.testing.assert_allclose(table["p_upper"], senm_bounds(y, t, s, [1, 2], alternative="less"), rtol=1e-12)
    np.testing.assert_allclose(table["p_upper_mcid"], senm_bounds(y, t, s, [1, 2], alternative="less", tau=500),
                               rtol=1e-12)
    assert (table["mcid_excluded"] == (table["p_upper_mcid"] <= 0.05)).all()


def test_plain_file_with_a_repeated_unused_column_is_refused(tmp_path, capsys):
    (tmp_path / "dup.csv").write_text("t,a,b,b\n1,0.5,1,2\n0,0.1,1,2\n1,0.9,0,2\n0,0.3,0,1\n0,0.2,1,1\n")
    assert cli(match_main, tmp_path / "dup.csv", "--treatment", "t", "--covariates", "a", "--out", tmp_path / "o") == 2
    assert "'b' (2x)" in capsys.readouterr().err and not (tmp_path / "o").exists()

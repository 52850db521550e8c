"""sim.weight_data on real data (tests/data/lalonde_psid.csv: NSW treated vs PSID controls), each
number against an independent computation: the PS and its coefficients against statsmodels' GLM,
the weights by hand from that PS, the weighted difference against statsmodels' WLS, the ESS by
Kish's formula, the sandwich SE against a bootstrap (which the naive weights-known SE misses), and
the cobalt-style balance against statsmodels' DescrStatsW, numpy's weighted covariance, scipy's
two-sample KS statistic and a brute-force weighted eCDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

import sim
from sim.methods.balance_table import ecdf_differences, weighted_balance
from sim.methods.propensity import fit_propensity
from sim.methods.weighted import balancing_weights

DATA = Path(__file__).resolve().parent / "data" / "lalonde_psid.csv"
COV = ["age", "educ", "black", "hisp", "married", "nodegree", "re74", "re75"]
BINARY = ["black", "hisp", "married", "nodegree"]


@pytest.fixture(scope="module")
def df():
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def glm(df):
    return sm.GLM(df["treat"].to_numpy(), sm.add_constant(df[COV].to_numpy(float)),
                  family=sm.families.Binomial()).fit()


def _by_hand(e, t, estimand):
    """The weights from their definitions, normalised per arm to sum to the arm's n."""
    w = {"att": np.where(t, 1.0, e / (1 - e)), "ate": np.where(t, 1 / e, 1 / (1 - e)),
         "ato": np.where(t, 1 - e, e)}[estimand]
    for arm in (t, ~t):
        w[arm] = w[arm] * arm.sum() / w[arm].sum()
    return w


@pytest.mark.parametrize("estimand", ["att", "ate", "ato"])
def test_weights_difference_and_ess_equal_statsmodels_and_kish(df, glm, estimand):
    r = sim.weight_data(df, "treat", COV, estimand=estimand, outcome="re78")
    t = df["treat"].to_numpy() == 1
    e = glm.predict()
    # the fitter clips the PS at 1e-10 (statsmodels goes to 1e-27 for 139 PSID controls)
    np.testing.assert_allclose(r.data["ps"], np.clip(e, 1e-10, 1 - 1e-10), rtol=1e-6, atol=1e-12)
    w = _by_hand(e, t, estimand)
    np.testing.assert_allclose(r.weights, w, rtol=1e-6, atol=1e-8)
    y = df["re78"].to_numpy()
    wls = sm.WLS(y, sm.add_constant(t.astype(float)), weights=w).fit(cov_type="HC0")
    est = r.estimate.iloc[0]
    assert est.estimate == pytest.approx(wls.params[1], rel=1e-6)
    assert est.se_weights_known == pytest.approx(wls.bse[1], rel=1e-6)
    for arm, rows in (("treated", t), ("control", ~t)):
        kish = w[rows].sum() ** 2 / (w[rows] ** 2).sum()
        row = r.ess.set_index("arm").loc[arm]
        assert row.ess_after == pytest.approx(kish, rel=1e-6) and row.ess_before == rows.sum()


def test_ps_coefficients_equal_statsmodels_glm(df, glm):
    c = sim.weight_data(df, "treat", COV).ps_coefficients
    assert list(c["term"]) == ["Intercept", *COV]
    np.testing.assert_allclose(c["coef"], glm.params, rtol=1e-6)
    np.testing.assert_allclose(c["se"], glm.bse, rtol=1e-6)
    np.testing.assert_allclose(c[["ci_low", "ci_high"]], np.exp(glm.conf_int()), rtol=1e-6)
    np.testing.assert_allclose(c["p_value"], glm.pvalues, rtol=1e-5)


def test_formula_terms_reach_the_ps_model_as_statsmodels_builds_them(df):
    f = "age + I(age**2) + educ + black + married:nodegree + re74 + re75"
    r = sim.weight_data(df, "treat", formula=f, estimand="ato")
    g = sm.GLM.from_formula("treat ~ " + f, data=df, family=sm.families.Binomial()).fit()
    assert list(r.ps_coefficients["term"]) == list(g.params.index)
    np.testing.assert_allclose(r.ps_coefficients["coef"], g.params, rtol=1e-6)
    # balance is on the columns the formula reads, not on its transforms
    assert list(r.balance["covariate"]) == ["age", "educ", "black", "married", "nodegree", "re74", "re75"]


def _bootstrap_sd(df, outcome, estimand, B, seed):
    X, t, y = df[COV].to_numpy(float), df["treat"].to_numpy() == 1, df[outcome].to_numpy(float)
    rng = np.random.default_rng(seed)
    est = np.empty(B)
    for b in range(B):  # resample units, refit the PS, reweight
        i = rng.integers(0, len(t), len(t))
        w = balancing_weights(fit_propensity(X[i], t[i].astype(np.int8)).ps, t[i], estimand)
        est[b] = np.average(y[i][t[i]], weights=w[t[i]]) - np.average(y[i][~t[i]], weights=w[~t[i]])
    sd = est.std(ddof=1)
    c = est - est.mean()
    kurtosis = np.mean(c ** 4) / np.mean(c ** 2) ** 2
    return sd, sd / 2 * np.sqrt((kurtosis - 1) / B)  # MC SE of an SD (delta method, any kurtosis)


@pytest.mark.slow  # 1,000 PS refits
def test_sandwich_se_matches_a_bootstrap_where_the_weights_known_se_does_not(df):
    """Overlap weights balance re75 exactly in every resample, so the gain re78 - re75 has the SE of
    re78: the sandwich knows it (the PS's score equations are in its stack), the WLS SE that treats
    the weights as known does not and is 13 % too large."""
    data = df.assign(gain=df["re78"] - df["re75"])
    est = sim.weight_data(data, "treat", COV, estimand="ato", outcome="gain").estimate.iloc[0]
    sd, mc = _bootstrap_sd(data, "gain", "ato", B=1000, seed=20261206)
    assert abs(est.se - sd) <= 3 * mc, (est.se, sd, mc)
    assert abs(est.se_weights_known - sd) > 3 * mc, (est.se_weights_known, sd, mc)
    assert (round(est.se), round(sd), round(mc), round(est.se_weights_known)) == (839, 861, 19, 942)  # README


def test_overlap_weights_balance_every_ps_covariate_exactly(df):
    """Li, Morgan & Zaslavsky (2018): at the logistic MLE the ATO weights give equal weighted means
    of each PS covariate; the ATT weights do not."""
    ato = sim.weight_data(df, "treat", COV, estimand="ato").balance
    np.testing.assert_allclose(ato["diff_after"], 0.0, atol=1e-7)
    att = sim.weight_data(df, "treat", COV, estimand="att").balance
    assert att["diff_after"].abs().max() > 0.05


@pytest.mark.parametrize("estimand, denominator", [("att", "treated"), ("ate", "pooled"), ("ato", "pooled")])
def test_balance_matches_descrstatsw_numpy_and_scipy(df, estimand, denominator):
    r = sim.weight_data(df, "treat", COV, estimand=estimand)
    b = r.balance.set_index("covariate")
    t = df["treat"].to_numpy() == 1
    w = r.weights.to_numpy()
    assert (b["denominator"].str.startswith(denominator)).all()
    for c in COV:
        x = df[c].to_numpy(float)
        binary = c in BINARY
        assert b.loc[c, "type"] == ("binary" if binary else "continuous")
        d1, d0 = DescrStatsW(x[t], weights=w[t]), DescrStatsW(x[~t], weights=w[~t])
        if binary:  # cobalt: the variance of a 0/1 covariate is p (1 - p)
            v1, v0 = x[t].mean() * (1 - x[t].mean()), x[~t].mean() * (1 - x[~t].mean())
        else:
            v1, v0 = x[t].var(ddof=1), x[~t].var(ddof=1)
        sd = np.sqrt(v1) if denominator == "treated" else np.sqrt((v1 + v0) / 2)  # on the unweighted sample
        assert b.loc[c, "sd_denominator"] == pytest.approx(sd, rel=1e-9)
        assert b.loc[c, "diff_after"] == pytest.approx((d1.mean - d0.mean) / sd, rel=1e-7, abs=1e-9)
        assert b.loc[c, "diff_before"] == pytest.approx((x[t].mean() - x[~t].mean()) / sd, rel=1e-9)
        if binary:
            assert np.isnan(b.loc[c, "vr_before"]) and np.isnan(b.loc[c, "vr_after"])
            assert b.loc[c, "ecdf_max_after"] == pytest.approx(abs(d1.mean - d0.mean), rel=1e-9)
        else:  # reliability-weight (unbiased) variances, as cobalt and np.cov(aweights=)
            vr = np.cov(x[t], aweights=w[t]) / np.cov(x[~t], aweights=w[~t])
            assert b.loc[c, "vr_after"] == pytest.approx(vr, rel=1e-9)
            assert b.loc[c, "ecdf_max_before"] == pytest.approx(stats.ks_2samp(x[t], x[~t]).statistic, rel=1e-12)


def test_the_denominator_stays_the_unweighted_one_after_weighting(df):
    """A weighted SD would move the yardstick with the weights: on re75 it changes the SMD by far
    more than rounding, so the test would catch it."""
    r = sim.weight_data(df, "treat", COV, estimand="ate")
    b = r.balance.set_index("covariate").loc["re75"]
    t, w = df["treat"].to_numpy() == 1, r.weights.to_numpy()
    x = df["re75"].to_numpy(float)
    diff = np.average(x[t], weights=w[t]) - np.average(x[~t], weights=w[~t])
    assert b.diff_after == pytest.approx(diff / np.sqrt((np.var(x[t], ddof=1) + np.var(x[~t], ddof=1)) / 2), rel=1e-9)
    weighted_sd = np.sqrt((np.cov(x[t], aweights=w[t]) + np.cov(x[~t], aweights=w[~t])) / 2)
    assert abs(b.diff_after - diff / weighted_sd) > 0.1 * abs(b.diff_after)


def _brute_ecdf(x, t, w):
    diffs = []
    for v in np.unique(x):
        f1 = w[t & (x <= v)].sum() / w[t].sum()
        f0 = w[~t & (x <= v)].sum() / w[~t].sum()
        diffs.append(abs(f1 - f0))
    return np.mean(diffs), np.max(diffs)


def test_weighted_ecdf_differences_equal_a_brute_force_count():
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 2.0, 3.0, 3.0, 4.0, 7.0])
    t = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 2.0, 1.0, 3.0, 0.25])
    assert ecdf_differences(x, t, w) == pytest.approx(_brute_ecdf(x, t, w), rel=1e-12)
    # by hand, unweighted: F1 - F0 at 1, 2, 3, 4, 5, 7 = .2 - 0, .6 - .2, .8 - .6, .8 - .8, 1 - .8, 1 - 1
    assert ecdf_differences(x, t) == pytest.approx((1.0 / 6, 0.4), rel=1e-12)


def test_weighted_ecdf_on_the_real_data_equals_the_brute_force_count(df):
    r = sim.weight_data(df, "treat", COV, estimand="att")
    t = df["treat"].to_numpy() == 1
    b = r.balance.set_index("covariate")
    for c in ("age", "re74"):
        m, k = _brute_ecdf(df[c].to_numpy(float), t, r.weights.to_numpy())
        assert (b.loc[c, "ecdf_mean_after"], b.loc[c, "ecdf_max_after"]) == pytest.approx((m, k), rel=1e-9)


def test_binary_raw_reports_the_difference_in_proportions_and_says_so(df):
    r = sim.weight_data(df, "treat", COV, estimand="att", binary="raw")
    b = r.balance.set_index("covariate")
    t = df["treat"].to_numpy() == 1
    x = df["married"].to_numpy(float)
    assert b.loc["married", "diff_before"] == pytest.approx(x[t].mean() - x[~t].mean(), rel=1e-12)
    assert b.loc["married", "diff_type"] == "raw difference in proportions"
    assert b.loc["age", "diff_type"] == "smd"
    with pytest.raises(ValueError, match="binary: must be one of"):
        weighted_balance(x, t, ["married"], np.ones(t.size), binary="bogus")


def test_the_result_object_and_the_public_surface(df):
    assert "weight_data" in sim.__all__ and "weight_data" in dir(sim)
    r = sim.weight_data(df, "treat", COV)
    assert r.estimate is None and len(r.weights) == len(df) and {"ps", "logit_ps", "weight"} <= set(r.data.columns)
    assert r.settings["denominator"] == "treated" and r.settings["estimand"] == "att"
    assert (r.weights[df["treat"] == 1] == 1).all()  # ATT: treated weight 1 after normalisation
    assert any(w.startswith("extreme weights: max weight share") for w in r.warnings)  # control ESS 43 of 2490


@pytest.mark.parametrize("kwargs, message", [
    (dict(treatment="educ", covariates=["age"]), r"treatment column 'educ' must be 0/1; found values \[0, 2, 3"),
    (dict(estimand="atc"), r"estimand: must be one of \['att', 'ate', 'ato'\], got 'atc'"),
    (dict(covariates=None), "give either covariates"),
    (dict(covariates=None, formula="age + "), "cannot be parsed"),
    (dict(covariates=None, formula="age + nosuch"), "formula: column.s. not found: nosuch"),
])
def test_bad_input_is_one_line_naming_what_and_allowed(df, kwargs, message):
    args = dict(treatment="treat", covariates=COV, estimand="att") | kwargs
    with pytest.raises(ValueError, match=message) as exc:
        sim.weight_data(df, args.pop("treatment"), args.pop("covariates"), **args)
    assert "\n" not in str(exc.value)


def test_a_categorical_column_is_balanced_level_by_level_and_the_formula_names_the_treatment(df):
    data = df.assign(eth=np.where(df["black"] == 1, "black", np.where(df["hisp"] == 1, "hispanic", "other")))
    r = sim.weight_data(data, "treat", formula="treat ~ age + C(eth) + re75", estimand="ato")
    b = r.balance.set_index("covariate")
    assert list(b.index) == ["age", "eth=black", "eth=hispanic", "eth=other", "re75"]
    t, w = data["treat"].to_numpy() == 1, r.weights.to_numpy()
    other = (data["eth"] == "other").to_numpy(float)
    assert b.loc["eth=other", "type"] == "binary"
    assert b.loc["eth=other", "diff_after"] * b.loc["eth=other", "sd_denominator"] == pytest.approx(
        np.average(other[t], weights=w[t]) - np.average(other[~t], weights=w[~t]), abs=1e-9)
    with pytest.raises(ValueError, match="formula: its left side 'married' is not the treatment column 'treat'"):
        sim.weight_data(data, "treat", formula="married ~ age")


def test_extreme_weights_warn_by_share_and_by_ess_but_not_a_small_arm_for_being_small():
    from sim.methods.weighted import _weight_warnings

    t = np.array([1] * 5 + [0] * 100, bool)
    even = np.ones(105)
    assert _weight_warnings(even, t) == []  # 5 treated: 20 % each, an equal share
    heavy = even.copy()
    heavy[5] = 30.0  # one control: 30 / 129 = 23 % of its arm
    (line,) = _weight_warnings(heavy, t)
    assert line.startswith("extreme weights: max weight share 23.3% of the control arm's total weight")


def test_missing_values_an_empty_arm_and_separation_are_refused(df):
    with pytest.raises(ValueError, match="column 'age' has 1 missing value"):
        sim.weight_data(df.assign(age=df["age"].where(df.index != 3)), "treat", COV)
    with pytest.raises(ValueError, match="needs at least 2 treated .1. and 2 control .0. rows; got 0 treated"):
        sim.weight_data(df[df["treat"] == 0], "treat", COV)
    sep = pd.DataFrame({"t": [0] * 20 + [1] * 20, "x": list(range(20)) + list(range(30, 50))})
    with pytest.raises(ValueError, match=r"PS of 0 or 1 \(separation\).*fewer or coarser terms"):
        sim.weight_data(sep, "t", ["x"])

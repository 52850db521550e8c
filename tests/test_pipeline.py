"""The analysis of one cohort (sim.methods.pipeline) and the summary of a Monte Carlo job
(sim.jobs.psm), checked against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.methods.pipeline import MethodSpec, analyse


def _toy_cohort(rng: np.random.Generator, n: int = 400, effect: float = 0.0):
    """A small cohort with one confounder x driving treatment and outcome."""
    x = rng.normal(size=n)
    male = rng.integers(0, 2, n)
    treated = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x)))).astype(np.int8)
    d0 = 2.0 * x + rng.normal(size=n)
    d1 = d0 + effect
    d0[rng.random(n) < 0.1] = np.nan  # deaths before the visit
    d1[np.isnan(d0)] = np.nan
    cols = {"treated": treated, "x": x, "male": male}
    return cols, {("y", "m1"): (d0, d1)}


SPEC = MethodSpec(ps_covariates=("x", "male"), balance_covariates=("x", "male"), outcomes=("y",), times=("m1",),
                  analyses=("wilcoxon", "paired_t", "diff_means"), crude=True)


def test_analyse_rows_match_an_independent_computation():
    cols, pot = _toy_cohort(np.random.default_rng(3), effect=1.5)
    rows = pd.DataFrame(analyse(cols, pot, SPEC, np.random.default_rng(0)))
    assert set(rows["analysis"]) == {"wilcoxon", "paired_t", "diff_means", "crude_diff_means", "crude_wilcoxon"}
    # truths: homogeneous effect 1.5 among the alive
    assert np.allclose(rows[["truth_ate", "truth_att", "truth_matched"]].to_numpy(), 1.5)
    # re-do the matching independently: statsmodels PS, then the matcher's pairs
    import statsmodels.api as sm

    from sim.methods.matching import match

    X = sm.add_constant(np.column_stack([cols["x"], cols["male"]]))
    ps = sm.Logit(cols["treated"], X).fit(disp=0).predict(X)
    res = match(ps, cols["treated"].astype(bool), caliper=0.2)
    d0, d1 = pot[("y", "m1")]
    y = np.where(cols["treated"] == 1, d1, d0)
    yt, yc = y[res.treated_idx], y[res.control_idx]
    assert rows["n_pairs"].iloc[0] == res.n_pairs
    welch = stats.ttest_ind(yt[~np.isnan(yt)], yc[~np.isnan(yc)], equal_var=False)
    dm = rows.set_index("analysis").loc["diff_means"]
    assert dm["estimate"] == pytest.approx(np.nanmean(yt) - np.nanmean(yc), rel=1e-10)
    assert dm["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    ok = ~np.isnan(yt) & ~np.isnan(yc)
    assert rows.set_index("analysis").loc["paired_t", "p_value"] == pytest.approx(
        stats.ttest_rel(yt[ok], yc[ok]).pvalue, rel=1e-6)
    mw = stats.mannwhitneyu(yt[~np.isnan(yt)], yc[~np.isnan(yc)], method="asymptotic")
    assert rows.set_index("analysis").loc["wilcoxon", "p_value"] == pytest.approx(mw.pvalue, rel=1e-6)
    # rank tests carry no effect estimate, so they never enter bias or coverage
    assert np.isnan(rows.set_index("analysis").loc["wilcoxon", "estimate"])
    crude = rows.set_index("analysis").loc["crude_diff_means", "estimate"]
    t = cols["treated"] == 1
    assert crude == pytest.approx(np.nanmean(y[t]) - np.nanmean(y[~t]), rel=1e-10)


def test_truth_matched_differs_from_att_under_heterogeneity():
    rng = np.random.default_rng(5)
    cols, pot = _toy_cohort(rng)
    d0, _ = pot[("y", "m1")]
    d1 = d0 + cols["x"]  # effect = x: treated (high x) have larger effects
    rows = pd.DataFrame(analyse(cols, {("y", "m1"): (d0, d1)}, SPEC, rng))
    r = rows.iloc[0]
    t = cols["treated"] == 1
    alive = ~np.isnan(d0)
    assert r["truth_att"] == pytest.approx(cols["x"][t & alive].mean())
    assert r["truth_ate"] == pytest.approx(cols["x"][alive].mean())
    assert r["truth_att"] > r["truth_ate"]
    # the effect among the matched treated, as the estimator weights them (independent re-match)
    from sim.methods.matching import match
    from sim.methods.propensity import fit_propensity

    X = np.column_stack([cols["x"], cols["male"]])
    res = match(fit_propensity(X, cols["treated"]).ps, t, caliper=0.2)
    eff = cols["x"][res.treated_idx][alive[res.treated_idx]]
    assert r["truth_matched"] == pytest.approx(eff.mean())


def test_single_group_cohort_is_an_error():
    cols, pot = _toy_cohort(np.random.default_rng(1))
    cols["treated"] = np.ones_like(cols["treated"])
    with pytest.raises(ValueError, match="single treatment group"):
        analyse(cols, pot, SPEC, np.random.default_rng(0))


def test_unknown_covariate_names_the_column():
    cols, pot = _toy_cohort(np.random.default_rng(1))
    spec = MethodSpec(ps_covariates=("x", "nope"), balance_covariates=("x",), outcomes=("y",), times=("m1",))
    with pytest.raises(ValueError, match="nope"):
        analyse(cols, pot, spec, np.random.default_rng(0))


def test_no_pairs_gives_nan_rows_not_an_exception():
    cols, pot = _toy_cohort(np.random.default_rng(2))
    spec = MethodSpec(ps_covariates=("x",), caliper=1e-9, balance_covariates=("x",), outcomes=("y",),
                      times=("m1",), analyses=("diff_means",))
    rows = analyse(cols, pot, spec, np.random.default_rng(0))
    assert rows[0]["n_pairs"] == 0 and np.isnan(rows[0]["p_value"])


def test_ratio_two_analyses_matched_sets_not_links():
    """1:2 matching: each treated unit is compared with the mean of its two controls, once."""
    cols, pot = _toy_cohort(np.random.default_rng(8), n=600)
    cols["treated"] = (np.arange(600) % 4 == 0).astype(np.int8)  # 150 treated, 450 controls
    spec = MethodSpec(ps_covariates=("x",), caliper=None, ratio=2, balance_covariates=("x",), outcomes=("y",),
                      times=("m1",), analyses=("paired_t", "diff_means"))
    rows = pd.DataFrame(analyse(cols, pot, spec, np.random.default_rng(0))).set_index("analysis")
    from sim.methods.matching import match
    from sim.methods.propensity import fit_propensity

    res = match(fit_propensity(cols["x"][:, None], cols["treated"]).ps, cols["treated"].astype(bool),
                caliper=None, ratio=2)
    d0, _ = pot[("y", "m1")]  # null effect: observed = d0
    yt, yc = [], []
    for t in np.unique(res.treated_idx):
        c = res.control_idx[res.treated_idx == t]
        vals = d0[c][~np.isnan(d0[c])]
        yt.append(d0[t])
        yc.append(vals.mean() if vals.size else np.nan)
    yt, yc = np.array(yt), np.array(yc)
    ok = ~np.isnan(yt) & ~np.isnan(yc)
    assert rows.loc["paired_t", "p_value"] == pytest.approx(stats.ttest_rel(yt[ok], yc[ok]).pvalue, rel=1e-9)
    assert rows.loc["paired_t", "n_used_treated"] == ok.sum() <= len(np.unique(res.treated_idx))


def test_an_odds_ratio_gets_no_bias_against_the_differences_and_the_truths_stay():
    """Tags: fisher_exact's odds ratio is not on the scale of the true effects (differences), so it
    gets its empirical SE and rejection rate but no bias or coverage against them; the true effects'
    means stay in every analysis' rows (a rank test's too)."""
    from sim.jobs.psm import measure_tables
    from sim.methods.pipeline import TRUTH_NAMES

    rng = np.random.default_rng(1)
    n = 40
    rows = pd.concat([pd.DataFrame({"condition": 0, "outcome": "y", "timepoint": "m1", "analysis": a,
                                    "estimate": est, "se": 0.1, "ci_low": est - 0.2, "ci_high": est + 0.2,
                                    "p_value": rng.random(n), "favours": 1.0,
                                    **{t: 1.0 for t in TRUTH_NAMES}})
                      for a, est in (("fisher_exact", 1.0 + rng.random(n)), ("diff_means", 1.0 + rng.random(n)),
                                     ("wilcoxon", np.full(n, np.nan)))], ignore_index=True)
    table = pd.concat(measure_tables(rows, "matched", 0.05), ignore_index=True)
    values = table.set_index(["analysis", "measure"])["value"]
    got = lambda a, m: values.get((a, m), np.nan)  # noqa: E731  (a measure without rows: NaN)
    assert np.isnan(got("fisher_exact", "bias")) and np.isnan(got("fisher_exact", "coverage"))
    assert np.isfinite(got("fisher_exact", "empse")) and np.isfinite(got("fisher_exact", "rejection"))
    assert np.isfinite(got("diff_means", "bias")) and np.isfinite(got("diff_means", "coverage"))
    for a in ("fisher_exact", "diff_means", "wilcoxon"):
        assert got(a, "true_matched") == 1.0

"""The estimators on matched samples (sim.methods.estimators.matched): regression after the paper's
matching and the full-matching difference against statsmodels' WLS with cluster-robust
covariances (and the CR3 jackknife against explicit leave-one-set-out refits), subclassification
against the stratified formulas written out again, the failure modes, and (slow) coverage in a
simulation with a constant effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit

import sim.methods.estimators.matched as M
from sim.methods.estimators import ESTIMAND_OF, ESTIMATORS, CohortView
from sim.methods.matching import match
from sim.methods.matching.full import full_match
from sim.methods.matching.subclass import merge_empty, subclassify
from sim.methods.propensity import fit_propensity

TAU = 1.0


def simulate(rng, n=263, miss=0.15, ratio=1, beta=(1.0, 0.5, -0.5)) -> CohortView:
    """~72 % treated as the study (189 of 263), a linear outcome with the constant effect TAU,
    outcomes missing at random, the PS fitted on everyone, the paper's greedy caliper matching."""
    X = rng.normal(size=(n, 3))
    t = rng.random(n) < expit(1.0 + X @ np.array([0.8, -0.6, 0.5]))
    base = 0.5 * X[:, 0] + rng.normal(size=n)
    y = X @ np.asarray(beta) + 0.5 * base + TAU * t + rng.normal(size=n)
    y[rng.random(n) < miss] = np.nan
    e = fit_propensity(X, t).ps
    m = match(e, t, caliper=0.2, ratio=ratio)
    return CohortView(X, t, y, base, e, m.pair_id, m.weights)


def with_(view: CohortView, **kw) -> CohortView:
    f = {k: getattr(view, k) for k in ("X", "treated", "y", "baseline", "ps", "pair_id", "match_weights")}
    return CohortView(**{**f, **kw})


def sm_cluster(y, D, w, groups):
    fit = sm.WLS(y, D, weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return np.asarray(fit.params), np.asarray(fit.cov_params())


def test_registered_with_their_estimands():
    assert {k: ESTIMAND_OF[k] for k in ("regression_matched", "full_matching", "subclass")} == {
        "regression_matched": "matched", "full_matching": "att", "subclass": "att"}


def test_wls_cluster_equals_statsmodels_and_the_jackknife():
    rng = np.random.default_rng(1)
    n = 120
    D = np.column_stack([np.ones(n), rng.random(n) < 0.5, rng.normal(size=(n, 2))])
    y = D @ [1.0, 2.0, 0.5, -1.0] + rng.normal(size=n)
    w = rng.uniform(0.2, 3.0, n)
    g = rng.integers(0, 30, n)
    beta, cov, G = M.wls_cluster(y, D, w, g)
    b_sm, c_sm = sm_cluster(y, D, w, g)
    np.testing.assert_allclose(beta, b_sm, rtol=1e-10)
    np.testing.assert_allclose(cov, c_sm, rtol=1e-10, atol=1e-14)
    _, cr3, _ = M.wls_cluster(y, D, w, g, "CR3")
    loo = np.array([sm.WLS(y[g != k], D[g != k], weights=w[g != k]).fit().params for k in np.unique(g)])
    np.testing.assert_allclose(cr3, (G - 1) / G * (loo - beta).T @ (loo - beta), rtol=1e-9)


@pytest.mark.parametrize("ratio", [1, 2])
def test_regression_matched_is_statsmodels_wls_clustered_by_pair(ratio):
    v = simulate(np.random.default_rng(2), ratio=ratio)
    r = ESTIMATORS["regression_matched"](v, 0.05)
    rows = v.seen & (v.pair_id >= 0)
    D = np.column_stack([np.ones(rows.sum()), v.treated[rows], v.baseline[rows], v.X[rows]])
    b, c = sm_cluster(v.y[rows], D, v.match_weights[rows], v.pair_id[rows])
    G = np.unique(v.pair_id[rows]).size
    assert r.estimate == pytest.approx(b[1], rel=1e-10)
    assert r.se == pytest.approx(math.sqrt(c[1, 1]), rel=1e-10)
    from scipy import stats
    q = stats.t(G - 1).ppf(0.975)
    assert (r.ci_low, r.ci_high) == pytest.approx((b[1] - q * r.se, b[1] + q * r.se), rel=1e-10)
    assert r.p_value == pytest.approx(2 * stats.t(G - 1).sf(abs(b[1] / r.se)), rel=1e-8)
    assert (r.n_treated, r.n_control) == (int((rows & v.treated).sum()), int((rows & ~v.treated).sum()))
    assert r.estimand == "matched" and r.reason == ""


def test_regression_matched_drops_an_aliased_covariate_as_lm():
    v = simulate(np.random.default_rng(3))
    X2 = np.column_stack([v.X, np.ones(len(v.y)), v.X[:, 0] * 2.0])  # constant and collinear columns
    a, b = ESTIMATORS["regression_matched"](v, 0.05), ESTIMATORS["regression_matched"](with_(v, X=X2), 0.05)
    assert b.estimate == pytest.approx(a.estimate, rel=1e-9) and b.se == pytest.approx(a.se, rel=1e-9)


def test_full_matching_is_the_weighted_difference_with_a_jackknife_se():
    v = simulate(np.random.default_rng(4))
    r = ESTIMATORS["full_matching"](v, 0.05)
    fm = full_match(v.ps, v.treated)
    s, t, w = v.seen, v.treated, fm.weights
    diff = np.average(v.y[s & t], weights=w[s & t]) - np.average(v.y[s & ~t], weights=w[s & ~t])
    assert r.estimate == pytest.approx(diff, rel=1e-10)
    D = np.column_stack([np.ones(s.sum()), t[s]])
    sets = np.unique(fm.set_id[s])
    loo = np.array([sm.WLS(v.y[s][fm.set_id[s] != k], D[fm.set_id[s] != k], weights=w[s][fm.set_id[s] != k])
                    .fit().params[1] for k in sets])
    assert r.se == pytest.approx(math.sqrt((sets.size - 1) / sets.size * np.sum((loo - diff) ** 2)), rel=1e-8)
    assert (r.n_treated, r.n_control) == (int((s & t).sum()), int((s & ~t).sum()))
    assert r.estimand == "att"
    again = ESTIMATORS["full_matching"](with_(v, y=v.y + 1.0), 0.05)  # another outcome: cached matching
    assert again.estimate == pytest.approx(r.estimate, abs=1e-10)


def test_subclass_is_the_stratified_estimator_among_the_seen():
    v = simulate(np.random.default_rng(5))
    r = ESTIMATORS["subclass"](v, 0.05)
    s, t = v.seen, v.treated
    sub = merge_empty(subclassify(v.ps, t, 5).subclass[s], t[s])
    y, ts = v.y[s], t[s]
    est = var = 0.0
    for k in np.unique(sub):
        a, b = y[(sub == k) & ts], y[(sub == k) & ~ts]
        share = a.size / ts.sum()
        est += share * (a.mean() - b.mean())
        var += share ** 2 * (a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert r.estimate == pytest.approx(est, rel=1e-10) and r.se == pytest.approx(math.sqrt(var), rel=1e-10)
    # the same point estimate as the weighted difference with MatchIt's ATT weights among the seen
    n1, n0 = np.bincount(sub[ts]), np.bincount(sub[~ts])
    w0 = (n1 / n0)[sub[~ts]]
    assert r.estimate == pytest.approx(y[ts].mean() - np.average(y[~ts], weights=w0), rel=1e-10)
    assert r.estimand == "att" and r.ci_low < r.estimate < r.ci_high


def test_subclass_borrows_the_pooled_variance_for_a_single_unit():
    y = np.array([1.0, 2.0, 3.0, 0.0, 1.0, 5.0, 7.0, 4.0])
    t = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    sub = np.array([0, 0, 0, 0, 0, 1, 1, 1])  # subclass 1 has one control
    est, se = M._stratified(y, t, sub, "att")
    pooled0 = np.var([0.0, 1.0], ddof=1)
    v1 = [np.var([1, 2, 3], ddof=1), np.var([5, 7], ddof=1)]
    share = np.array([3, 2]) / 5
    assert est == pytest.approx(share @ [2.0 - 0.5, 6.0 - 4.0])
    assert se == pytest.approx(math.sqrt(share[0] ** 2 * (v1[0] / 3 + pooled0 / 2) + share[1] ** 2 * (v1[1] / 2 + pooled0)))


def test_failures_are_named():
    v = simulate(np.random.default_rng(6))
    n = len(v.y)
    r = ESTIMATORS["regression_matched"](with_(v, pair_id=-np.ones(n, int), match_weights=np.zeros(n)), 0.05)
    assert math.isnan(r.estimate) and r.reason == "no matched pairs"
    no_controls = with_(v, y=np.where(v.treated, v.y, np.nan))
    for name in ("regression_matched", "full_matching", "subclass"):
        r = ESTIMATORS[name](no_controls, 0.05)
        assert math.isnan(r.estimate) and "empty arm" in r.reason, (name, r.reason)
    bad = with_(v, baseline=np.where(np.arange(n) == np.flatnonzero(v.seen & (v.pair_id >= 0))[0], np.nan, v.baseline))
    assert "non-finite" in ESTIMATORS["regression_matched"](bad, 0.05).reason
    assert "PS" in ESTIMATORS["full_matching"](with_(v, ps=np.where(np.arange(n) == 0, 1.0, v.ps)), 0.05).reason
    one_control = with_(v, y=np.where(~v.treated & (np.cumsum(~v.treated) > 1), np.nan, v.y))
    assert "singular" in ESTIMATORS["full_matching"](one_control, 0.05).reason
    assert "variance" in ESTIMATORS["subclass"](one_control, 0.05).reason


@pytest.mark.slow
def test_coverage_with_a_constant_effect():
    """200 cohorts: each CI covers TAU about as often as it should, within 3.5 MCSE of 0.95 (full
    matching's jackknife SE may be conservative: only too low a coverage fails); the bias within
    3.5 MCSE of 0 for the regression (correct outcome model), and small for the others (residual
    confounding within sets and subclasses)."""
    rng = np.random.default_rng(20261206)
    R = 200
    est = {k: [] for k in ("regression_matched", "full_matching", "subclass")}
    cover = {k: 0 for k in est}
    for _ in range(R):
        v = simulate(rng)
        for k in est:
            r = ESTIMATORS[k](v, 0.05)
            est[k].append(r.estimate)
            cover[k] += r.ci_low <= TAU <= r.ci_high
    mcse = math.sqrt(0.95 * 0.05 / R)
    for k in est:
        e = np.array(est[k])
        assert cover[k] / R > 0.95 - 3.5 * mcse, (k, cover[k] / R)
        limit = 3.5 * e.std() / math.sqrt(R) + (0 if k == "regression_matched" else 0.15)
        assert abs(e.mean() - TAU) < limit, (k, e.mean())
    assert cover["regression_matched"] / R < 0.95 + 3.5 * mcse

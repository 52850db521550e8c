"""Experiment austin2011 (sim/jobs/austin.py): Austin's (2011) data-generating mechanism, the
estimates against independent computations, determinism across chunking, and the crude bias
against its closed form."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats
from scipy.special import expit

from sim.api import compose
from sim.jobs.config import ConfigError
from sim.jobs.contract import prepare, run
from sim.jobs import austin as A
from sim.methods.matching import match
from sim.methods.propensity import fit_propensity

LOG_OR = tuple(math.log(v) for v in [1.1] * 3 + [1.25] * 3 + [1.5] * 3 + [2.0])
COEF = (1.1,) * 3 + (1.25,) * 3 + (1.5,) * 3 + (2.0,)
ERROR_VAR = 127.6056


@pytest.fixture(scope="module")
def plans():
    """The conditions' plans of the shipped config (beta = 1.25, 0), without running anything."""
    job, conds, plans = prepare(compose("austin2011", ["reps=2"]))
    return {c.factors["experiment.beta"]: p for c, p in zip(conds, plans)}


@pytest.fixture(scope="module")
def big_null(plans):
    """One large data set at beta = 0."""
    plan = dataclasses.replace(plans[0.0], n=1_000_000)
    return plan, A.simulate_data(plan, np.random.default_rng(2011))


def _population(a: float) -> tuple[float, float]:
    """P(Z = 1) and E[eta expit(a + eta)], eta ~ N(0, s^2), by quadrature (independent of the job)."""
    s = math.sqrt(sum(v * v for v in LOG_OR))
    dens = stats.norm(0, s).pdf
    share = integrate.quad(lambda e: expit(a + e) * dens(e), -12 * s, 12 * s, epsabs=1e-13)[0]
    m1 = integrate.quad(lambda e: e * expit(a + e) * dens(e), -12 * s, 12 * s, epsabs=1e-13)[0]
    return share, m1


# ----------------------------------------------------------------------------- the design
def test_config_is_austins_design(plans):
    for beta, p in plans.items():
        assert p.n == 10_000 and p.beta == beta and p.order == "random"
        assert p.caliper_scale == "logit" and p.caliper_sd == "pooled"
        np.testing.assert_allclose(p.treatment_log_or, LOG_OR)
        np.testing.assert_allclose(p.outcome_coef, COEF)
        assert p.error_sd ** 2 == pytest.approx(ERROR_VAR)
        assert p.calipers == (0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 2.5)
    assert set(plans) == {1.25, 0.0}
    # R^2 of the covariates = 0.13 (Austin's choice of the error variance)
    v = sum(b * b for b in COEF)
    assert v / (v + ERROR_VAR) == pytest.approx(0.13, abs=1e-6)


def test_intercept_and_closed_form_agree_with_quadrature(plans):
    a = plans[1.25].intercept
    a_quad = optimize.brentq(lambda x: _population(x)[0] - 0.25, -5, 5, xtol=1e-12)
    assert a == pytest.approx(a_quad, abs=1e-5)
    share, m1 = _population(a)
    s2 = sum(v * v for v in LOG_OR)
    # E[x_k | eta] = alpha_k eta / s^2, so E[x_k Z] = alpha_k m1 / s^2 and E[x_k] = 0
    gap = np.array(LOG_OR) * m1 / s2 * (1 / share + 1 / (1 - share))
    assert A.crude_bias_closed_form(LOG_OR, COEF, a) == pytest.approx(float(np.dot(COEF, gap)), rel=1e-5)


def test_treated_share_is_25_percent(big_null):
    plan, (X, z, y) = big_null
    mcse = math.sqrt(0.25 * 0.75 / plan.n)
    assert abs(z.mean() - 0.25) < 4 * mcse


def test_propensity_model_recovers_the_log_odds_ratios(big_null):
    plan, (X, z, y) = big_null
    n = 200_000
    fit = fit_propensity(X[:n], z[:n])
    truth = np.r_[plan.intercept, LOG_OR]
    assert fit.converged
    assert np.all(np.abs(fit.coef - truth) < 4 * fit.se), (fit.coef, truth, fit.se)


def test_error_variance_and_r2(big_null):
    plan, (X, z, y) = big_null
    eps = y - X @ np.array(COEF)  # beta = 0
    assert abs(eps.mean()) < 4 * math.sqrt(ERROR_VAR / plan.n)
    assert abs(eps.var(ddof=1) - ERROR_VAR) < 4 * ERROR_VAR * math.sqrt(2 / plan.n)
    r2 = 1 - eps.var() / y.var()
    assert r2 == pytest.approx(0.13, abs=0.004)


# ----------------------------------------------------------------------------- the estimates
def test_estimates_equal_independent_computations(plans):
    plan = dataclasses.replace(plans[1.25], n=3000, calipers=(0.1, 0.2, 2.5), order="largest")
    X, z, y = A.simulate_data(plan, np.random.default_rng(5))
    rows = A.analyse_data(plan, X, z, y, np.random.default_rng(0))
    assert list(rows["analysis"]) == ["crude", "matched", "matched", "matched"]
    crude = rows.iloc[0]
    welch = stats.ttest_ind(y[z], y[~z], equal_var=False)
    assert crude["estimate"] == pytest.approx(y[z].mean() - y[~z].mean(), rel=1e-12)
    ci = welch.confidence_interval(0.95)
    assert (crude["ci_low"], crude["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    fit = fit_propensity(X, z)
    for gamma in plan.calipers:
        m = match(fit.ps, z, caliper=gamma, caliper_scale="logit", caliper_sd="pooled", order="largest")
        r = rows[rows["caliper"] == gamma].iloc[0]
        yt, yc = y[m.treated_idx], y[m.control_idx]
        assert r["n_pairs"] == m.n_pairs == len(yt)
        assert r["estimate"] == pytest.approx(np.mean(yt - yc), rel=1e-12)
        t = stats.ttest_rel(yt, yc)
        ci = t.confidence_interval(0.95)
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
        assert r["p_value"] == pytest.approx(t.pvalue, rel=1e-6)
        assert r["truth"] == 1.25
    # wider caliper: at least as many pairs (greedy, same order)
    assert rows["n_pairs"].iloc[1] <= rows["n_pairs"].iloc[3]


def test_random_order_is_shared_by_the_calipers(plans):
    """Random order: one permutation per replicate for every caliper, from the replicate's rng."""
    plan = dataclasses.replace(plans[0.0], n=2000, calipers=(0.2, 0.3))
    a = A.austin_replicate(plan, np.random.default_rng(9))
    b = A.austin_replicate(plan, np.random.default_rng(9))
    pd.testing.assert_frame_equal(a, b)
    X, z, y = A.simulate_data(plan, np.random.default_rng(3))
    wide = dataclasses.replace(plan, calipers=(1e6,))
    r1 = A.analyse_data(wide, X, z, y, np.random.default_rng(1))
    r2 = A.analyse_data(wide, X, z, y, np.random.default_rng(2))
    assert r1["n_pairs"].iloc[1] == r2["n_pairs"].iloc[1] == z.sum()  # everyone matched either way


def test_pct_bias_removed_and_mse_contrast_by_hand():
    rng = np.random.default_rng(0)
    reps = 50
    e_c = 3 + rng.normal(size=reps)
    e_m = {0.2: 0.1 + 0.3 * rng.normal(size=reps), 1.0: 0.5 + 0.3 * rng.normal(size=reps)}
    rows = [{"condition": 0, "rep": r, "caliper": np.nan, "analysis": "crude", "estimate": e_c[r], "truth": 0.0}
            for r in range(reps)]
    rows += [{"condition": 0, "rep": r, "caliper": c, "analysis": "matched", "estimate": e[r], "truth": 0.0}
             for c, e in e_m.items() for r in range(reps)]
    d = pd.DataFrame(rows)
    pbr = A.pct_bias_removed_rows(d).set_index("caliper")
    for c, e in e_m.items():
        value = 100 * (1 - e.mean() / e_c.mean())
        # delta method on the ratio R = mean(e_m) / mean(e_c)
        g = np.array([1 / e_c.mean(), -e.mean() / e_c.mean() ** 2])
        var = g @ np.cov(np.vstack([e, e_c])) @ g / reps
        assert pbr.loc[c, "value"] == pytest.approx(value)
        assert pbr.loc[c, "mcse"] == pytest.approx(100 * math.sqrt(var))
    diff = A.mse_difference_rows(d, 0.2).set_index("caliper")
    dd = e_m[1.0] ** 2 - e_m[0.2] ** 2
    assert diff.loc[1.0, "value"] == pytest.approx(dd.mean())
    assert diff.loc[1.0, "mcse"] == pytest.approx(dd.std(ddof=1) / math.sqrt(reps))
    assert diff.loc[0.2, "value"] == 0


def test_bad_settings_name_the_key():
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="experiment.calipers"):  # through the whole preparation
        prepare(compose("austin2011", ["experiment.calipers=[0.2,-1]"]))
    base = OmegaConf.to_container(compose("austin2011"), resolve=True)
    for key, value, message in (("reference_caliper", 0.25, "experiment.reference_caliper"),
                                ("outcome_coef", [1.0, 2.0], "experiment.outcome_coef"),
                                ("matching", {"order": "sideways", "caliper_scale": "logit", "caliper_sd": "pooled"},
                                 "experiment.matching.order"),
                                ("treated_share", 0.9, "experiment.treated_share"),
                                ("n", 10.5, "experiment.n")):
        cfg = {**base, "experiment": {**base["experiment"], key: value}}
        with pytest.raises(ConfigError, match=message):
            A.settings_of(cfg)


# ----------------------------------------------------------------------------- the engine
SMALL = ["reps=5", "seed=3", "experiment.n=1500", "experiment.calipers=[0.1,0.2,1.0]", "progress=false"]


def test_results_do_not_depend_on_chunking():
    a = run(compose("austin2011", [*SMALL, "n_jobs=1", "chunk_size=1"]))
    b = run(compose("austin2011", [*SMALL, "n_jobs=1", "chunk_size=3"]))
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert len(a.failures) == 0
    assert set(a.summary["beta"]) == {1.25, 0.0}
    assert {"bias", "mse", "coverage", "rejection", "pct_bias_removed", "mse_minus_ref", "mean_n_pairs",
            "n_failed"} <= set(a.summary["measure"])
    assert len(a.replicates) == 2 * 5 * 4  # 2 betas x 5 reps x (crude + 3 calipers)
    assert a.tables["design"]["treated_share"].tolist() == pytest.approx([0.25, 0.25], abs=1e-6)


# ----------------------------------------------------------------------------- statistics
def test_crude_bias_matches_closed_form(plans):
    """beta = 0, no matching: the mean crude difference in means over data sets of n = 5000
    against sum_k b_k (E[x_k | Z=1] - E[x_k | Z=0]) by quadrature."""
    plan = dataclasses.replace(plans[0.0], n=5000)
    share, m1 = _population(plan.intercept)
    s2 = sum(v * v for v in LOG_OR)
    truth = float(np.dot(COEF, np.array(LOG_OR) * m1 / s2 * (1 / share + 1 / (1 - share))))
    rng = np.random.default_rng(77)
    est = []
    for _ in range(400):
        X, z, y = A.simulate_data(plan, rng)
        est.append(y[z].mean() - y[~z].mean())
    est = np.array(est)
    mcse = est.std(ddof=1) / math.sqrt(est.size)
    assert abs(est.mean() - truth) < 4 * mcse, (est.mean(), truth, mcse)

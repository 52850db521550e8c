"""Tests for sim.methods.propensity: agreement with statsmodels, robustness."""

import warnings

import numpy as np
import pytest
import statsmodels.api as sm

from sim.methods.propensity import fit_propensity, odds_ratio_table


def paper_like(rng, n=263):
    age = rng.normal(68, 12, n).round()
    male = rng.integers(0, 2, n)
    escc = rng.integers(0, 4, n)
    frankel = rng.integers(0, 2, n)
    emerg = rng.integers(0, 2, n)
    X = np.column_stack([age, male, escc, frankel, emerg]).astype(float)
    eta = 0.9 + 0.02 * (age - 68) + 0.2 * male + 0.3 * escc + 0.6 * frankel - 0.4 * emerg
    t = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return X, t


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_statsmodels(seed):
    rng = np.random.default_rng(seed)
    X, t = paper_like(rng, n=[263, 500, 80, 2000, 263, 150, 263, 1000][seed])
    fit = fit_propensity(X, t)
    ref = sm.Logit(t, sm.add_constant(X)).fit(disp=0, tol=1e-12, maxiter=100)
    assert fit.converged and not fit.separation and fit.message == "ok"
    np.testing.assert_allclose(fit.coef, ref.params, atol=1e-6)
    np.testing.assert_allclose(fit.se, ref.bse, atol=1e-6)
    np.testing.assert_allclose(fit.ps, ref.predict(), atol=1e-6)
    np.testing.assert_allclose(fit.logit_ps, np.log(fit.ps / (1 - fit.ps)), atol=1e-9)
    assert fit.loglik == pytest.approx(ref.llf, abs=1e-6)


def test_odds_ratio_table_against_statsmodels():
    rng = np.random.default_rng(42)
    X, t = paper_like(rng)
    names = ["age", "male", "escc", "frankel_abc", "emergency"]
    fit = fit_propensity(X, t)
    tab = odds_ratio_table(fit, names)
    ref = sm.Logit(t, sm.add_constant(X)).fit(disp=0)
    ci = np.exp(ref.conf_int())
    assert tab["covariate"].tolist() == names
    np.testing.assert_allclose(tab["odds_ratio"], np.exp(ref.params[1:]), rtol=1e-6)
    np.testing.assert_allclose(tab["ci_low"], ci[1:, 0], rtol=1e-6)
    np.testing.assert_allclose(tab["ci_high"], ci[1:, 1], rtol=1e-6)
    np.testing.assert_allclose(tab["p_value"], ref.pvalues[1:], rtol=1e-5, atol=1e-12)
    full = odds_ratio_table(fit, names, include_intercept=True)
    assert full["covariate"].iloc[0] == "(intercept)" and len(full) == 6
    with pytest.raises(ValueError, match="names"):
        odds_ratio_table(fit, names[:3])


def _assert_sane(fit, n):
    assert fit.ps.shape == (n,)
    assert np.all(np.isfinite(fit.ps)) and np.all((fit.ps > 0) & (fit.ps < 1))
    assert np.all(np.isfinite(fit.logit_ps))
    assert np.all(np.isfinite(fit.coef))


def test_complete_separation_flags_not_crash():
    x = np.arange(20.0)[:, None]
    t = (x[:, 0] >= 10).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarnings either
        fit = fit_propensity(x, t)
    _assert_sane(fit, 20)
    assert fit.separation
    assert "separation" in fit.message


def test_quasi_separation_flags():
    x = np.r_[np.arange(10.0), 5.0][:, None]
    t = np.r_[(np.arange(10) >= 5).astype(int), 0]
    fit = fit_propensity(np.column_stack([x, np.random.default_rng(0).normal(size=11)]), t)
    _assert_sane(fit, 11)
    assert fit.separation


def test_all_treated_flags():
    fit = fit_propensity(np.random.default_rng(1).normal(size=(5, 2)), np.ones(5, int))
    _assert_sane(fit, 5)
    assert fit.separation


def test_tiny_sample_and_constant_column():
    X = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
    fit = fit_propensity(X, np.array([0, 1, 1]))
    _assert_sane(fit, 3)
    assert fit.coef[1] == 0.0 and np.isnan(fit.se[1])
    assert "constant" in fit.message


def test_constant_column_otherwise_like_dropping_it():
    rng = np.random.default_rng(3)
    X, t = paper_like(rng)
    Xc = np.column_stack([X, np.full(len(t), 7.0)])
    a = fit_propensity(X, t)
    b = fit_propensity(Xc, t)
    np.testing.assert_allclose(b.coef[:-1], a.coef, atol=1e-8)
    np.testing.assert_allclose(b.ps, a.ps, atol=1e-10)
    assert b.coef[-1] == 0 and np.isnan(b.se[-1])


def test_collinear_columns_do_not_crash():
    rng = np.random.default_rng(4)
    x = rng.normal(size=50)
    X = np.column_stack([x, 2 * x + 1])
    t = (rng.random(50) < 0.5).astype(int)
    fit = fit_propensity(X, t)
    _assert_sane(fit, 50)
    assert "singular" in fit.message
    ref = sm.Logit(t, sm.add_constant(x)).fit(disp=0)
    np.testing.assert_allclose(fit.ps, ref.predict(), atol=1e-6)


def test_one_dimensional_X_and_bool_treatment():
    rng = np.random.default_rng(5)
    x = rng.normal(size=100)
    t = rng.random(100) < 1 / (1 + np.exp(-x))
    fit = fit_propensity(x, t)
    ref = sm.Logit(t.astype(int), sm.add_constant(x)).fit(disp=0)
    np.testing.assert_allclose(fit.coef, ref.params, atol=1e-6)


@pytest.mark.parametrize(
    "X, t, msg",
    [
        (np.ones((3, 2)), np.array([0, 1]), "treated"),
        (np.ones((3, 2)), np.array([0, 1, 2]), "treated"),
        (np.array([[1.0], [np.nan], [2.0]]), np.array([0, 1, 1]), "X"),
        (np.ones((2, 2, 2)), np.array([0, 1]), "X"),
    ],
)
def test_validation(X, t, msg):
    with pytest.raises(ValueError, match=msg):
        fit_propensity(X, t)


def test_max_iter_validation():
    with pytest.raises(ValueError, match="max_iter"):
        fit_propensity(np.ones((3, 1)), np.array([0, 1, 1]), max_iter=0)

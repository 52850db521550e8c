"""sim.numerics: the one home of the logistic function, the Newton logistic fits and the intercept
that keeps a treated share. The variants agree with each other (to the last bit where they must
not differ, to rounding where they may) and with their definitions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import special

from sim import numerics as N

SIM = Path(__file__).resolve().parents[1] / "sim"


def _logistic_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n), rng.integers(0, 4, n)])
    beta = np.array([-0.3, 0.8, -0.5, 0.4])
    p = special.expit(beta[0] + X @ beta[1:])
    return X, p, (rng.random(n) < p).astype(float), beta


def test_expit_variants_agree_to_rounding():
    x = np.concatenate([np.linspace(-40, 40, 100_001), [-1000.0, -745.0, 0.0, 745.0, 1000.0]])
    a, b = N.expit(x), N.expit_numpy(x)
    np.testing.assert_array_equal(a, special.expit(x))  # the cohort model's is scipy's, exactly
    np.testing.assert_allclose(b, a, rtol=4 * np.finfo(float).eps, atol=1e-300)  # (subnormals at -745)
    assert np.any(a != b)  # ... but not to the last bit: why each caller keeps its own
    assert np.all((b >= 0) & (b <= 1)) and b[x == 0.0][0] == 0.5
    with np.errstate(over="raise"):
        N.expit_numpy(np.array([-1e308, 1e308]))  # no overflow


def test_fractional_fit_recovers_a_population_model_exactly():
    """y = the true probabilities: the score vanishes at the true coefficients."""
    X, p, _, beta = _logistic_data(5_000, 1)
    np.testing.assert_allclose(N.fit_logit_fractional(X, p), beta, atol=1e-10)


def test_the_two_fits_agree_on_binary_data():
    X, _, y, _ = _logistic_data(3_000, 2)
    frac = N.fit_logit_fractional(X, y)
    fit = N.fit_logit_binary(X, y)
    assert fit.converged and not fit.separation and fit.message == "ok"
    np.testing.assert_allclose(fit.coef, frac, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fit.eta, frac[0] + X @ frac[1:], atol=1e-8)


def test_binary_fit_flags_separation_and_never_raises():
    x = np.arange(10.0)[:, None]
    fit = N.fit_logit_binary(x, (x[:, 0] > 4.5).astype(float))
    assert fit.separation and "separation" in fit.message
    const = N.fit_logit_binary(np.column_stack([x[:, 0], np.ones(10)]), np.tile([0.0, 1.0], 5))
    assert const.coef[2] == 0.0 and np.isnan(const.se[2]) and "constant" in const.message


@pytest.mark.parametrize("bracket", [None, N.INTERCEPT_BRACKET])
def test_intercept_for_share_keeps_the_share(bracket):
    eta = np.random.default_rng(3).normal(size=10_000) * 2.0
    a = N.intercept_for_share(eta, 189 / 263, bracket=bracket)
    assert abs(N.expit(a + eta).mean() - 189 / 263) < 1e-12


def test_the_data_bracket_holds_any_linear_predictor():
    """Far from 0 the cohort model's fixed bracket cannot hold the root; the data's always does."""
    eta = np.random.default_rng(4).normal(size=1_000) + 100.0
    a = N.intercept_for_share(eta, 0.3)
    assert abs(N.expit(a + eta).mean() - 0.3) < 1e-12
    with pytest.raises(ValueError):
        N.intercept_for_share(eta, 0.3, bracket=N.INTERCEPT_BRACKET)


def test_one_home():
    """No module of sim defines its own logistic function, Newton logistic fit or share intercept
    (their home: sim.numerics, and its compiled twin for chunks, sim.numerics.batch)."""
    pattern = ("def expit", "def _logit_fit", "def _loglik", "def _solve_sym", "lambda a: expit(")
    for path in SIM.rglob("*.py"):
        if path.parent.name == "numerics":
            continue
        text = path.read_text()
        for p in pattern:
            assert p not in text, (path, p)

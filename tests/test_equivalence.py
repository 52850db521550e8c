"""TOST against statsmodels' ttost_ind / ttost_paired (1e-10), from summaries, and the CI rule."""

import math

import numpy as np
import pytest
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from sim.methods.sensitivity.equivalence import TostResult, tost, tost_from_summary, tost_summary
from sim.methods.outcomes import TestResult


def data(seed, n1=45, n0=38, shift=1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 12, n1), rng.normal(0, 16, n0)


@pytest.mark.parametrize("usevar", ["unequal", "pooled"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", [3.0, 9.25, 20.0])
def test_unpaired_matches_statsmodels(usevar, seed, margin):
    a, b = data(seed)
    r = tost(a, b, margin, usevar=usevar)
    p, (t1, p1, df1), (t2, p2, df2) = ttost_ind(a, b, -margin, margin, usevar=usevar)
    assert r.p_value == pytest.approx(p, abs=1e-10)
    assert r.p_lower == pytest.approx(p1, abs=1e-10) and r.p_upper == pytest.approx(p2, abs=1e-10)
    assert r.df == pytest.approx(df1, rel=1e-10)
    assert r.statistic == pytest.approx(t1 if p1 >= p2 else t2, rel=1e-10)
    assert r.equivalent == (p <= 0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_matches_statsmodels(seed):
    a, b = data(seed, 40, 40)
    a[5] = np.nan  # a death: that pair is dropped
    ok = ~np.isnan(a)
    r = tost(a, b, 9.25, paired=True)
    p, (_, p1, df), (_, p2, _) = ttost_paired(a[ok], b[ok], -9.25, 9.25)
    assert r.p_value == pytest.approx(p, abs=1e-10)
    assert (r.p_lower, r.p_upper) == pytest.approx((p1, p2), abs=1e-10)
    assert r.df == df == 38 and r.n_treated == 39


def test_ci_rule_and_result_type():
    """Equivalent iff the (1 - 2 alpha) CI lies inside ±margin; the CI is est ± t(1-alpha) se."""
    from scipy import stats

    a, b = data(3, 200, 200, shift=0.5)
    r = tost(a, b, 5.0)
    assert isinstance(r, TostResult) and isinstance(r, TestResult)
    q = stats.t.ppf(0.95, r.df)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.estimate - q * r.se, r.estimate + q * r.se))
    for m in (1.0, 2.0, 3.0, 4.0, 6.0):
        x = tost(a, b, m)
        assert x.equivalent == (-m < x.ci_low and x.ci_high < m)
    r80 = tost(a, b, 5.0, alpha=0.1)
    assert r80.ci_high - r80.ci_low < r.ci_high - r.ci_low


def test_from_summary_matches_statsmodels_on_data_with_those_moments():
    rng = np.random.default_rng(0)

    def with_moments(m, s, n):
        z = rng.normal(size=n)
        return m + s * (z - z.mean()) / z.std(ddof=1)

    m1, s1, n1, m0, s0, n0 = 12.3, 20.1, 51, 9.8, 24.7, 51  # a Table-5-like row
    a, b = with_moments(m1, s1, n1), with_moments(m0, s0, n0)
    for usevar in ("unequal", "pooled"):
        r = tost_from_summary(m1, s1, n1, m0, s0, n0, 9.25, usevar=usevar)
        assert r.p_value == pytest.approx(ttost_ind(a, b, -9.25, 9.25, usevar=usevar)[0], abs=1e-10)
        assert r.p_value == pytest.approx(tost(a, b, 9.25, usevar=usevar).p_value, abs=1e-12)


def test_summary_and_degenerate():
    a, b = data(4)
    s = tost_summary(a, b, mcid=9.25)
    r = tost(a, b, 9.25)
    assert s == {"tost_p": r.p_value, "equivalent": float(r.equivalent), "ci90_low": r.ci_low,
                 "ci90_high": r.ci_high}
    few = tost([1.0], [2.0, 3.0], 1.0)
    assert math.isnan(few.p_value) and few.reason and not few.equivalent
    assert math.isnan(tost_summary([1.0], [2.0, 3.0], mcid=1.0)["equivalent"])
    flat = tost([1.0, 1.0], [1.0, 1.0], 1.0)
    assert "zero variance" in flat.reason


@pytest.mark.parametrize("call, match", [
    (lambda: tost([1, 2], [3, 4], 0), "margin"),
    (lambda: tost([1, 2], [3, 4], float("inf")), "margin"),
    (lambda: tost([1, 2], [3, 4], 1, alpha=0.5), "alpha"),
    (lambda: tost([1, 2], [3, 4], 1, usevar="welch"), "usevar"),
    (lambda: tost([1, 2], [3, 4, 5], 1, paired=True), "same length"),
    (lambda: tost_from_summary(1, -1, 10, 0, 1, 10, 1), "s1"),
    (lambda: tost_from_summary(1, 1, 1, 0, 1, 10, 1), "n1"),
    (lambda: tost_from_summary(1, 1, 10, 0, 1, 10.5, 1), "n0"),
    (lambda: tost_from_summary(float("nan"), 1, 10, 0, 1, 10, 1), "m1"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

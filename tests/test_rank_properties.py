"""Property-based tests (hypothesis) for the rank tests of sim.methods.outcomes.

* ``wilcoxon_ranksum`` and ``signed_rank`` depend on the data only through ranks (and signs):
  the same p-value and statistic when the observations are reordered (pairs kept together for
  the signed-rank test), when the arms are swapped, when a strictly increasing transform is
  applied to the data (rank-sum), and when the paired differences are transformed keeping their
  signs and the order of their absolute values (signed-rank, e.g. d -> sign(d) |d|^3).
* They equal scipy on inputs with ties and NaNs: ``scipy.stats.mannwhitneyu(method="asymptotic",
  use_continuity=True)`` (two-sided) after dropping NaNs per arm, and ``scipy.stats.wilcoxon``
  with its defaults (zeros dropped, no continuity correction) after dropping incomplete pairs,
  using the method the module documents: exact for <= 50 non-zero differences without ties
  or zeros, the normal approximation otherwise (scipy would run a permutation test for <= 13
  pairs with ties or zeros: the module's documented deviation).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.methods.outcomes import signed_rank, wilcoxon_ranksum

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAN = float("nan")

value = st.one_of(
    st.integers(-4, 4).map(float),  # ordinal-like change scores: many ties
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    st.just(NAN),  # e.g. death before the visit
)
arm = st.lists(value, min_size=0, max_size=40).map(lambda v: np.array(v, dtype=float))


@st.composite
def pairs(draw, max_size=60):
    """(y_treated, y_control) aligned by pair; up to 60 pairs (the exact/normal switch is at 50)."""
    n = draw(st.integers(0, max_size))
    spec = draw(st.lists(st.tuples(value, st.integers(0, 2), value, st.sampled_from([-1.0, 1.0, 2.0])),
                         min_size=n, max_size=n))
    a = np.array([x for x, _, _, _ in spec], dtype=float)
    # the control is an independent value, equal to the treated one (a zero difference) or
    # one step away from it (tied |d|)
    b = np.array([(y, x, x + step)[kind] for x, kind, y, step in spec], dtype=float)
    return a, b


def _same(r1, r2, estimate=True):
    """Same p-value, statistic, counts (and estimate); NaN == NaN."""
    fields = ["p_value", "statistic", "n_treated", "n_control", "reason"] + (["estimate"] if estimate else [])
    for f in fields:
        x, y = getattr(r1, f), getattr(r2, f)
        assert x == y or (isinstance(x, float) and np.isnan(x) and np.isnan(y)), (f, x, y)


def _ranks(x):
    return stats.rankdata(x)


# a strictly increasing map on the reals; float rounding may merge values, which the tests
# exclude with assume() (the property is about order-preserving maps of the data as stored)
INCREASING = {
    "cube": lambda x: x**3,
    "affine": lambda x: 3.0 * x - 7.0,
    "arctan": np.arctan,
    "exp": lambda x: np.exp(x / 100.0),
    "shift": lambda x: x + 0.5,
}
# maps of a paired difference keeping its sign and the order of |d| (and zeros at zero)
SIGN_AND_ORDER = {
    "signed_cube": lambda d: np.sign(d) * np.abs(d) ** 3,
    "signed_log1p": lambda d: np.sign(d) * np.log1p(np.abs(d)),
    "scale": lambda d: 2.5 * d,
    "signed_sqrt": lambda d: np.sign(d) * np.sqrt(np.abs(d)),
}


# ---------------------------------------------------------------- rank-sum


@settings(max_examples=200, **SETTINGS)
@given(a=arm, b=arm, data=st.data())
def test_ranksum_invariant_to_order_and_arm_swap(a, b, data):
    r = wilcoxon_ranksum(a, b)
    pa = np.array(data.draw(st.permutations(range(a.size))), dtype=int)
    pb = np.array(data.draw(st.permutations(range(b.size))), dtype=int)
    _same(wilcoxon_ranksum(a[pa], b[pb]), r)
    s = wilcoxon_ranksum(b, a)  # swapped arms: same p, complementary estimate
    assert s.p_value == r.p_value or (np.isnan(s.p_value) and np.isnan(r.p_value))
    if not np.isnan(r.estimate):
        assert s.estimate == pytest.approx(1.0 - r.estimate, abs=1e-12)


@settings(max_examples=200, **SETTINGS)
@given(a=arm, b=arm, name=st.sampled_from(sorted(INCREASING)))
def test_ranksum_invariant_to_increasing_transforms(a, b, name):
    f = INCREASING[name]
    with np.errstate(over="ignore", invalid="ignore"):
        fa, fb = f(a), f(b)
    x = np.concatenate([a, b])
    fx = np.concatenate([fa, fb])
    ok = ~np.isnan(x)
    assume(np.array_equal(np.isnan(fx), ~ok) and np.all(np.isfinite(fx[ok])))
    assume(np.array_equal(_ranks(fx[ok]), _ranks(x[ok])))  # no values merged by rounding
    _same(wilcoxon_ranksum(fa, fb), wilcoxon_ranksum(a, b))


@settings(max_examples=200, **SETTINGS)
@given(a=arm, b=arm)
def test_ranksum_equals_scipy(a, b):
    r = wilcoxon_ranksum(a, b)
    a0, b0 = a[~np.isnan(a)], b[~np.isnan(b)]
    assert (r.n_treated, r.n_control) == (a0.size, b0.size)
    if a0.size == 0 or b0.size == 0:
        assert np.isnan(r.p_value) and r.reason
        return
    ref = stats.mannwhitneyu(a0, b0, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert r.statistic == ref.statistic
    assert r.estimate == pytest.approx(ref.statistic / (a0.size * b0.size), rel=1e-12)
    if np.unique(np.concatenate([a0, b0])).size == 1:  # all tied: scipy gives 1 (or NaN)
        assert r.p_value == 1.0 and r.reason
    else:
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------- signed-rank


@settings(max_examples=200, **SETTINGS)
@given(ab=pairs(), data=st.data())
def test_signed_rank_invariant_to_order_of_pairs_and_swap(ab, data):
    a, b = ab
    r = signed_rank(a, b)
    p = np.array(data.draw(st.permutations(range(a.size))), dtype=int)
    _same(signed_rank(a[p], b[p]), r)
    s = signed_rank(b, a)  # d -> -d: same p and statistic (min(T+, T-)), estimate negated
    _same(s, r, estimate=False)
    if not np.isnan(r.estimate):
        assert s.estimate == -r.estimate


@settings(max_examples=200, **SETTINGS)
@given(ab=pairs(), name=st.sampled_from(sorted(SIGN_AND_ORDER)))
def test_signed_rank_invariant_to_sign_and_order_preserving_maps(ab, name):
    a, b = ab
    d = a - b
    ok = ~np.isnan(d)
    g = SIGN_AND_ORDER[name]
    with np.errstate(over="ignore", under="ignore"):
        gd = g(d)
    assume(np.all(np.isfinite(gd[ok])))
    assume(np.array_equal(np.sign(gd[ok]), np.sign(d[ok])))  # no underflow to 0
    assume(np.array_equal(_ranks(np.abs(gd[ok])), _ranks(np.abs(d[ok]))))
    # the test sees only the differences: (g(a - b), 0) is the same data
    _same(signed_rank(gd, np.zeros_like(gd)), signed_rank(a, b), estimate=False)


def _scipy_signed_rank(d):
    """scipy.stats.wilcoxon with its defaults and the module's documented choice of method."""
    nz = d[d != 0]
    exact = np.unique(np.abs(nz)).size == nz.size == d.size and d.size <= 50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.wilcoxon(d, zero_method="wilcox", correction=False,
                             method="exact" if exact else "asymptotic")
        auto = stats.wilcoxon(d) if (exact or d.size > 13) else None  # no permutation test
    return ref, auto


@settings(max_examples=200, **SETTINGS)
@given(ab=pairs())
def test_signed_rank_equals_scipy(ab):
    a, b = ab
    r = signed_rank(a, b)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    assert r.n_treated == r.n_control == d.size
    if d.size < 2:
        assert np.isnan(r.p_value) and r.reason
        return
    assert r.estimate == np.median(d)
    if np.all(d == 0):
        assert r.p_value == 1.0 and r.statistic == 0.0 and r.reason
        return
    ref, auto = _scipy_signed_rank(d)
    assert r.statistic == ref.statistic
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    if auto is not None:  # scipy's own default agrees too
        assert r.p_value == pytest.approx(auto.pvalue, rel=1e-9, abs=1e-15)

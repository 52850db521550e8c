"""Rosenbaum bounds: cross-checked against scipy (Γ = 1), brute-force enumeration of sign
patterns, brute-force Walsh averages and grid inversion, and Rosenbaum (2002) Table 4.3."""

import itertools
import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sim.methods.sensitivity import mcnemar as M
from sim.methods.sensitivity import rosenbaum as R

# Morton et al. (1982) lead data, Rosenbaum (2002) ch. 4 / rbounds::psens example
LEAD_T = np.array([38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22,
                   35, 49, 48, 44, 35, 43, 39, 34, 13, 73, 25, 27], float)
LEAD_C = np.array([16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21,
                   19, 7, 18, 19, 12, 11, 22, 25, 16, 13, 11, 13], float)


def brute_bound(d, gamma, tau0=0.0, alternative="greater", zero_method="wilcox"):
    """Enumerate all 2^n sign patterns of the non-zero |x| ranks (scipy.stats.rankdata), each with
    probability p^(positives) (1-p)^(negatives), p = Γ/(1+Γ). "wilcox": zeros dropped, then the rest
    ranked; "pratt": all |x| ranked, zeros included, then the zeros dropped."""
    x = d - tau0 if alternative == "greater" else tau0 - d
    r = stats.rankdata(np.abs(x))
    if zero_method == "pratt":
        r, x = r[x != 0], x[x != 0]
    else:
        x = x[x != 0]
        r = stats.rankdata(np.abs(x))
    if x.size == 0:
        return 1.0
    t = r[x > 0].sum()
    p = gamma / (1 + gamma)
    total = 0.0
    for signs in itertools.product((0, 1), repeat=x.size):
        s = np.array(signs)
        if r @ s >= t - 1e-9:
            total += p ** s.sum() * (1 - p) ** (x.size - s.sum())
    return total


def walsh(d):
    return np.sort([(d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d))])


# ----------------------------------------------------------------------------- Γ = 1 vs scipy
@pytest.mark.parametrize("n", [4, 9, 20, 45])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_gamma1_exact_equals_scipy_exact(n, alternative):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 1, n)  # continuous: no ties, no zeros (scipy's exact domain)
    ref = stats.wilcoxon(d, alternative=alternative, method="exact").pvalue
    got = R.signed_rank_bound(d, 1.0, alternative=alternative, method="exact")
    assert got == pytest.approx(ref, rel=1e-12)
    assert R.signed_rank_bound(d, 1.0, alternative=alternative) == got  # auto = exact for n <= 50


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gamma1_normal_equals_scipy_asymptotic_with_ties_and_zeros(seed, zero_method):
    rng = np.random.default_rng(seed)
    d = rng.integers(-4, 7, 70).astype(float) * 5  # Barthel-like steps: many ties and zeros
    for alt in ("greater", "less"):
        ref = stats.wilcoxon(d, alternative=alt, method="asymptotic", correction=False,
                             zero_method=zero_method).pvalue
        got = R.signed_rank_bound(d, 1.0, alternative=alt, method="normal", zero_method=zero_method)
        assert got == pytest.approx(ref, rel=1e-12)
        # n > 50: auto uses the normal approximation
        assert R.signed_rank_bound(d, 1.0, alternative=alt, zero_method=zero_method) == got


def test_auto_threshold():
    rng = np.random.default_rng(5)
    d = rng.normal(0.2, 1, 51)
    for n, method in ((50, "exact"), (51, "normal")):
        assert R.signed_rank_bound(d[:n], 1.7) == R.signed_rank_bound(d[:n], 1.7, method=method)


def test_reproduces_rosenbaum_2002_table_4_3():
    """DOS2/rbounds rank the one zero difference (zero_method="pratt"), normal approximation."""
    d = LEAD_T - LEAD_C
    got = [R.signed_rank_bound(d, g, method="normal", zero_method="pratt") for g in (2, 3, 4, 5, 6)]
    assert np.round(got, 4).tolist() == [0.0018, 0.0136, 0.0388, 0.0740, 0.1150]
    assert R.signed_rank_bound(d, 1, method="normal", zero_method="pratt") < 1e-4


# ----------------------------------------------------------------------------- exact distribution
@pytest.mark.parametrize("n", [1, 2, 5, 8, 12])
def test_exact_equals_brute_force_enumeration(n):
    rng = np.random.default_rng(100 + n)
    d = rng.integers(-3, 5, n).astype(float)  # ties and zeros
    for gamma in (1.0, 1.5, 2.0, 3.7):
        for tau0 in (0.0, 1.0, 0.5):
            for alt in ("greater", "less"):
                ref = brute_bound(d, gamma, tau0, alt)
                got = R.signed_rank_bound(d, gamma, tau0=tau0, alternative=alt, method="exact")
                assert got == pytest.approx(ref, rel=1e-11, abs=1e-14), (gamma, tau0, alt)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_normal_close_to_exact_for_50_pairs(seed):
    """Within 0.01 everywhere for Γ <= 1.5; for larger Γ the bounding distribution is skewed and
    the normal approximation understates p near the centre (by up to ~0.017 at Γ = 3, n = 50),
    so there the check is on the tail that decides (exact p < 0.2)."""
    rng = np.random.default_rng(seed)
    for shift in (0.2, 0.4, 0.7):
        d = np.round(rng.normal(shift, 1, 50), 1)  # some ties
        for gamma in (1.0, 1.25, 1.5, 2.0, 3.0):
            ex = R.signed_rank_bound(d, gamma, method="exact")
            no = R.signed_rank_bound(d, gamma, method="normal")
            if gamma <= 1.5 or ex < 0.2:
                assert abs(ex - no) < 0.01, (shift, gamma, ex, no)


# ----------------------------------------------------------------------------- zero methods
TINY = [np.array(v, float) for v in ([0, 1, -2, 3], [0, 0, 2, 2, -1, 3, 4], [0, 5, 5, -5, 1, 0, 2, -3],
                                     [1, 2, 3, 0, 4, 5, 6, 0, 0, 7], [-1, 0, 2, -2, 0, 3, 3, 1, 4, 0, 5])]


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize("i", range(len(TINY)))
def test_exact_bound_equals_brute_force_for_both_zero_methods(i, zero_method):
    """Tiny inputs with zeros and ties: the exact bound is the enumeration over sign assignments."""
    d = TINY[i]
    for gamma in (1.0, 1.5, 2.0, 4.0):
        for tau0 in (0.0, 2.0):
            for alt in ("greater", "less"):
                ref = brute_bound(d, gamma, tau0, alt, zero_method)
                got = R.signed_rank_bound(d, gamma, tau0=tau0, alternative=alt, method="exact",
                                          zero_method=zero_method)
                assert got == pytest.approx(ref, rel=1e-12, abs=1e-15), (gamma, tau0, alt)
    grid = [1.0, 1.3, 2.0, 4.0]
    np.testing.assert_allclose(R.signed_rank_bounds(d, grid, method="exact", zero_method=zero_method),
                               [brute_bound(d, g, zero_method=zero_method) for g in grid], rtol=1e-12)


def test_zero_methods_differ_with_zeros_and_agree_without():
    d = TINY[4]  # three zeros: under Pratt every other pair moves up by 3 ranks
    w, p = (R.signed_rank_bound(d, 2.0, method="exact", zero_method=z) for z in ("wilcox", "pratt"))
    assert abs(p - w) > 0.05
    assert (w, p) == pytest.approx((brute_bound(d, 2.0), brute_bound(d, 2.0, zero_method="pratt")), rel=1e-12)
    nz = d[d != 0]
    for method in ("exact", "normal"):
        assert R.signed_rank_bound(nz, 2.0, method=method, zero_method="pratt") == \
            R.signed_rank_bound(nz, 2.0, method=method)


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt"])
@pytest.mark.parametrize("i", [1, 2])
def test_gamma1_exact_equals_scipy_permutation_with_zeros(i, zero_method):
    """At Γ = 1 the exact bound is scipy's exact permutation (all 2^n sign flips) p-value."""
    d = TINY[i]
    for alt in ("greater", "less"):
        ref = stats.wilcoxon(d, zero_method=zero_method, alternative=alt,
                             method=stats.PermutationMethod(n_resamples=np.inf)).pvalue
        got = R.signed_rank_bound(d, 1.0, alternative=alt, method="exact", zero_method=zero_method)
        assert got == pytest.approx(ref, rel=1e-12)


def dos2_senwilcox(d, gamma):
    """DOS2::senWilcox's p-value ("greater"), transliterated: rk <- rank(abs(d)) * (abs(d) > 0)."""
    rk = stats.rankdata(np.abs(d)) * (np.abs(d) > 0)
    pr = gamma / (1 + gamma)
    ts, ex, va = np.sum((d > 0) * rk), np.sum(pr * rk), np.sum(rk * rk) * pr * (1 - pr)
    return stats.norm.sf((ts - ex) / np.sqrt(va))


@pytest.mark.parametrize("seed", [0, 1])
def test_normal_pratt_equals_dos2_senwilcox(seed):
    rng = np.random.default_rng(seed)
    d = rng.integers(-3, 7, 80).astype(float)  # many zeros and ties
    for gamma in (1.0, 1.5, 2.0, 3.0):
        got = R.signed_rank_bound(d, gamma, method="normal", zero_method="pratt")
        assert got == pytest.approx(dos2_senwilcox(d, gamma), rel=1e-12)
        assert R.signed_rank_bound(d, gamma, alternative="less", method="normal", zero_method="pratt") == \
            pytest.approx(dos2_senwilcox(-d, gamma), rel=1e-12)


@pytest.mark.parametrize("method", ["exact", "normal"])
def test_pratt_sensitivity_value_and_mcid_functions(method):
    rng = np.random.default_rng(3)
    d = rng.integers(-2, 6, 45).astype(float)
    gs = R.sensitivity_value(d, 0.05, method=method, zero_method="pratt")
    assert gs > 1 and gs != R.sensitivity_value(d, 0.05, method=method)
    assert R.signed_rank_bound(d, gs, method=method, zero_method="pratt") == pytest.approx(0.05, abs=1e-8)
    tab = R.mcid_exclusion(d, 3.0, [1, 1.5], method=method, zero_method="pratt")  # d == 3 in some pairs
    ref = [R.signed_rank_bound(d, g, tau0=3.0, alternative="less", method=method, zero_method="pratt")
           for g in (1, 1.5)]
    np.testing.assert_allclose(tab.p_upper_mcid, ref, rtol=1e-12)
    gm = R.largest_gamma_excluding(d, 3.0, method=method, zero_method="pratt")
    assert gm == R.sensitivity_value(d, tau0=3.0, alternative="less", method=method, zero_method="pratt")
    st_ = R.sensitivity_table(d, [1, 2], mcid=3.0, method=method, zero_method="pratt")
    assert st_.p_upper.tolist() == [R.signed_rank_bound(d, g, method=method, zero_method="pratt") for g in (1, 2)]
    np.testing.assert_allclose(st_.p_upper_mcid, [ref[0], R.signed_rank_bound(
        d, 2, tau0=3.0, alternative="less", method=method, zero_method="pratt")], rtol=1e-12)
    # the intervals are inverted between Walsh averages, where no difference is zero
    assert R.sensitivity_table(d, [1, 2], method=method)[["hl_low", "ci_low", "ci_high"]].equals(
        st_[["hl_low", "ci_low", "ci_high"]])


# ----------------------------------------------------------------------------- sensitivity value
@pytest.mark.parametrize("method", ["exact", "normal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sensitivity_value_solves_bound_equals_alpha(method, seed):
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(0.8, 1, 40), 1)
    gs = R.sensitivity_value(d, 0.05, method=method)
    assert 1 < gs < 50
    assert R.signed_rank_bound(d, gs, method=method) == pytest.approx(0.05, abs=1e-8)
    assert R.signed_rank_bound(d, gs * 1.01, method=method) > 0.05
    grid = np.linspace(1, 2 * gs, 40)
    b = [R.signed_rank_bound(d, g, method=method) for g in grid]
    assert np.all(np.diff(b) > 0)


def test_sensitivity_value_all_positive_closed_form():
    """All n differences positive: exact bound = p+^n, so Γ* = a/(1-a) with a = alpha^(1/n)."""
    d = np.arange(1.0, 31.0)
    a = 0.05 ** (1 / 30)
    assert R.sensitivity_value(d, 0.05, method="exact") == pytest.approx(a / (1 - a), rel=1e-9)


def test_sensitivity_value_boundaries():
    rng = np.random.default_rng(9)
    null = rng.normal(0, 1, 30)
    assert R.signed_rank_bound(null, 1) > 0.05
    assert R.sensitivity_value(null) == 1.0  # not significant at Γ = 1 -> 1.0
    assert R.sensitivity_value(np.zeros(10)) == 1.0  # no non-zero difference: bound = 1
    assert R.signed_rank_bound(np.zeros(10), 2.0) == 1.0
    assert R.sensitivity_value([np.nan, np.nan]) == 1.0


def test_tau0_and_direction():
    rng = np.random.default_rng(4)
    d = rng.normal(2, 1, 25)
    assert R.signed_rank_bound(d, 1.5, tau0=0.5) == R.signed_rank_bound(d - 0.5, 1.5)
    assert R.signed_rank_bound(d, 1.5, alternative="less") == R.signed_rank_bound(-d, 1.5)
    assert R.signed_rank_bound(d, 1.0, alternative="less") > 0.99


# ----------------------------------------------------------------------------- Hodges-Lehmann
@pytest.mark.parametrize("seed", range(4))
def test_hl_at_gamma1_is_median_of_walsh_averages(seed):
    rng = np.random.default_rng(seed)
    n = [7, 8, 20, 33][seed]
    d = rng.integers(-5, 9, n).astype(float) if seed % 2 else rng.normal(1, 2, n)
    lo, hi = R.hodges_lehmann(d, 1.0)
    assert lo == hi == pytest.approx(np.median(walsh(d)), abs=1e-12)


def _t_plus(d, tau):
    x = d - tau
    x = x[x != 0]
    r = stats.rankdata(np.abs(x))
    return r[x > 0].sum(), r.sum()


@pytest.mark.parametrize("gamma", [1.0, 1.5, 2.0, 3.0])
def test_hl_interval_equals_grid_definition(gamma):
    """sup{τ: T(d-τ) > p+ S} and inf{τ: T < p+ S}, averaged (low end); high end with p- = 1 - p+."""
    rng = np.random.default_rng(11)
    d = rng.integers(-3, 8, 15).astype(float)
    w = np.unique(walsh(d))
    grid = np.concatenate([[w[0] - 1], (w[:-1] + w[1:]) / 2, [w[-1] + 1]])  # between jumps
    ts = np.array([_t_plus(d, t) for t in grid])
    p = gamma / (1 + gamma)
    ends = []
    for q in (p, 1 - p):
        above = ts[:, 0] > q * ts[:, 1]
        below = ts[:, 0] < q * ts[:, 1]
        sup = w[np.flatnonzero(above).max()]  # right end of the last gap with T > mu
        inf = w[np.flatnonzero(below).min() - 1]  # left end of the first gap with T < mu
        ends.append((sup + inf) / 2)
    assert R.hodges_lehmann(d, gamma) == pytest.approx(tuple(ends), abs=1e-12)


def test_lead_hl_and_interval_widen_with_gamma():
    d = LEAD_T - LEAD_C
    prev = None
    for g in (1, 1.5, 2, 3):
        hl = R.hodges_lehmann(d, g)
        ci = R.hl_confidence_interval(d, g)
        assert ci[0] <= hl[0] <= hl[1] <= ci[1]
        if prev:
            assert hl[0] <= prev[0][0] and hl[1] >= prev[0][1]
            assert ci[0] <= prev[1][0] and ci[1] >= prev[1][1]
        prev = (hl, ci)


def grid_ci(d, accept):
    """CI by brute-force inversion: accept(tau) at a point inside every gap between Walsh averages."""
    w = np.unique(walsh(d))
    grid = np.concatenate([[w[0] - 100], (w[:-1] + w[1:]) / 2, [w[-1] + 100]])
    ok = np.flatnonzero([accept(t) for t in grid])
    low = -np.inf if ok.min() == 0 else w[ok.min() - 1]
    high = np.inf if ok.max() == w.size else w[ok.max()]
    return low, high


@pytest.mark.parametrize("n", [6, 12, 25])
def test_ci_at_gamma1_equals_scipy_exact_inversion(n):
    rng = np.random.default_rng(n)
    d = rng.normal(1, 2, n)

    def accept(t):
        return all(stats.wilcoxon(d - t, alternative=a, method="exact").pvalue > 0.025
                   for a in ("greater", "less"))

    assert R.hl_confidence_interval(d, 1.0, 0.05, method="exact") == pytest.approx(grid_ci(d, accept))


def test_ci_at_gamma1_normal_equals_scipy_asymptotic_inversion_with_ties():
    rng = np.random.default_rng(7)
    d = rng.integers(-4, 9, 40).astype(float)

    def accept(t):
        return all(stats.wilcoxon(d - t, alternative=a, method="asymptotic").pvalue > 0.05
                   for a in ("greater", "less"))

    assert R.hl_confidence_interval(d, 1.0, 0.10, method="normal") == pytest.approx(grid_ci(d, accept))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("gamma", [1.5, 2.5])
def test_ci_at_gamma_equals_full_scan(gamma, ties):
    """Bisection (which assumes a bound monotone in tau0) = scanning every gap, ties included."""
    rng = np.random.default_rng(21)
    d = rng.integers(-4, 7, 24) * 5.0 if ties else rng.normal(1, 2, 18)
    for method in ("exact", "normal"):
        def accept(t):
            return all(R.signed_rank_bound(d, gamma, tau0=t, alternative=a, method=method) > 0.025
                       for a in ("greater", "less"))

        assert R.hl_confidence_interval(d, gamma, method=method) == pytest.approx(grid_ci(d, accept))


def test_ci_infinite_with_few_pairs():
    assert R.hl_confidence_interval([1.0, 2.0, 3.0], 1.0) == (-math.inf, math.inf)


# ----------------------------------------------------------------------------- amplification
def test_amplify_known_values_and_inverse():
    assert R.amplify(1.25, 2) == pytest.approx(2.0)  # Rosenbaum & Silber (2009)
    assert R.amplify(2.0, 3.0) == pytest.approx(5.0)
    lam = np.array([2.5, 4.0, 10.0])
    delta = R.amplify(2.0, lam)
    np.testing.assert_allclose(R.amplification_gamma(lam, delta), 2.0)
    tab = R.amplification_table(1.5)
    assert list(tab.columns) == ["gamma", "lam", "delta"]
    np.testing.assert_allclose((tab.lam * tab.delta + 1) / (tab.lam + tab.delta), 1.5)
    assert (tab.lam > 1.5).all() and (tab.delta > 1.5).all()
    with pytest.raises(ValueError, match="lam"):
        R.amplify(2.0, 2.0)
    with pytest.raises(ValueError, match="gamma"):
        R.amplify(0.5, 2.0)
    with pytest.raises(ValueError, match="delta"):
        R.amplification_gamma(2.0, 0.5)


# ----------------------------------------------------------------------------- MCID, table, summary
def test_mcid_exclusion_and_largest_gamma():
    rng = np.random.default_rng(8)
    d = rng.normal(0, 8, 45).round()
    mcid = 9.25
    gammas = [1, 1.25, 1.5, 2, 3, 5]
    tab = R.mcid_exclusion(d, mcid, gammas)
    ref = [R.signed_rank_bound(d, g, tau0=mcid, alternative="less") for g in gammas]
    np.testing.assert_allclose(tab.p_upper_mcid, ref, rtol=1e-12)
    assert (tab.mcid_excluded == (np.array(ref) <= 0.05)).all()
    gm = R.largest_gamma_excluding(d, mcid)
    assert gm > 1
    assert R.signed_rank_bound(d, gm, tau0=mcid, alternative="less") == pytest.approx(0.05, abs=1e-8)
    assert (tab.mcid_excluded == (tab.gamma <= gm)).all()


def test_sensitivity_table_consistent():
    d = LEAD_T - LEAD_C
    gammas = [1, 2, 3]
    tab = R.sensitivity_table(d, gammas, mcid=10)
    assert list(tab.columns) == ["gamma", "p_upper", "hl_low", "hl_high", "ci_low", "ci_high",
                                 "p_upper_mcid", "mcid_excluded"]
    for row, g in zip(tab.itertuples(), gammas):
        assert row.p_upper == R.signed_rank_bound(d, g)
        assert (row.hl_low, row.hl_high) == R.hodges_lehmann(d, g)
        assert (row.ci_low, row.ci_high) == R.hl_confidence_interval(d, g)
    assert "p_upper_mcid" not in R.sensitivity_table(d, gammas).columns


def test_rosenbaum_summary_matches_functions():
    rng = np.random.default_rng(12)
    yt, yc = rng.normal(3, 10, 52), rng.normal(0, 10, 52)
    yt[[3, 9]] = np.nan  # deaths: pairs dropped
    s = R.rosenbaum_summary(yt, yc, mcid=9.25)
    ok = ~np.isnan(yt)
    d = yt[ok] - yc[ok]
    assert s["n_pairs_used"] == 50
    assert s["gamma_star"] == pytest.approx(R.sensitivity_value(d, 0.025, method="normal"), rel=1e-12)
    assert s["gamma_mcid"] == pytest.approx(R.largest_gamma_excluding(d, 9.25, method="normal"), rel=1e-12)
    for g in (1, 1.5, 2):
        p = R.signed_rank_bound(d, g, tau0=9.25, alternative="less", method="normal")
        assert s[f"mcid_excluded_at_{g:g}"] == float(p <= 0.05)
    assert s["p_upper_at_1"] == pytest.approx(stats.wilcoxon(d, alternative="greater", method="asymptotic").pvalue)
    assert set(s) == {"n_pairs_used", "gamma_star", "gamma_mcid", "mcid_excluded_at_1",
                      "mcid_excluded_at_1.5", "mcid_excluded_at_2", "p_upper_at_1"}
    exact = R.rosenbaum_summary(yt, yc, mcid=9.25, method="exact")
    assert exact["gamma_star"] == pytest.approx(R.sensitivity_value(d, 0.025, method="exact"))
    empty = R.rosenbaum_summary([np.nan], [1.0], mcid=1.0)
    assert empty["n_pairs_used"] == 0 and math.isnan(empty["gamma_star"])


def test_rosenbaum_summary_is_fast():
    rng = np.random.default_rng(0)
    yt, yc = rng.normal(1, 10, 50), rng.normal(0, 10, 50)
    R.rosenbaum_summary(yt, yc, mcid=9.25)
    t0 = time.perf_counter()
    for _ in range(200):
        R.rosenbaum_summary(yt, yc, mcid=9.25)
    assert (time.perf_counter() - t0) / 200 < 0.002  # ~0.1 ms on a laptop core


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call, match", [
    (lambda: R.signed_rank_bound([1.0, 2.0], 0.5), "gamma"),
    (lambda: R.signed_rank_bound([1.0, 2.0], [1.0, 2.0]), "gamma"),
    (lambda: R.signed_rank_bound([1.0, 2.0], 1.0, alternative="two-sided"), "alternative"),
    (lambda: R.signed_rank_bound([1.0, 2.0], 1.0, method="permutation"), "method"),
    (lambda: R.signed_rank_bound([1.0, 2.0], 1.0, zero_method="zsplit"), "zero_method"),
    (lambda: R.signed_rank_bound([[1.0, 2.0]], 1.0), "d must be a 1-D"),
    (lambda: R.signed_rank_bound([1.0, np.inf], 1.0), "d must not contain inf"),
    (lambda: R.signed_rank_bound([1.0, 2.0], 1.0, tau0=np.nan), "tau0"),
    (lambda: R.sensitivity_value([1.0, 2.0], alpha=0.7), "alpha"),
    (lambda: R.sensitivity_table([1.0, 2.0], []), "gammas"),
    (lambda: R.hl_confidence_interval([1.0, 2.0], 1.0, alpha=1.5), "alpha"),
    (lambda: R.mcid_exclusion([1.0, 2.0], -1.0, [1.0]), "mcid"),
    (lambda: R.largest_gamma_excluding([1.0, 2.0], "x"), "mcid"),
    (lambda: R.rosenbaum_summary([1.0], [2.0], mcid=np.nan), "mcid"),
    (lambda: R.rosenbaum_summary([1.0], [2.0, 3.0], mcid=1.0), "same length"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- properties
diffs = st.lists(st.integers(-6, 9).map(float), min_size=1, max_size=14)


@settings(max_examples=60, deadline=None)
@given(d=diffs, seed=st.integers(0, 2**16), gamma=st.floats(1, 6))
def test_bound_invariant_to_pair_order_and_scale(d, seed, gamma):
    d = np.array(d)
    perm = np.random.default_rng(seed).permutation(d.size)
    for method in ("exact", "normal"):
        b = R.signed_rank_bound(d, gamma, method=method)
        assert R.signed_rank_bound(d[perm], gamma, method=method) == pytest.approx(b, rel=1e-12, abs=1e-15)
        assert R.signed_rank_bound(d * 0.37, gamma, method=method) == pytest.approx(b, rel=1e-12, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(d=diffs, g1=st.floats(1, 8), g2=st.floats(1, 8))
def test_bound_monotone_in_gamma(d, g1, g2):
    lo, hi = sorted((g1, g2))
    for method in ("exact", "normal"):
        assert R.signed_rank_bound(d, lo, method=method) <= R.signed_rank_bound(d, hi, method=method) + 1e-12


@settings(max_examples=40, deadline=None)
@given(d=diffs, gamma=st.floats(1, 5))
def test_hl_inside_ci_and_mirror_symmetric(d, gamma):
    d = np.array(d)
    lo, hi = R.hodges_lehmann(d, gamma)
    assert lo <= hi
    assert R.hodges_lehmann(-d, gamma) == pytest.approx((-hi, -lo))
    c_lo, c_hi = R.hl_confidence_interval(d, gamma, 0.2)
    assert c_lo <= lo and hi <= c_hi
    assert R.hl_confidence_interval(-d, gamma, 0.2) == pytest.approx((-c_hi, -c_lo))


def test_pandas_series_input():
    d = pd.Series(LEAD_T - LEAD_C)
    assert R.signed_rank_bound(d, 2.0) == R.signed_rank_bound(d.to_numpy(), 2.0)


# ----------------------------------------------------------------------------- binary outcomes (McNemar)
def brute_mcnemar(n_plus, n_minus, gamma, alternative="greater"):
    """Enumerate which way round each discordant pair is (2^D patterns), each with p = Γ/(1+Γ)."""
    n, t = n_plus + n_minus, (n_plus if alternative == "greater" else n_minus)
    p = gamma / (1 + gamma)
    return sum(p ** sum(s) * (1 - p) ** (n - sum(s)) for s in itertools.product((0, 1), repeat=n) if sum(s) >= t)


@pytest.mark.parametrize("n_plus, n_minus", [(0, 0), (1, 0), (3, 1), (7, 2), (5, 5), (2, 9)])
def test_mcnemar_bound_equals_brute_force(n_plus, n_minus):
    for alt in ("greater", "less"):
        for gamma in (1.0, 1.5, 2.0, 3.7):
            ref = brute_mcnemar(n_plus, n_minus, gamma, alt)
            assert M.mcnemar_bound(n_plus, n_minus, gamma, alternative=alt) == pytest.approx(ref, rel=1e-12)
        grid = np.array([1.0, 2.0, 5.0])
        np.testing.assert_allclose(M.mcnemar_bound(n_plus, n_minus, grid, alternative=alt),
                                   [brute_mcnemar(n_plus, n_minus, g, alt) for g in grid], rtol=1e-12)


@pytest.mark.parametrize("n_plus, n_minus", [(60, 25), (300, 220), (12, 0)])
def test_mcnemar_bound_equals_binomial_sum_and_signed_rank(n_plus, n_minus):
    """Large counts: the binomial tail summed term by term; and the exact signed-rank bound of the
    -1/0/1 differences (all ranks tie), either zero method."""
    n = n_plus + n_minus
    d = np.r_[np.ones(n_plus), -np.ones(n_minus), np.zeros(17)]
    for gamma in (1.0, 1.25, 2.0):
        p = gamma / (1 + gamma)
        ref = math.fsum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n_plus, n + 1))
        got = M.mcnemar_bound(n_plus, n_minus, gamma)
        assert got == pytest.approx(ref, rel=1e-10)
        if n <= 100:
            for zm in ("wilcox", "pratt"):
                assert R.signed_rank_bound(d, gamma, method="exact", zero_method=zm) == pytest.approx(got, rel=1e-10)


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_mcnemar_sensitivity_value(alternative):
    n_plus, n_minus = (30, 9) if alternative == "greater" else (9, 30)
    g = M.mcnemar_sensitivity_value(n_plus, n_minus, 0.05, alternative=alternative)
    assert 1 < g < 10
    q, t = g / (1 + g), max(n_plus, n_minus)
    assert math.fsum(math.comb(39, k) * q ** k * (1 - q) ** (39 - k) for k in range(t, 40)) == pytest.approx(0.05)
    assert M.mcnemar_bound(n_plus, n_minus, g * 1.001, alternative=alternative) > 0.05
    d = np.r_[np.ones(n_plus), -np.ones(n_minus)]
    assert g == pytest.approx(R.sensitivity_value(d, 0.05, alternative=alternative, method="exact"), rel=1e-9)
    a = 0.05 ** (1 / 12)  # all discordant pairs one way: bound p^D
    assert M.mcnemar_sensitivity_value(12, 0, 0.05) == pytest.approx(a / (1 - a), rel=1e-12)
    assert M.mcnemar_sensitivity_value(3, 3, 0.05) == 1.0  # not significant at Γ = 1
    assert M.mcnemar_sensitivity_value(0, 0, 0.05) == 1.0
    assert M.discordant_counts([1, -1, 0, 1, np.nan, 1]) == (3, 1)


@pytest.mark.parametrize("call, match", [
    (lambda: M.mcnemar_bound(3, 1, 0.5), "gamma"),
    (lambda: M.mcnemar_bound(3, 1, 2.0, alternative="two-sided"), "alternative"),
    (lambda: M.mcnemar_bound(-1, 1, 2.0), "n_plus"),
    (lambda: M.mcnemar_bound(1, 1.5, 2.0), "n_minus"),
    (lambda: M.mcnemar_sensitivity_value(3, 1, 0.6), "alpha"),
    (lambda: M.discordant_counts([1, 2]), "-1, 0 or 1"),
])
def test_mcnemar_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()

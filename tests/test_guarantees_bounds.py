"""Size and coverage guarantees checked where they are sharp, each beside a weakened implementation
that must fail the same check (so the check is shown able to fail), and deterministic tests of two
details the Monte Carlo checks are too coarse to see (Lee's variance, the p = alpha boundary).

Every check uses a fixed seed and a tolerance of 3 Monte Carlo SEs at the nominal rate,
sqrt(p (1 - p) / R). The designs put the truth where the guarantee binds (TOST at the margin, a
null for the rank tests, the truth at Lee's sharp bound), so the real rate is close to nominal
and an implementation that is too optimistic by a modest factor fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.methods.sensitivity.equivalence import tost
from sim.methods.outcomes import diff_means, signed_rank, wilcoxon_ranksum
from sim.methods.sensitivity.rosenbaum import mcid_exclusion, rosenbaum_summary, sensitivity_table, signed_rank_bound
from sim.methods.sensitivity.truncation import _im_ci, lee_bounds

ALPHA = 0.05
REPS = 4000


def mcse(p: float, reps: int = REPS) -> float:
    return math.sqrt(p * (1 - p) / reps)


def at_most(rate: float, nominal: float, reps: int = REPS) -> bool:
    """A rejection rate that keeps its nominal level (within 3 MCSE)."""
    return rate <= nominal + 3 * mcse(nominal, reps)


def at_least(rate: float, nominal: float, reps: int = REPS) -> bool:
    """A coverage that reaches its nominal level (within 3 MCSE)."""
    return rate >= nominal - 3 * mcse(nominal, reps)


# --------------------------------------------------------------------------- TOST at the margin
TOST_N, MARGIN = 40, 1.0


def tost_size_holds(equivalent_fn, paired: bool) -> bool:
    """True difference exactly at ±margin (alternating by replicate), SD 1, 40 per arm: equivalence
    is then wrongly declared with probability α (the far side's test rejects with probability ~1),
    so the rate of `equivalent_fn(a, b, margin)` must stay within α + 3 MCSE."""
    rng = np.random.default_rng(101 + paired)
    y = rng.standard_normal((REPS, 2, TOST_N))
    y[:, 0] += np.where(np.arange(REPS) % 2 == 0, MARGIN, -MARGIN)[:, None]
    return at_most(np.mean([equivalent_fn(a, b, MARGIN) for a, b in y]), ALPHA)


@pytest.mark.parametrize("kw", [{"usevar": "unequal"}, {"usevar": "pooled"}, {"paired": True}],
                         ids=["welch", "pooled", "paired"])
def test_tost_size_at_the_margin_and_weakened_tosts_fail(kw):
    """Measured (R = 4000): 0.043-0.048 for the real TOST; 0.091-0.093 at level 2α; 1.0 when
    equivalence takes the smaller of the two one-sided p's (the far side's near-zero p always passes)."""
    paired = kw.get("paired", False)
    assert tost_size_holds(lambda a, b, m: tost(a, b, m, alpha=ALPHA, **kw).equivalent, paired)
    assert not tost_size_holds(lambda a, b, m: tost(a, b, m, alpha=2 * ALPHA, **kw).equivalent, paired)

    def min_p(a, b, m):
        r = tost(a, b, m, alpha=ALPHA, **kw)
        return min(r.p_lower, r.p_upper) <= ALPHA

    assert not tost_size_holds(min_p, paired)


# --------------------------------------------------------------------------- rank tests under the null
RANK_N = 40


def rank_test_size_holds(p_fn, ties: bool) -> bool:
    """Two-sided test at α under the null (both arms N(0, 1), 40 each; rounded to integers with
    `ties`, as the study's stepped scales): rejection within α + 3 MCSE."""
    rng = np.random.default_rng(202 + ties)
    y = rng.standard_normal((REPS, 2, RANK_N))
    if ties:
        y = np.round(y)
    return at_most(np.mean([p_fn(a, b) <= ALPHA for a, b in y]), ALPHA)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("test", [wilcoxon_ranksum, signed_rank], ids=["ranksum", "signed_rank"])
def test_rank_tests_keep_their_size_and_a_one_sided_p_does_not(test, ties):
    """Measured: 0.044-0.053 for the real tests; 0.095-0.103 when the two-sided p lacks its factor 2."""
    assert rank_test_size_holds(lambda a, b: test(a, b).p_value, ties)
    assert not rank_test_size_holds(lambda a, b: test(a, b).p_value / 2, ties)


# --------------------------------------------------------------------------- Rosenbaum at Γ = 1
def gamma1_level_holds(bound_fn, n_pairs: int) -> bool:
    """At Γ = 1 (no hidden bias) and no effect (symmetric differences), the one-sided bound is the
    signed-rank p-value: "bound <= α" rejects within α + 3 MCSE."""
    rng = np.random.default_rng(303 + n_pairs)
    d = rng.standard_normal((REPS, n_pairs))
    return at_most(np.mean([bound_fn(x, 1.0) <= ALPHA for x in d]), ALPHA)


@pytest.mark.parametrize("n_pairs", [40, 100], ids=["exact", "normal"])
def test_rosenbaum_bound_at_gamma_1_has_its_size_and_a_halved_bound_does_not(n_pairs):
    """40 pairs use the exact distribution, 100 the normal one. Measured: 0.051 / 0.050 for the real
    bound; 0.097 / 0.101 for a bound half as large (as testing at level 2α)."""
    assert gamma1_level_holds(signed_rank_bound, n_pairs)
    assert not gamma1_level_holds(lambda d, g: signed_rank_bound(d, g) / 2, n_pairs)


# --------------------------------------------------------------------------- CI coverage
def ci_covers(ci_fn) -> bool:
    """Welch design under the null with unequal SDs (1 and 2), 40 and 30 per arm: the 95 % CI of
    the difference in means covers 0 in at least 95 % - 3 MCSE of replicates."""
    rng = np.random.default_rng(404)
    hits = 0
    for _ in range(REPS):
        lo, hi = ci_fn(rng.normal(0, 1, 40), rng.normal(0, 2, 30))
        hits += lo <= 0 <= hi
    return at_least(hits / REPS, 1 - ALPHA)


def test_difference_in_means_ci_covers_and_a_half_width_ci_does_not():
    """Measured: 0.948 for the real CI, 0.670 for the half-width one."""
    def real(a, b):
        r = diff_means(a, b)
        return r.ci_low, r.ci_high

    def half(a, b):
        r = diff_means(a, b)
        return r.estimate - (r.estimate - r.ci_low) / 2, r.estimate + (r.ci_high - r.estimate) / 2

    assert ci_covers(real)
    assert not ci_covers(half)


# --------------------------------------------------------------------------- Lee bounds' coverage
Q75 = float(stats.norm.ppf(0.75))
LEE_N, LEE_EFFECT = 400, 0.5


def lee_sample(rng, n=LEE_N):
    """Random assignment, 20 % never observed, and the treatment keeps observed the top quarter of
    the outcome (units observed under treatment only): trimming the treated group's top removes
    exactly them, so the lower bound is the always-observed effect LEE_EFFECT (sharp)."""
    z = rng.standard_normal((2, n))
    never = rng.random((2, n)) < 0.2
    yt = np.where(never[0], np.nan, z[0] + LEE_EFFECT)
    yc = np.where(never[1] | (z[1] > Q75), np.nan, z[1])
    return yt, yc


def lee_covers(ci_fn) -> bool:
    """The Imbens-Manski interval covers the truth at the sharp lower bound (where it is
    effectively one-sided, the hardest case) in at least 95 % - 3 MCSE of replicates."""
    rng = np.random.default_rng(505)
    hits = 0
    for _ in range(REPS):
        lo, hi = ci_fn(*lee_sample(rng))
        hits += lo <= LEE_EFFECT <= hi
    return at_least(hits / REPS, 1 - ALPHA)


def _q_term(values: np.ndarray, kept: int, top: bool, v_q: float) -> float:
    """Lee's variance term for the estimated trim share: (ξ - μ)² V_q of the kept part."""
    part = values[-kept:] if top else values[:kept]
    xi = part[0] if top else part[-1]
    return (xi - part.mean()) ** 2 * v_q


def test_lee_interval_covers_at_the_sharp_bound_and_weakened_intervals_do_not():
    """Measured: 0.959 for the real interval; 0.916 without the variance term of the estimated trim
    share (its SE ~18 % too small); 0.799 with half its width."""
    def real(yt, yc):
        b = lee_bounds(yt, yc, alpha=ALPHA)
        return b.ci_low, b.ci_high

    def without_q_term(yt, yc):
        b = lee_bounds(yt, yc, alpha=ALPHA)
        ot, oc = np.sort(yt[~np.isnan(yt)]), np.sort(yc[~np.isnan(yc)])
        assert b.trimmed == "treated" and yt.size == yc.size  # so oc.size units are kept, a whole number
        v_q = 1 / ot.size - 1 / yt.size + 1 / oc.size - 1 / yc.size
        se_lo = math.sqrt(b.se_low ** 2 - _q_term(ot, oc.size, False, v_q))
        se_hi = math.sqrt(b.se_high ** 2 - _q_term(ot, oc.size, True, v_q))
        return _im_ci(b.bound_low, b.bound_high, se_lo, se_hi, ALPHA)

    def half(yt, yc):
        b = lee_bounds(yt, yc, alpha=ALPHA)
        return b.bound_low - (b.bound_low - b.ci_low) / 2, b.bound_high + (b.ci_high - b.bound_high) / 2

    assert lee_covers(real)
    assert not lee_covers(without_q_term)
    assert not lee_covers(half)


# --------------------------------------------------------------------------- Lee's variance, exactly
def lee_se_reference(yt, yc) -> tuple[float, float]:
    """Lee (2009, Proposition 3) standard errors of both bounds, computed independently for groups
    of equal size (so the kept count p_small n_big = m_small is whole): sort, cut, and add

        [σ² + q (ξ - μ)²] / (m_big (1 - q))      σ² the plug-in (ddof 0) variance of the kept part
        + ((ξ - μ) / (1 - q))² V_q                V_q = (1-q)² Σ (1 - p_g) / (n_g p_g)
        + s²_small / m_small                      ddof 1
    """
    assert yt.size == yc.size
    ot, oc = np.sort(yt[~np.isnan(yt)]), np.sort(yc[~np.isnan(yc)])
    treated_big = ot.size > oc.size
    big, small = (ot, oc) if treated_big else (oc, ot)
    n = yt.size
    k = small.size
    q = 1 - k / big.size
    p_big, p_small = big.size / n, small.size / n
    v_q = (1 - q) ** 2 * ((1 - p_big) / (n * p_big) + (1 - p_small) / (n * p_small))
    se = {}
    for top in (False, True):
        part = big[-k:] if top else big[:k]
        xi, mu = (part[0] if top else part[-1]), part.mean()
        var = ((np.var(part, ddof=0) + q * (xi - mu) ** 2) / (big.size * (1 - q))
               + ((xi - mu) / (1 - q)) ** 2 * v_q + np.var(small, ddof=1) / small.size)
        se[top] = math.sqrt(var)
    # treated trimmed: the lower bound keeps its bottom; control trimmed: the lower bound keeps its top
    return (se[False], se[True]) if treated_big else (se[True], se[False])


@pytest.mark.parametrize("stepped", [False, True])
def test_lee_standard_errors_equal_lees_formula(stepped):
    """Exact agreement (1e-10) with an independent computation, in small groups where the kept part
    is 5 to about 70 units, so a variance of the kept part with k - 1 (ddof 1) instead of Lee's k
    would be off by 1/(k - 1), 1.4-25 % of that term. Both trimming directions, continuous and
    stepped (tied) values, about 180 cases each."""
    # catches: the trimmed-mean variance with ddof 1 (kept - 1) in _trimmed (sim/methods/truncation.py)
    rng = np.random.default_rng(606 + stepped)
    directions = set()
    for _ in range(200):
        n = int(rng.integers(8, 80))
        yt, yc = rng.normal(0.3, 1.5, n), rng.normal(0.0, 1.5, n)
        if stepped:
            yt, yc = np.round(2 * yt) / 2, np.round(2 * yc) / 2
        yt[rng.random(n) > rng.uniform(0.4, 1)] = np.nan
        yc[rng.random(n) > rng.uniform(0.4, 1)] = np.nan
        b = lee_bounds(yt, yc)
        if b.reason or b.trimmed == "none" or min((~np.isnan(yt)).sum(), (~np.isnan(yc)).sum()) < 5:
            continue
        directions.add(b.trimmed)
        assert (b.se_low, b.se_high) == pytest.approx(lee_se_reference(yt, yc), rel=1e-10)
    assert directions == {"treated", "control"}


# --------------------------------------------------------------------------- p = alpha excludes the MCID
def test_mcid_is_excluded_when_the_bound_equals_alpha_exactly():
    """"Holds at Γ" means bound <= α. Five pairs all below mcid: the exact bound at Γ = 1 is
    (1/2)^5, a float computed without rounding, so α = 1/32 puts the bound exactly at α (excluded),
    and the next float below it does not. Also at Γ = 2 with α set to the bound computed there."""
    # catches: mcid_excluded as p < alpha instead of p <= alpha (sim/methods/rosenbaum.py, mcid_exclusion)
    d, mcid = np.array([-1.0, -2.0, -3.0, -4.0, -5.0]), 1.0
    alpha = 0.5 ** d.size
    assert signed_rank_bound(d, 1.0, tau0=mcid, alternative="less", method="exact") == alpha
    at = mcid_exclusion(d, mcid, [1.0], alpha=alpha, method="exact")
    assert at["p_upper_mcid"].iloc[0] == alpha and bool(at["mcid_excluded"].iloc[0])
    below = mcid_exclusion(d, mcid, [1.0], alpha=float(np.nextafter(alpha, 0)), method="exact")
    assert not bool(below["mcid_excluded"].iloc[0])
    assert bool(sensitivity_table(d, [1.0], mcid=mcid, alpha=alpha, method="exact")["mcid_excluded"].iloc[0])
    s = rosenbaum_summary(d, np.zeros_like(d), mcid=mcid, alpha=alpha, gammas=(1.0,), method="exact")
    assert s["mcid_excluded_at_1"] == 1.0

    d = np.random.default_rng(707).normal(-1.0, 2.0, 30)
    p2 = signed_rank_bound(d, 2.0, tau0=mcid, alternative="less", method="exact")
    assert 0 < p2 < 0.5
    assert bool(mcid_exclusion(d, mcid, [2.0], alpha=p2, method="exact")["mcid_excluded"].iloc[0])

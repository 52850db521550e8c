"""Rosenbaum bounds for matched sets (sim.methods.sensitivity.matched_sets): the m-scores and the
worst-case allocation written out again with loops; the exact tail against brute force (every
choice of each set's singleton with its worst-case probability); at Γ = 1 the exact test against
a simulated randomisation test and the normal bound against the exact one; senfm's signs for
sets with one control; monotonicity, Γ* and the failure modes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from sim.methods.sensitivity.matched_sets import (matched_set_scores, senm, senm_bounds, senm_gamma_star,
                                                  senm_summary)


def random_sets(rng, n_sets, max_size=4, shift=0.5):
    y, t, s = [], [], []
    for i in range(n_sets):
        m = int(rng.integers(2, max_size + 1))
        tt = np.zeros(m, bool)
        if rng.random() < 0.6:
            tt[0] = True  # one treated, m - 1 controls
        else:
            tt[1:] = True  # one control, m - 1 treated
        y += list(rng.normal(size=m) + shift * tt)
        t += list(tt)
        s += [i] * m
    return np.array(y), np.array(t), np.array(s)


def psi(x, trim=3.0):
    return math.copysign(min(1.0, abs(x) / trim), x) if x else 0.0


def scores_by_loops(y, t, s, trim=3.0, lam=0.5):
    """Per set: (signed scores of its units, index of the singleton) as senm / senfm define them."""
    sets = [np.flatnonzero(s == k) for k in np.unique(s)]
    diffs = [abs(y[i] - y[j]) for u in sets for i in u for j in u if i != j]
    h = float(np.quantile(diffs, lam))
    out = []
    for u in sets:
        single_treated = t[u].sum() == 1
        q = [sum(psi((y[i] - y[j]) / h, trim) for j in u if j != i) / len(u) for i in u]
        q = np.array(q) if single_treated else -np.array(q)
        singleton = int(np.flatnonzero(t[u] if single_treated else ~t[u])[0])
        out.append((q, singleton))
    return out


def worst_probabilities(q, gamma):
    """Over a = 1..m-1 (Γ on all but the a lowest scores): the largest mean, then the largest
    variance; the probabilities of each unit being the singleton."""
    order = np.argsort(q, kind="stable")
    best = None
    for a in range(1, len(q)):
        theta = np.ones(len(q))
        theta[order[a:]] = gamma
        p = theta / theta.sum()
        mu = p @ q
        var = p @ q ** 2 - mu ** 2
        if best is None or mu > best[0] + 1e-12 or (abs(mu - best[0]) <= 1e-12 and var > best[1]):
            best = (mu, var, p)
    return best


def brute_force(y, t, s, gamma):
    sets = scores_by_loops(y, t, s)
    t_obs = sum(q[k] for q, k in sets)
    worst = [worst_probabilities(q, gamma) for q, _ in sets]
    tail = 0.0
    for choice in itertools.product(*(range(len(q)) for q, _ in sets)):
        value = sum(q[j] for (q, _), j in zip(sets, choice))
        if value >= t_obs - 1e-9:
            tail += math.prod(w[2][j] for w, j in zip(worst, choice))
    return tail, t_obs, sum(w[0] for w in worst), sum(w[1] for w in worst)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gamma", [1.0, 1.7, 4.0])
def test_exact_tail_and_moments_equal_brute_force(seed, gamma):
    rng = np.random.default_rng(seed)
    y, t, s = random_sets(rng, n_sets=int(rng.integers(3, 7)))
    tail, t_obs, mean, var = brute_force(y, t, s, gamma)
    ex = senm(y, t, s, gamma, method="exact")
    nm = senm(y, t, s, gamma)
    assert ex.p_upper == pytest.approx(tail, abs=1e-12)
    assert nm.statistic == pytest.approx(t_obs) and ex.statistic == pytest.approx(t_obs)
    assert nm.expectation == pytest.approx(mean, abs=1e-12)
    assert nm.variance == pytest.approx(var, abs=1e-12)
    assert nm.p_upper == pytest.approx(norm.sf((t_obs - mean) / math.sqrt(var)))


def test_scores_as_senm_and_senfm():
    rng = np.random.default_rng(11)
    y, t, s = random_sets(rng, n_sets=8)
    loops = scores_by_loops(y, t, s)
    ours = matched_set_scores(y, t, s)
    flat = sorted(tuple(np.round(np.sort(q), 12)) for q in (row for qs in ours.values() for row in qs))
    assert flat == sorted(tuple(np.round(np.sort(q), 12)) for q, _ in loops)
    # a set with one control c and treated t1, t2: minus the control's score, i.e. the treated's
    # mean psi of treated - control over the set's 3 units (senfm's sign)
    y3, t3, s3 = np.array([0.0, 1.0, 2.0, 0.0, 1.5]), np.array([0, 1, 1, 1, 0], bool), np.array([0, 0, 0, 1, 1])
    h = np.quantile([1, 2, 1, 1, 2, 1, 1.5, 1.5], 0.5)
    r = senm(y3, t3, s3)
    assert r.statistic == pytest.approx((psi(1 / h) + psi(2 / h)) / 3 + psi(-1.5 / h) / 2)


def test_gamma_one_is_the_randomisation_test():
    rng = np.random.default_rng(5)
    y, t, s = random_sets(rng, n_sets=9, max_size=3, shift=0.6)
    exact = senm(y, t, s, 1.0, method="exact").p_upper
    sets = scores_by_loops(y, t, s)
    t_obs = sum(q[k] for q, k in sets)
    draws = 200_000
    total = np.zeros(draws)
    for q, _ in sets:  # each unit equally likely to be the singleton
        total += q[rng.integers(0, len(q), draws)]
    p_sim = float(np.mean(total >= t_obs - 1e-9))
    assert abs(p_sim - exact) < 4 * math.sqrt(exact * (1 - exact) / draws) + 1e-12
    nm = senm(y, t, s, 1.0)
    assert nm.expectation == pytest.approx(0.0, abs=1e-12)  # psi odd: the scores sum to 0 in a set
    assert nm.variance == pytest.approx(sum(np.mean(q ** 2) for q, _ in sets))


def test_normal_bound_near_the_exact_one_with_more_sets():
    rng = np.random.default_rng(8)
    y, t, s = random_sets(rng, n_sets=14, max_size=3, shift=0.4)
    for g in (1.0, 1.5, 2.5):
        ex = senm(y, t, s, g, method="exact").p_upper
        nm = senm(y, t, s, g).p_upper
        assert abs(ex - nm) < 0.03, (g, ex, nm)


def test_pairs_permutational_t_in_closed_form():
    d = np.array([1.0, -0.5, 2.0, 0.3, 1.2])
    y = np.column_stack([d, np.zeros_like(d)]).ravel()
    t = np.tile([True, False], d.size)
    s = np.repeat(np.arange(d.size), 2)
    g = 2.0
    r = senm(y, t, s, g, trim=math.inf)  # no psi, no scaling: scores +-d/2
    p = g / (1 + g)
    assert r.statistic == pytest.approx(d.sum() / 2)
    assert r.expectation == pytest.approx(np.sum(np.abs(d) / 2 * (2 * p - 1)))
    assert r.variance == pytest.approx(np.sum(d ** 2 * p * (1 - p)))
    ex = senm(y, t, s, g, trim=math.inf, method="exact").p_upper
    tail = sum(math.prod(p if b else 1 - p for b in bits)  # b: the unit scoring +|d|/2 is treated
               for bits in itertools.product([True, False], repeat=d.size)
               if sum(abs(di) / 2 * (1 if b else -1) for b, di in zip(bits, d)) >= d.sum() / 2 - 1e-12)
    assert ex == pytest.approx(tail)


def test_monotone_in_gamma_gamma_star_and_alternatives():
    rng = np.random.default_rng(3)
    y, t, s = random_sets(rng, n_sets=60, shift=0.8)
    gammas = [1.0, 1.2, 1.5, 2.0, 3.0, 5.0]
    p = senm_bounds(y, t, s, gammas)
    assert np.all(np.diff(p) > 0)
    g_star = senm_gamma_star(y, t, s, 0.025)
    assert g_star > 1 and senm(y, t, s, g_star).p_upper == pytest.approx(0.025, abs=1e-6)
    summary = senm_summary(y, t, s)
    assert summary["gamma_star"] == pytest.approx(g_star) and summary["n_sets_used"] == 60
    less = senm(-y, t, s, 1.5, alternative="less")
    assert less.p_upper == pytest.approx(senm(y, t, s, 1.5).p_upper)
    shifted = senm(y + 0.3 * t, t, s, 1.5, tau=0.3)
    assert shifted.p_upper == pytest.approx(senm(y, t, s, 1.5).p_upper)


def test_missing_units_invalid_sets_and_bad_input():
    y, t, s = random_sets(np.random.default_rng(4), n_sets=10)
    y = y.copy()
    single = [k for k in range(10) if t[s == k].sum() == 1]
    y[np.flatnonzero(t & (s == single[0]))] = np.nan  # its treated unit unseen: the set is dropped
    r = senm(y, t, s)
    assert r.n_sets == 9 and r.n_sets_dropped == 1
    with pytest.raises(ValueError):
        senm([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 0], [0, 0, 0, 0])  # two treated and two controls
    with pytest.raises(ValueError):
        senm(y, t, s, 0.5)
    with pytest.raises(ValueError):
        senm([1.0, 1.0], [1, 0], [0, 0])  # every difference 0: no scale
    assert math.isnan(senm_summary([1.0, 1.0], [1, 0], [0, 0])["gamma_star"])
    assert math.isnan(senm(y, t, -np.ones_like(s)).p_upper)

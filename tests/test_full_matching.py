"""Optimal full matching (sim.methods.matching.full) and subclassification
(sim.methods.matching.subclass): the total distance against a brute-force optimum over all
partitions into valid sets (n <= 8: with ties, a caliper and limits on set sizes), against the
edge-cover linear programme (scipy's HiGHS) at the study's size, and the documented properties
of the sets and of MatchIt's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

from sim.methods.matching import caliper_width
from sim.methods.matching.full import _limits, full_match
from sim.methods.matching.subclass import merge_empty, subclass_weights, subclassify


def partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in partitions(rest):
        yield [[first]] + p
        for i in range(len(p)):
            yield p[:i] + [[first] + p[i]] + p[i + 1:]


def brute_force(d, t, width=None, c_min=1, c_max=None, t_max=None):
    """(most units matched, least total distance among those) over all set partitions: a block
    counts when it is one treated with c_min..c_max controls, or one control with 2..t_max treated
    (only if c_min = 1), every pair within the caliper; other blocks are left unmatched."""
    best = None
    for p in partitions(list(range(len(d)))):
        matched, cost = 0, 0.0
        for b in p:
            bt, bc = [i for i in b if t[i]], [i for i in b if not t[i]]
            ok = bool(bt) and bool(bc) and (len(bt) == 1 or len(bc) == 1)
            if ok and len(bt) == 1:
                ok = len(bc) >= c_min and (c_max is None or len(bc) <= c_max)
            elif ok:
                ok = c_min == 1 and (t_max is None or len(bt) <= t_max)
            if ok and width is not None:
                ok = all(abs(d[i] - d[j]) <= width for i in bt for j in bc)
            if ok:
                matched += len(b)
                cost += sum(abs(d[i] - d[j]) for i in bt for j in bc)
        if best is None or (-matched, cost) < best:
            best = (-matched, cost)
    return -best[0], best[1]


LIMITS = [{}, {"caliper": 0.5}, {"max_controls": 2, "min_controls": 0.5}, {"min_controls": 2, "max_controls": 3},
          {"max_controls": 1, "min_controls": 1 / 3, "caliper": 1.0}]


def test_total_distance_equals_the_brute_force_optimum():
    rng = np.random.default_rng(20261206)
    checked = infeasible = 0
    for it in range(200):
        n = int(rng.integers(2, 9))
        t = rng.random(n) < rng.uniform(0.2, 0.8)
        if t.all() or not t.any():
            continue
        ps = rng.uniform(0.05, 0.95, n)
        if it % 3 == 0:
            ps = np.round(ps, 1)  # ties in the distance
        d = np.log(ps / (1 - ps))
        opts = LIMITS[it % len(LIMITS)]
        c_min, c_max, t_max = _limits(opts.get("min_controls"), opts.get("max_controls"))
        width = caliper_width(d, t, opts.get("caliper"), "pooled")
        m, cost = brute_force(d, t, width, c_min, c_max, t_max)
        try:
            r = full_match(ps, t, **opts)
        except ValueError:  # only when min_controls > 1 leaves a treated unit without a valid set
            assert c_min > 1 and m < n
            infeasible += 1
            continue
        checked += 1
        assert int((r.set_id >= 0).sum()) == m, (it, opts)
        assert r.total_distance == pytest.approx(cost, rel=1e-7, abs=1e-9), (it, opts)
        assert r.total_distance == pytest.approx(np.abs(d[r.treated_idx] - d[r.control_idx]).sum())
    assert checked > 120 and infeasible <= 40


def cohort(seed=1, n=263, n_t=189):
    rng = np.random.default_rng(seed)
    t = np.zeros(n, bool)
    t[:n_t] = True
    ps = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * t)))
    return ps, t


def edge_cover_lp(d, t, lo_t=1, hi_t=None, hi_c=None):
    """min sum |d_i - d_j| x_ij over treated i, control j: every unit covered (degree >= 1),
    degrees <= hi; the bipartite constraint matrix is totally unimodular, so the LP is integral."""
    ti, ci = np.flatnonzero(t), np.flatnonzero(~t)
    nt, nc = ti.size, ci.size
    cost = np.abs(d[ti][:, None] - d[ci][None, :]).ravel()
    rows_t = np.kron(np.eye(nt), np.ones(nc))
    rows_c = np.kron(np.ones(nt), np.eye(nc))
    A = np.vstack([-rows_t, -rows_c])
    b = np.r_[-np.full(nt, lo_t), -np.ones(nc)]
    if hi_t is not None:
        A, b = np.vstack([A, rows_t]), np.r_[b, np.full(nt, hi_t)]
    if hi_c is not None:
        A, b = np.vstack([A, rows_c]), np.r_[b, np.full(nc, hi_c)]
    res = linprog(cost, A_ub=A, b_ub=b, bounds=(0, 1), method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("opts,lp", [({}, {}), ({"max_controls": 3, "min_controls": 0.25}, {"hi_t": 3, "hi_c": 4})])
def test_study_size_matches_the_linear_programme(opts, lp):
    ps, t = cohort(seed=3, n=120, n_t=86)
    d = np.log(ps / (1 - ps))
    r = full_match(ps, t, **opts)
    assert (r.set_id >= 0).all()
    assert r.total_distance == pytest.approx(edge_cover_lp(d, t, **lp), rel=1e-7)


def test_every_unit_matched_in_valid_sets_and_weights_as_matchit():
    ps, t = cohort()
    r = full_match(ps, t)
    assert (r.set_id >= 0).all() and r.n_treated_matched == 189 and r.n_control_matched == 74
    n_t = np.bincount(r.set_id[t], minlength=r.n_sets)
    n_c = np.bincount(r.set_id[~t], minlength=r.n_sets)
    assert np.all(((n_t == 1) & (n_c >= 1)) | ((n_c == 1) & (n_t >= 1)))
    assert r.treated_idx.size == (n_t + n_c - 1).sum()  # stars: one link per non-centre unit
    assert np.all(r.weights[t] == 1.0)
    # unscaled: t/c per control, so each set's controls carry its number of treated
    np.testing.assert_allclose(np.bincount(r.set_id[~t], r.weights_unscaled[~t], r.n_sets), n_t)
    # MatchIt (normalize = TRUE): control weights sum to the matched controls
    assert r.weights[~t].sum() == pytest.approx(74)
    np.testing.assert_allclose(r.weights[~t], r.weights_unscaled[~t] * 74 / 189)
    # sets numbered by their lowest unit index
    first = [np.flatnonzero(r.set_id == s).min() for s in range(r.n_sets)]
    assert first == sorted(first)


def test_weights_on_a_hand_example():
    # treated at 0.0 and 0.05 / 2.0 / 2.1, controls at 0.02 / 1.9 / 2.05 and 5.0 (on the logit)
    d = np.array([0.0, 0.05, 2.0, 2.1, 0.02, 1.9, 2.05, 5.0])
    t = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    r = full_match(1 / (1 + np.exp(-d)), t)
    sets = {tuple(np.flatnonzero(r.set_id == s)) for s in range(r.n_sets)}
    # {0, 1 | 4}: one control, two treated; {2 | 5}, {3 | 6, 7}... the optimum decides; check weights
    for s in range(r.n_sets):
        members = np.flatnonzero(r.set_id == s)
        k_t, k_c = t[members].sum(), (~t[members]).sum()
        np.testing.assert_allclose(r.weights_unscaled[members[~t[members]]], k_t / k_c)
    assert (0, 1, 4) in sets  # the two treated near 0 share the control at 0.02
    assert r.weights[~t].sum() == pytest.approx(4)


def test_caliper_drops_units_without_a_partner_and_keeps_links_inside():
    ps, t = cohort(seed=5)
    d = np.log(ps / (1 - ps))
    r = full_match(ps, t, caliper=0.05)
    width = caliper_width(d, t, 0.05, "pooled")
    assert np.all(np.abs(d[r.treated_idx] - d[r.control_idx]) <= width)
    gap = np.abs(d[:, None] - d[None, :])
    opposite = t[:, None] != t[None, :]
    has_partner = ((gap <= width) & opposite).any(axis=1)
    np.testing.assert_array_equal(r.set_id >= 0, has_partner)  # without limits: all others matched
    assert r.weights[(r.set_id < 0)].sum() == 0


def test_limits_respected_and_bad_input_rejected():
    ps, t = cohort(seed=7, n=60, n_t=40)
    r = full_match(ps, t, max_controls=2, min_controls=0.5)
    n_t = np.bincount(r.set_id[t & (r.set_id >= 0)], minlength=r.n_sets)
    n_c = np.bincount(r.set_id[~t & (r.set_id >= 0)], minlength=r.n_sets)
    assert n_c.max() <= 2 and n_t.max() <= 2
    with pytest.raises(ValueError):
        full_match(ps, t, min_controls=2)  # 40 treated x 2 controls > 20 controls
    with pytest.raises(ValueError):
        full_match(np.r_[ps[:-1], 1.0], t)
    with pytest.raises(ValueError):
        full_match(ps, t, max_controls=0.5)


def test_subclasses_at_the_treated_quintiles_with_matchit_weights():
    ps, t = cohort(seed=2)
    r = subclassify(ps, t)
    np.testing.assert_allclose(r.cuts, np.quantile(ps[t], np.linspace(0, 1, 6)))
    # findInterval(all.inside = TRUE): a score at a cut point goes up; outside the range to the ends
    inner = r.cuts[1:-1]
    expected = np.searchsorted(inner, ps, side="right")
    if r.n_subclasses == 5:
        np.testing.assert_array_equal(r.subclass, expected)
    n1 = np.bincount(r.subclass[t])
    n0 = np.bincount(r.subclass[~t])
    assert (n1 > 0).all() and (n0 > 0).all()
    w0 = (n1 / n0)[r.subclass[~t]]
    np.testing.assert_allclose(r.weights[~t], w0 * (~t).sum() / w0.sum())
    assert np.all(r.weights[t] == 1)
    ate = subclass_weights(r.subclass, t, "ate")
    n = n1 + n0
    for arm, k in ((t, n1), (~t, n0)):
        raw = (n / k)[r.subclass[arm]]
        np.testing.assert_allclose(ate[arm], raw * arm.sum() / raw.sum())
    ra = subclassify(ps, t, 4, "ate")
    np.testing.assert_allclose(ra.cuts, np.quantile(ps, np.linspace(0, 1, 5)))


def test_subclasses_without_an_arm_merge_towards_the_middle():
    t = np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)
    sub = np.array([0, 0, 1, 1, 2, 2, 3, 4])  # 0 and 3, 4 lack controls
    out = merge_empty(sub, t)
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 1, 1, 1, 1])
    assert merge_empty(np.array([0, 1, 1]), np.array([1, 0, 1], bool)).tolist() == [0, 0, 0]
    assert merge_empty(np.array([0, 0]), np.array([1, 1], bool)).tolist() == [0, 0]
    ps = np.r_[np.linspace(0.1, 0.5, 20), np.linspace(0.8, 0.9, 10)]
    tt = np.r_[np.zeros(10, bool), np.ones(20, bool)]  # no control above 0.5
    r = subclassify(ps, tt, 5)
    assert r.n_subclasses < 5 and any("merged" in n for n in r.notes)
    assert math.isclose(r.weights[~tt].sum(), 10)

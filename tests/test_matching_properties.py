"""Property-based tests (hypothesis) for sim.methods.matching.

For arbitrary propensity scores in (0, 1) - ties, duplicates, one unit per arm, all treated but
one, values a hair from 0 or 1 - and every algorithm / order / ratio / replacement / caliper /
exact-strata combination the matcher supports:

* the invariants hold (checked here with an independent plain-Python loop and with
  ``check_match`` called directly, not only inside ``match``);
* the result is deterministic for a given rng and the inputs are left untouched;
* the number of links never exceeds min(n_t * ratio, n_c) without replacement;
* optimal 1:1 with a caliper finds at least as many pairs as greedy (any order) and, with as
  many pairs, a total distance no larger;
* optimal on tiny inputs equals a brute-force enumeration of all matchings (max number of links
  within the caliper, then min total distance), for ratio 1 and ratio 2.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.methods.matching import CALIPER_SDS, ORDERS, caliper_width, check_match, match

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

TIE_VALUES = [0.125, 0.25, 0.375, 0.5, 0.625, 0.75]  # dyadic: exact distance ties on both scales' inputs
EXTREMES = [5e-324, 1e-300, 1e-12, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-12, float(np.nextafter(1.0, 0.0))]


def logit(p):
    return np.log(p) - np.log1p(-p)  # the implementation's formula, so exact ties agree


# a coarse grid on the logit scale (-6..6 by 0.25) and one on the ps scale (k/16): structured
# configurations with exact or near ties and links several logits long (a caliper of 1-5 SDs
# admits them), which is where optimal matching is hardest to get right
logit_grid = st.integers(-24, 24).map(lambda k: float(1.0 / (1.0 + np.exp(-k / 4.0))))
ps_grid = st.integers(1, 15).map(lambda k: k / 16.0)
mixed = st.one_of(
    st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True),
    st.sampled_from(TIE_VALUES),
    st.sampled_from(EXTREMES),
    logit_grid,
    ps_grid,
)
VALUE_KINDS = {"mixed": mixed, "logit_grid": logit_grid, "ps_grid": ps_grid}


@st.composite
def samples(draw, max_treated=10, max_control=10):
    """(score, treated, exact) with >= 1 unit per arm; duplicates of earlier scores are likely."""
    n_t = draw(st.integers(1, max_treated))
    n_c = draw(st.integers(1, max_control))
    n = n_t + n_c
    values = VALUE_KINDS[draw(st.sampled_from(sorted(VALUE_KINDS)))]
    pool = draw(st.lists(values, min_size=1, max_size=n))
    # each unit takes a fresh value or repeats one from the pool (ties across and within arms)
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    score = np.array([pool[i] for i in picks], dtype=float)
    treated = np.array(draw(st.permutations([1] * n_t + [0] * n_c)), dtype=int)
    exact = draw(st.none() | st.lists(st.integers(0, 2), min_size=n, max_size=n).map(np.array))
    return score, treated, exact


options = st.fixed_dictionaries(
    {
        "algorithm": st.sampled_from(["greedy", "optimal"]),
        "order": st.sampled_from(ORDERS),
        "ratio": st.integers(1, 3),
        "replace": st.booleans(),
        "caliper": st.sampled_from([None, 0.01, 0.2, 1.0, 5.0]),
        "caliper_scale": st.sampled_from(["logit", "ps"]),
        "caliper_sd": st.sampled_from(CALIPER_SDS),
    }
)


def distance_score(score, scale):
    return logit(score) if scale == "logit" else score


def plain_python_invariants(res, d, treated, width, ratio, replace, exact):
    """The invariants again, one link at a time (independent of check_match's numpy code)."""
    links = list(zip(res.treated_idx.tolist(), res.control_idx.tolist()))
    assert res.n_pairs == len(links)
    per_treated, per_control = {}, {}
    for t, c in links:
        assert treated[t] == 1 and treated[c] == 0
        if width is not None:
            assert abs(d[t] - d[c]) <= width
        if exact is not None:
            assert exact[t] == exact[c]
        per_treated.setdefault(t, []).append(c)
        per_control.setdefault(c, []).append(t)
    for t, cs in per_treated.items():
        assert len(cs) <= ratio and len(set(cs)) == len(cs)
    if not replace:
        assert all(len(ts) == 1 for ts in per_control.values())
    matched = sorted(per_treated)
    assert res.n_treated_matched == len(matched)
    pid = {t: i for i, t in enumerate(matched)}
    for u in range(len(d)):
        if treated[u]:
            assert res.pair_id[u] == pid.get(u, -1)
            assert res.weights[u] == (1.0 if u in pid else 0.0)
        else:
            ts = per_control.get(u, [])
            assert res.pair_id[u] == (min(pid[t] for t in ts) if ts else -1)
            assert res.weights[u] == pytest.approx(sum(1.0 / len(per_treated[t]) for t in ts), abs=1e-12)


@settings(max_examples=400, **SETTINGS)
@given(sample=samples(), opts=options, seed=st.integers(0, 2**32 - 1))
def test_invariants_bounds_and_determinism(sample, opts, seed):
    score, treated, exact = sample
    inputs = (score.copy(), treated.copy(), None if exact is None else exact.copy())
    res = match(score, treated, exact=exact, rng=np.random.default_rng(seed), **opts)
    d = distance_score(score, opts["caliper_scale"])
    width = caliper_width(d, treated, opts["caliper"], opts["caliper_sd"])
    assert res.caliper_width == width
    ratio, replace = opts["ratio"], opts["replace"]
    check_match(res, d, treated, width, ratio, replace, exact)
    plain_python_invariants(res, d, treated, width, ratio, replace, exact)
    n_t, n_c = int(treated.sum()), int((1 - treated).sum())
    assert (res.n_treated, res.n_control) == (n_t, n_c)
    if replace:
        assert res.n_pairs <= n_t * min(ratio, n_c)
    else:
        assert res.n_pairs <= min(n_t * ratio, n_c)
    # deterministic for a given rng; inputs untouched
    again = match(score, treated, exact=exact, rng=np.random.default_rng(seed), **opts)
    for field in ("treated_idx", "control_idx", "pair_id", "weights"):
        np.testing.assert_array_equal(getattr(res, field), getattr(again, field))
    assert res.notes == again.notes
    np.testing.assert_array_equal(score, inputs[0])
    np.testing.assert_array_equal(treated, inputs[1])
    if exact is not None:
        np.testing.assert_array_equal(exact, inputs[2])


def _total(res, d):
    return float(np.abs(d[res.treated_idx] - d[res.control_idx]).sum())


def _close(a, b, scale):
    return abs(a - b) <= 1e-9 * (1.0 + scale)


@settings(max_examples=250, **SETTINGS)
@given(sample=samples(max_treated=15, max_control=15), caliper=st.sampled_from([0.01, 0.1, 0.2, 0.5, 2.0]),
       scale=st.sampled_from(["logit", "ps"]), sd=st.sampled_from(CALIPER_SDS), seed=st.integers(0, 1000))
def test_optimal_dominates_greedy_one_to_one(sample, caliper, scale, sd, seed):
    score, treated, exact = sample
    kw = dict(caliper=caliper, caliper_scale=scale, caliper_sd=sd, exact=exact)
    opt = match(score, treated, algorithm="optimal", **kw)
    d = distance_score(score, scale)
    for order in ORDERS:
        g = match(score, treated, order=order, rng=np.random.default_rng(seed), **kw)
        assert opt.n_pairs >= g.n_pairs, order
        if opt.n_pairs == g.n_pairs:
            assert _total(opt, d) <= _total(g, d) + 1e-9 * (1.0 + _total(g, d)), order


def brute_force_optimal(d, treated, width, ratio, exact):
    """Enumerate every matching (each control to one treated unit with room, or to none) and
    return (max number of links within the caliper, min total |distance| among those)."""
    T = [i for i in range(len(d)) if treated[i]]
    C = [i for i in range(len(d)) if not treated[i]]

    def ok(t, c):
        return (width is None or abs(d[t] - d[c]) <= width) and (exact is None or exact[t] == exact[c])

    options_of = [[t for t in T if ok(t, c)] for c in C]
    room = {t: ratio for t in T}
    best = [0, 0.0]

    def walk(j, links, total):
        if j == len(C):
            if links > best[0] or (links == best[0] and total < best[1]):
                best[:] = [links, total]
            return
        c = C[j]
        walk(j + 1, links, total)  # c unmatched
        for t in options_of[j]:
            if room[t]:
                room[t] -= 1
                walk(j + 1, links + 1, total + abs(d[t] - d[c]))
                room[t] += 1

    walk(0, 0, 0.0)
    return best[0], best[1]


@settings(max_examples=300, **SETTINGS)
@given(sample=samples(max_treated=6, max_control=6), caliper=st.sampled_from([None, 0.05, 0.2, 0.5, 1.0, 2.0]),
       scale=st.sampled_from(["logit", "ps"]), sd=st.sampled_from(CALIPER_SDS))
def test_optimal_one_to_one_equals_brute_force(sample, caliper, scale, sd):
    score, treated, exact = sample
    res = match(score, treated, algorithm="optimal", caliper=caliper, caliper_scale=scale, caliper_sd=sd,
                exact=exact)
    d = distance_score(score, scale)
    k, total = brute_force_optimal(d, treated, res.caliper_width, 1, exact)
    assert res.n_pairs == k
    assert _close(_total(res, d), total, total)


@settings(max_examples=150, **SETTINGS)
@given(sample=samples(max_treated=3, max_control=5), caliper=st.sampled_from([None, 0.2, 1.0, 2.0]),
       scale=st.sampled_from(["logit", "ps"]))
def test_optimal_ratio2_equals_brute_force(sample, caliper, scale):
    score, treated, exact = sample
    res = match(score, treated, algorithm="optimal", ratio=2, caliper=caliper, caliper_scale=scale,
                exact=exact)
    d = distance_score(score, scale)
    k, total = brute_force_optimal(d, treated, res.caliper_width, 2, exact)
    assert res.n_pairs == k
    assert _close(_total(res, d), total, total)


@settings(max_examples=100, **SETTINGS)
@given(n_t=st.integers(1, 6), value=st.sampled_from(TIE_VALUES + EXTREMES[:3] + EXTREMES[-3:]),
       opts=options, seed=st.integers(0, 100))
def test_all_treated_but_one_and_all_equal_scores(n_t, value, opts, seed):
    """Degenerate shapes: one control, every score equal (zero SDs -> width 0; distance 0 is in)."""
    score = np.full(n_t + 1, value)
    treated = np.r_[np.ones(n_t, int), 0]
    res = match(score, treated, rng=np.random.default_rng(seed), **opts)
    d = distance_score(score, opts["caliper_scale"])
    check_match(res, d, treated, res.caliper_width, opts["ratio"], opts["replace"])
    assert res.n_pairs == (n_t if opts["replace"] else 1)  # every pair is at distance 0

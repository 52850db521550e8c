"""Tests for sim.methods.matching: greedy vs brute force, optimal vs exhaustive search."""

import dataclasses
import itertools
import time
import zlib

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import sim.methods.matching as matching_module
from sim.methods.matching import (
    MAX_OPTIMAL_CELLS,
    MatchingInvariantError,
    caliper_width,
    check_match,
    match,
)

ORDERS = ["largest", "smallest", "random", "data", "closest"]


# ---------------------------------------------------------------- references


def logit(p):
    # same floating-point formula as the implementation, so exact ties agree
    return np.log(p) - np.log1p(-p)


def ref_width(score, treated, caliper, scale, sd_kind):
    """Caliper width by hand."""
    if caliper is None:
        return None
    d = logit(score) if scale == "logit" else score
    t = treated.astype(bool)
    s_t = np.std(d[t], ddof=1)
    s_c = np.std(d[~t], ddof=1)
    sd = {"pooled": np.sqrt((s_t**2 + s_c**2) / 2), "whole": np.std(d, ddof=1), "treated": s_t}[sd_kind]
    return caliper * sd


def ref_order(score, treated, order, seed):
    tr = [i for i in range(len(score)) if treated[i]]
    if order == "largest":
        return sorted(tr, key=lambda i: (-score[i], i))
    if order == "smallest":
        return sorted(tr, key=lambda i: (score[i], i))
    if order == "random":
        perm = np.random.default_rng(seed).permutation(len(tr))
        return [tr[j] for j in perm]
    return tr  # data / closest


def brute_greedy(score, treated, *, order, width, ratio=1, replace=False, exact=None, seed=0, scale="logit"):
    """Plain O(n^2) greedy matching with the documented tie rules; returns set of links."""
    d = logit(score) if scale == "logit" else score
    n = len(score)
    controls = [i for i in range(n) if not treated[i]]
    avail = set(controls)
    mine = {i: [] for i in range(n)}
    links = set()

    def allowed(t, c):
        if exact is not None and exact[t] != exact[c]:
            return False
        if not replace and c not in avail:
            return False
        if c in mine[t]:
            return False
        return width is None or abs(d[t] - d[c]) <= width

    active = ref_order(score, treated, order, seed)
    for _ in range(ratio):
        nxt = []
        if order == "closest" and not replace:
            pending = set(active)
            while True:
                cands = [(abs(d[t] - d[c]), t, c) for t in pending for c in controls if allowed(t, c)]
                if not cands:
                    break
                _, t, c = min(cands)
                pending.discard(t)
                avail.discard(c)
                mine[t].append(c)
                links.add((t, c))
                nxt.append(t)
            nxt.sort()
        else:
            for t in active:
                cands = [(abs(d[t] - d[c]), c) for c in controls if allowed(t, c)]
                if not cands:
                    continue
                _, c = min(cands)
                avail.discard(c)
                mine[t].append(c)
                links.add((t, c))
                nxt.append(t)
        active = nxt
    return links


def random_case(rng, n=None, ties=False):
    n = n or int(rng.integers(2, 16))
    treated = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(int)
    if ties:  # few dyadic scores -> many exact distance ties on the ps scale
        score = rng.choice([0.125, 0.25, 0.375, 0.5, 0.625, 0.75], size=n)
    else:
        score = rng.uniform(0.02, 0.98, size=n)
    return score, treated


def links_of(res):
    return set(zip(res.treated_idx.tolist(), res.control_idx.tolist()))


# ---------------------------------------------------------------- greedy vs brute force


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    "variant", ["plain", "nocaliper", "ratio2", "replace", "exact", "ps_scale", "ties_ps"]
)
def test_greedy_matches_bruteforce(order, variant):
    rng = np.random.default_rng(zlib.crc32(f"{order}-{variant}".encode()))
    for rep in range(200):
        score, treated = random_case(rng, ties=rep % 3 == 0 or variant == "ties_ps")
        if treated.sum() < 2 or (1 - treated).sum() < 2:
            continue
        kw = dict(caliper=float(rng.choice([0.1, 0.3, 1.0])), caliper_scale="logit", caliper_sd="pooled")
        ratio, replace, exact = 1, False, None
        if variant == "nocaliper":
            kw["caliper"] = None
        elif variant == "ratio2":
            ratio = 2
        elif variant == "replace":
            replace = True
            ratio = int(rng.integers(1, 3))
        elif variant == "exact":
            exact = rng.integers(0, 2, size=score.size)
        elif variant == "ps_scale":
            kw["caliper_scale"] = "ps"
            kw["caliper_sd"] = str(rng.choice(["pooled", "whole", "treated"]))
        elif variant == "ties_ps":
            kw["caliper_scale"] = "ps"
            kw["caliper"] = [None, 1.0][rep % 2]
            ratio = [1, 2][rep % 2]
            replace = rep % 4 == 3
        seed = rep
        res = match(score, treated, order=order, ratio=ratio, replace=replace, exact=exact,
                    rng=np.random.default_rng(seed), **kw)
        width = ref_width(score, treated, kw["caliper"], kw["caliper_scale"], kw["caliper_sd"])
        if width is None:
            assert res.caliper_width is None
        else:
            assert res.caliper_width == pytest.approx(width, rel=1e-12)
        # Use the implementation's width so float rounding cannot flip a borderline pair.
        expected = brute_greedy(score, treated, order=order, width=res.caliper_width, ratio=ratio,
                                replace=replace, exact=exact, seed=seed, scale=kw["caliper_scale"])
        assert links_of(res) == expected, (rep, score, treated)


def test_greedy_large_random_vs_bruteforce_moderate_n():
    rng = np.random.default_rng(7)
    for order in ORDERS:
        score, treated = random_case(rng, n=120)
        res = match(score, treated, order=order, caliper=0.2, rng=np.random.default_rng(1))
        exp = brute_greedy(score, treated, order=order, width=res.caliper_width, seed=1)
        assert links_of(res) == exp


def test_tie_rule_lowest_control_index():
    # controls 1 and 3 have identical scores; treated 0 lies between two equal-distance
    # groups: both sides tie -> lowest index wins.
    score = np.array([0.5, 0.75, 0.25, 0.75, 0.25])  # exact binary fractions: exact ties
    treated = np.array([1, 0, 0, 0, 0])
    for replace in (False, True):
        res = match(score, treated, caliper=None, caliper_scale="ps", replace=replace)
        assert res.control_idx.tolist() == [1]
        res = match(score, treated, caliper=None, caliper_scale="ps", ratio=3, replace=replace)
        assert res.control_idx.tolist() == [1, 2, 3]
    # reversed roles: the left-hand group now has the lower indices
    score = np.array([0.5, 0.25, 0.75, 0.25, 0.75])
    res = match(score, treated, caliper=None, caliper_scale="ps", order="closest")
    assert res.control_idx.tolist() == [1]


def test_order_matters_and_largest_first():
    # treated 0 (ps .6) and 1 (ps .5); single control at .55 -> nearer-by-logit wins only if first.
    score = np.array([0.6, 0.5, 0.56])
    treated = np.array([1, 1, 0])
    assert match(score, treated, caliper=None, order="largest").treated_idx.tolist() == [0]
    assert match(score, treated, caliper=None, order="smallest").treated_idx.tolist() == [1]
    assert match(score, treated, caliper=None, order="data").treated_idx.tolist() == [0]
    # closest: |logit(.56)-logit(.5)| = 0.2412 < |logit(.6)-logit(.56)| = 0.1643? check by hand
    d = logit(score)
    closer = 0 if abs(d[0] - d[2]) < abs(d[1] - d[2]) else 1
    assert match(score, treated, caliper=None, order="closest").treated_idx.tolist() == [closer]


# ---------------------------------------------------------------- caliper widths by hand


@pytest.mark.parametrize("scale", ["logit", "ps"])
@pytest.mark.parametrize("sd_kind", ["pooled", "whole", "treated"])
def test_caliper_width_by_hand(scale, sd_kind):
    score = np.array([0.1, 0.2, 0.4, 0.3, 0.5, 0.9])
    treated = np.array([1, 1, 1, 0, 0, 0])
    d = np.log(score / (1 - score)) if scale == "logit" else score
    var_t = sum((x - d[:3].mean()) ** 2 for x in d[:3]) / 2
    var_c = sum((x - d[3:].mean()) ** 2 for x in d[3:]) / 2
    var_all = sum((x - d.mean()) ** 2 for x in d) / 5
    sd = {"pooled": ((var_t + var_c) / 2) ** 0.5, "whole": var_all**0.5, "treated": var_t**0.5}[sd_kind]
    res = match(score, treated, caliper=0.2, caliper_scale=scale, caliper_sd=sd_kind)
    assert res.caliper_width == pytest.approx(0.2 * sd, rel=1e-12)
    # every matched pair respects the width
    dist = np.abs(d[res.treated_idx] - d[res.control_idx])
    assert np.all(dist <= res.caliper_width)


def test_caliper_boundary_inclusive():
    # one unit per group -> SDs count as 0 -> width 0; distance 0 is still allowed (|d| <= width)
    res = match(np.array([0.4, 0.4]), np.array([1, 0]), caliper=0.2)
    assert res.caliper_width == 0.0 and res.n_pairs == 1


def test_no_caliper_matches_all_when_enough_controls():
    rng = np.random.default_rng(0)
    score = rng.uniform(0.05, 0.95, 50)
    treated = np.r_[np.ones(20, int), np.zeros(30, int)]
    res = match(score, treated, caliper=None)
    assert res.n_pairs == 20 and res.caliper_width is None
    assert "no caliper" in res.notes


# ---------------------------------------------------------------- more treated than controls


def test_more_treated_than_controls():
    rng = np.random.default_rng(11)
    treated = np.r_[np.ones(189, int), np.zeros(74, int)]
    score = np.clip(rng.beta(3, 2, 263), 0.01, 0.99)
    res = match(score, treated, caliper=None)
    assert res.n_pairs == 74 and res.n_treated == 189 and res.n_control == 74
    assert any("more treated (189) than controls (74): at most 74 pairs" in s for s in res.notes)
    assert len(set(res.control_idx.tolist())) == 74
    res = match(score, treated, caliper=0.2)
    assert res.n_pairs <= 74
    assert any("unmatched" in s for s in res.notes)


# ---------------------------------------------------------------- result structure


def test_pair_id_and_weights_ratio_and_replace():
    score = np.array([0.30, 0.60, 0.31, 0.29, 0.61, 0.62, 0.9])
    treated = np.array([1, 1, 0, 0, 0, 0, 0])
    res = match(score, treated, caliper=None, ratio=2)
    # treated 0 -> {2,3}; treated 1 -> {4,5}
    assert links_of(res) == {(0, 2), (0, 3), (1, 4), (1, 5)}
    assert res.pair_id.tolist() == [0, 1, 0, 0, 1, 1, -1]
    assert res.weights.tolist() == [1, 1, 0.5, 0.5, 0.5, 0.5, 0]
    assert res.n_pairs == 4 and res.n_treated_matched == 2
    # replacement: both treated near the same control
    score = np.array([0.30, 0.31, 0.305, 0.9])
    treated = np.array([1, 1, 0, 0])
    res = match(score, treated, caliper=None, replace=True)
    assert links_of(res) == {(0, 2), (1, 2)}
    assert res.weights.tolist() == [1, 1, 2, 0]
    assert res.pair_id.tolist() == [0, 1, 0, -1]  # control carries smallest set id


def test_weights_sum_and_alignment_random():
    rng = np.random.default_rng(3)
    for _ in range(30):
        score, treated = random_case(rng, n=40)
        if treated.sum() < 2 or (1 - treated).sum() < 2:
            continue
        k = int(rng.integers(1, 4))
        res = match(score, treated, ratio=k, replace=bool(rng.integers(0, 2)), caliper=0.5)
        assert np.all(treated[res.treated_idx] == 1) and np.all(treated[res.control_idx] == 0)
        assert res.weights[treated == 1].sum() == pytest.approx(res.n_treated_matched)
        assert res.weights[treated == 0].sum() == pytest.approx(res.n_treated_matched)
        assert np.all(np.diff(res.pair_id[res.treated_idx]) >= 0)


def test_exact_never_crosses_strata():
    rng = np.random.default_rng(5)
    score = rng.uniform(0.1, 0.9, 300)
    treated = (rng.random(300) < 0.4).astype(int)
    exact = rng.integers(0, 4, 300)
    for algo in ["greedy", "optimal"]:
        res = match(score, treated, exact=exact, caliper=None, algorithm=algo)
        assert np.all(exact[res.treated_idx] == exact[res.control_idx])


def test_large_n_runs_without_dense_matrix():
    rng = np.random.default_rng(0)
    n = 100_000
    score = rng.uniform(0.01, 0.99, n)
    treated = (rng.random(n) < 0.4).astype(int)
    res = match(score, treated)
    assert res.n_pairs > 0.9 * treated.sum()


# ---------------------------------------------------------------- optimal


def exhaustive_optimal(d, treated, width):
    """(max #pairs within caliper, min total distance among those) by full enumeration."""
    T = [i for i in range(len(d)) if treated[i]]
    C = [i for i in range(len(d)) if not treated[i]]
    best = (0, 0.0)
    for k in range(1, min(len(T), len(C)) + 1):
        for ts in itertools.combinations(T, k):
            for cs in itertools.permutations(C, k):
                dist = [abs(d[t] - d[c]) for t, c in zip(ts, cs)]
                if width is not None and max(dist) > width:
                    continue
                cand = (k, sum(dist))
                if cand[0] > best[0] or (cand[0] == best[0] and cand[1] < best[1]):
                    best = cand
    return best


def test_optimal_vs_exhaustive():
    rng = np.random.default_rng(21)
    checked = 0
    for rep in range(150):
        score, treated = random_case(rng, n=int(rng.integers(3, 9)))
        if treated.sum() < 2 or (1 - treated).sum() < 2:
            continue
        cal = [None, 0.2, 0.5, 1.0][rep % 4]
        res = match(score, treated, algorithm="optimal", caliper=cal)
        d = logit(score)
        k, tot = exhaustive_optimal(d, treated, res.caliper_width)
        got = np.abs(d[res.treated_idx] - d[res.control_idx])
        assert res.n_pairs == k
        assert got.sum() == pytest.approx(tot, abs=1e-9)
        checked += 1
    assert checked > 50


def test_optimal_vs_linear_sum_assignment_no_caliper():
    rng = np.random.default_rng(4)
    for _ in range(20):
        score, treated = random_case(rng, n=60)
        res = match(score, treated, algorithm="optimal", caliper=None)
        d = logit(score)
        cost = np.abs(d[treated == 1][:, None] - d[treated == 0][None, :])
        r, c = linear_sum_assignment(cost)
        assert res.n_pairs == len(r)
        assert np.abs(d[res.treated_idx] - d[res.control_idx]).sum() == pytest.approx(cost[r, c].sum())


def test_optimal_at_least_as_many_pairs_as_greedy():
    rng = np.random.default_rng(9)
    for _ in range(30):
        score, treated = random_case(rng, n=80)
        if treated.sum() < 2 or (1 - treated).sum() < 2:
            continue
        g = match(score, treated, caliper=0.1)
        o = match(score, treated, caliper=0.1, algorithm="optimal")
        assert o.n_pairs >= g.n_pairs


def test_optimal_ratio2_exhaustive_small():
    # 2 treated, 4 controls, ratio 2 without caliper -> total distance of best split
    score = np.array([0.3, 0.6, 0.25, 0.35, 0.55, 0.7])
    treated = np.array([1, 1, 0, 0, 0, 0])
    d = logit(score)
    res = match(score, treated, algorithm="optimal", ratio=2, caliper=None)
    best = min(
        sum(abs(d[0] - d[c]) for c in a) + sum(abs(d[1] - d[c]) for c in set([2, 3, 4, 5]) - set(a))
        for a in itertools.combinations([2, 3, 4, 5], 2)
    )
    assert res.n_pairs == 4
    assert np.abs(d[res.treated_idx] - d[res.control_idx]).sum() == pytest.approx(best)


def test_optimal_size_limit():
    n = int(np.sqrt(MAX_OPTIMAL_CELLS)) * 2 + 10
    score = np.linspace(0.01, 0.99, n)
    treated = np.arange(n) % 2
    with pytest.raises(ValueError, match="optimal"):
        match(score, treated, algorithm="optimal")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(algorithm="best"), "algorithm"),
        (dict(order="biggest"), "order"),
        (dict(caliper_scale="log"), "caliper_scale"),
        (dict(caliper_sd="sd"), "caliper_sd"),
        (dict(caliper=0), "caliper"),
        (dict(caliper=-0.2), "caliper"),
        (dict(caliper="0.2"), "caliper"),
        (dict(ratio=0), "ratio"),
        (dict(ratio=1.5), "ratio"),
        (dict(order="random"), "rng"),
        (dict(exact=np.array([0.5, 1, 2, 3])), "exact"),
        (dict(exact=np.array([0, 1])), "exact"),
    ],
)
def test_validation_errors(kwargs, msg):
    score = np.array([0.2, 0.4, 0.5, 0.7])
    treated = np.array([1, 0, 1, 0])
    with pytest.raises(ValueError, match=msg):
        match(score, treated, **kwargs)


def test_validation_score_and_treated():
    with pytest.raises(ValueError, match="score"):
        match(np.array([0.0, 0.5]), np.array([1, 0]))
    with pytest.raises(ValueError, match="treated"):
        match(np.array([0.2, 0.5]), np.array([1, 2]))
    with pytest.raises(ValueError, match="treated"):
        match(np.array([0.2, 0.5]), np.array([1, 0, 1]))
    # ps scale accepts 0 and 1
    res = match(np.array([0.0, 1.0, 0.1]), np.array([1, 1, 0]), caliper_scale="ps", caliper=None)
    assert res.n_pairs == 1


def test_degenerate_groups():
    res = match(np.array([0.2, 0.4]), np.array([1, 1]))
    assert res.n_pairs == 0 and res.pair_id.tolist() == [-1, -1]
    res = match(np.array([0.2, 0.4]), np.array([0, 0]))
    assert res.n_pairs == 0
    res = match(np.array([0.2, 0.4]), np.array([1, 0]))  # SDs with one unit per group count as 0
    assert res.caliper_width == 0.0 and res.n_pairs == 0


# ---------------------------------------------------------------- run-time invariants (check_match)


def _case_for_checks():
    rng = np.random.default_rng(163)
    score = rng.uniform(0.05, 0.95, 60)
    treated = (rng.random(60) < 0.4).astype(int)
    return score, treated, logit(score)


def _broken(rule, result, d, treated, width, ratio=1, replace=False, exact=None):
    with pytest.raises(MatchingInvariantError, match=f"'{rule}'") as info:
        check_match(result, d, treated, width, ratio, replace, exact)
    assert "bug" in str(info.value)
    assert isinstance(info.value, AssertionError) and not isinstance(info.value, ValueError)


def test_check_match_accepts_real_results():
    score, treated, d = _case_for_checks()
    exact = np.arange(60) % 2
    for kw in [dict(), dict(caliper=None), dict(ratio=3), dict(replace=True, ratio=2),
               dict(algorithm="optimal", ratio=2), dict(exact=exact, order="closest")]:
        res = match(score, treated, **kw)
        check_match(res, d, treated, res.caliper_width, kw.get("ratio", 1), kw.get("replace", False),
                    kw.get("exact"))


def test_check_match_catches_an_ignored_caliper():
    # MatchIt issue #163: a build silently ignored the caliper. Reproduce the symptom
    # (links formed without a caliper, reported with a width) and require the check to fire.
    score, treated, d = _case_for_checks()
    width = caliper_width(d, treated, 0.05, "pooled")
    res = match(score, treated, caliper=None)
    assert np.abs(d[res.treated_idx] - d[res.control_idx]).max() > width
    _broken("caliper", dataclasses.replace(res, caliper_width=width), d, treated, width)
    # one link a hair beyond the width is caught; at the width itself it is not
    res = match(score, treated, caliper=0.05)
    far = np.abs(d[res.treated_idx] - d[res.control_idx]).max()
    check_match(res, d, treated, res.caliper_width, 1, False)
    _broken("caliper", dataclasses.replace(res, caliper_width=far * 0.999), d, treated, far * 0.999)
    check_match(dataclasses.replace(res, caliper_width=far), d, treated, far, 1, False)


def test_check_match_catches_each_corruption():
    score, treated, d = _case_for_checks()
    res = match(score, treated, caliper=0.2, ratio=2)
    w = res.caliper_width
    tl, cl = res.treated_idx, res.control_idx
    assert res.n_pairs >= 6 and tl[0] == tl[1]
    assert np.any((treated == 0) & (res.pair_id < 0)) and res.n_treated_matched < res.n_treated
    rep = dataclasses.replace
    # a control used twice without replacement
    cl2 = cl.copy()
    cl2[1] = cl2[0]
    _broken("no reuse", rep(res, control_idx=cl2), d, treated, w, ratio=2)
    # roles swapped
    _broken("roles", rep(res, treated_idx=cl, control_idx=tl), d, treated, w, ratio=2)
    # more controls than ratio
    _broken("ratio", res, d, treated, w, ratio=1)
    # exact strata crossed
    exact = np.zeros(60, int)
    exact[cl[0]] = 1
    _broken("exact", res, d, treated, w, ratio=2, exact=exact)
    # pair ids, weights, counts
    pid = res.pair_id.copy()
    pid[cl[-1]] = 0 if pid[cl[-1]] else 1
    _broken("pair_id", rep(res, pair_id=pid), d, treated, w, ratio=2)
    unmatched_c = np.flatnonzero((treated == 0) & (res.pair_id < 0))[0]
    pid = res.pair_id.copy()
    pid[unmatched_c] = 0
    _broken("pair_id", rep(res, pair_id=pid), d, treated, w, ratio=2)
    wt = res.weights.copy()
    wt[cl[0]] += 0.5
    _broken("weights", rep(res, weights=wt), d, treated, w, ratio=2)
    wt = res.weights.copy()
    wt[tl[0]] = np.nan
    _broken("weights", rep(res, weights=wt), d, treated, w, ratio=2)
    _broken("links", rep(res, n_pairs=res.n_pairs - 1), d, treated, w, ratio=2)
    _broken("counts", rep(res, n_treated_matched=res.n_treated_matched + 1), d, treated, w, ratio=2)
    unmatched_t = np.flatnonzero((treated == 1) & (res.pair_id < 0))[0]
    pid = res.pair_id.copy()
    pid[unmatched_t] = res.n_treated_matched
    _broken("pair_id", rep(res, pair_id=pid), d, treated, w, ratio=2)
    _broken("counts", rep(res, n_control=res.n_control + 1), d, treated, w, ratio=2)
    # links out of order (sets reversed) or farther control first within a set
    _broken("link order", rep(res, treated_idx=tl[::-1], control_idx=cl[::-1]), d, treated, w, ratio=2)
    cl2 = cl.copy()
    cl2[[0, 1]] = cl2[[1, 0]]
    assert tl[0] == tl[1] and abs(d[tl[0]] - d[cl[0]]) < abs(d[tl[0]] - d[cl[1]])
    _broken("link order", rep(res, control_idx=cl2), d, treated, w, ratio=2)
    # index out of range, negative index (which numpy would silently wrap)
    cl2 = cl.copy()
    cl2[0] = 60
    _broken("links", rep(res, control_idx=cl2), d, treated, w, ratio=2)
    cl2[0] = -1
    _broken("links", rep(res, control_idx=cl2), d, treated, w, ratio=2)
    # caliper_width reported differently from the width used
    _broken("caliper", res, d, treated, 1.0, ratio=2)
    # with replacement: the same link twice
    res = match(score, treated, caliper=None, ratio=2, replace=True)
    cl2 = res.control_idx.copy()
    cl2[1] = cl2[0]
    _broken("no reuse", dataclasses.replace(res, control_idx=cl2), d, treated, None, ratio=2, replace=True)


def test_match_runs_the_check(monkeypatch):
    """A broken core (here: one that forgets the caliper) makes match() raise, not return."""
    score, treated, _ = _case_for_checks()
    real = matching_module._greedy_ordered

    def no_caliper(dt, tid, dc, cid, ratio, width):
        return real(dt, tid, dc, cid, ratio, None)

    monkeypatch.setattr(matching_module, "_greedy_ordered", no_caliper)
    with pytest.raises(MatchingInvariantError, match="'caliper'"):
        match(score, treated, caliper=0.01)

    def reuse(dt, tid, dc, cid, ratio, width):
        links = real(dt, tid, dc, cid, ratio, width)
        return [(t, links[0][1], r) for t, _, r in links]

    monkeypatch.setattr(matching_module, "_greedy_ordered", reuse)
    with pytest.raises(MatchingInvariantError, match="'no reuse'"):
        match(score, treated, caliper=None)


def test_check_is_cheap_next_to_a_large_greedy_match():
    rng = np.random.default_rng(1)
    n = 200_000
    score = rng.uniform(0.01, 0.99, n)
    treated = (rng.random(n) < 0.4).astype(int)
    t0 = time.perf_counter()
    res = match(score, treated)
    t_match = time.perf_counter() - t0
    d = logit(score)
    t_check = []
    for _ in range(3):
        t0 = time.perf_counter()
        check_match(res, d, treated, res.caliper_width, 1, False)
        t_check.append(time.perf_counter() - t0)
    # measured ~1-2 % (1e6 rows: ~25 ms of ~2 s); 10 % leaves room for a busy machine
    assert min(t_check) < 0.10 * t_match, (min(t_check), t_match)


# ---------------------------------------------------------------- inclusive caliper boundary, every variant

COMBOS = [(algo, order, replace) for algo in ("greedy", "optimal") for order in ORDERS for replace in (False, True)]


def _boundary_case(mirror):
    """Dyadic scores on the ps scale, caliper_sd='treated': width = 0.25 * SD(.125, .5, .875) = 0.09375.

    Every subtraction below is exact (Sterbenz), so the distances are exactly the width
    (controls 3, 4: matched) or the width plus one ulp of the control score (controls 5, 6:
    not matched). ``mirror`` puts the boundary pairs on the other side of the treated units.
    """
    w = 0.09375
    if not mirror:
        t_scores = [0.125, 0.5, 0.875]
        c_scores = [0.125 + w, 0.5 + w, np.nextafter(0.5 - w, 0.0), np.nextafter(0.875 - w, 0.0)]
    else:
        t_scores = [0.875, 0.5, 0.125]
        c_scores = [0.875 - w, 0.5 - w, np.nextafter(0.5 + w, 1.0), np.nextafter(0.125 + w, 1.0)]
    score = np.array(t_scores + c_scores)
    treated = np.array([1, 1, 1, 0, 0, 0, 0])
    return score, treated, w


@pytest.mark.parametrize("ratio", [1, 2])
@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("algo, order, replace", COMBOS)
def test_caliper_boundary_exact_ps_scale(algo, order, replace, ratio, mirror):
    score, treated, w = _boundary_case(mirror)
    d = score
    assert abs(d[0] - d[3]) == w and abs(d[1] - d[4]) == w
    assert w < abs(d[1] - d[5]) < w + 1e-15 and w < abs(d[2] - d[6]) < w + 1e-15
    assert np.std(score[:3], ddof=1) * 0.25 == w
    res = match(score, treated, algorithm=algo, order=order, replace=replace, ratio=ratio,
                caliper=0.25, caliper_scale="ps", caliper_sd="treated", rng=np.random.default_rng(0))
    assert res.caliper_width == w
    assert links_of(res) == {(0, 3), (1, 4)}, (algo, order, replace, ratio, mirror)


def _caliper_hitting(d, treated, target, sd_kind):
    """(caliper giving width == target exactly, largest caliper below it giving width < target)."""
    c = target / caliper_width(d, treated, 1.0, sd_kind)
    for _ in range(64):
        wdt = caliper_width(d, treated, c, sd_kind)
        if wdt == target:
            break
        c = np.nextafter(c, np.inf if wdt < target else 0.0)
    else:
        return None  # caliper * SD skips over this target: the caller nudges the data
    lo = c
    while caliper_width(d, treated, lo, sd_kind) >= target:
        lo = np.nextafter(lo, 0.0)
    return float(c), float(lo)


# (scores, treated, (treated, control) pair whose distance becomes the width, ratio without / with replace)
WIDTH_DESIGNS = {
    # treated 0 has control 3 near it (right), treated 1 has control 4 near it (left), at about
    # the same distance; everything else far apart
    "isolated": ([0.30, 0.70, 0.10, 0.34, 0.66, 0.97], [1, 1, 1, 0, 0, 0], (0, 3), (1, 1)),
    # control 2 is nearest to both treated units but nearer to treated 0, which takes it first
    # (it comes first in every greedy order: see below); treated 1 must fall back to its second
    # choice, control 3, exactly at the width (greedy "closest" re-queries a treated unit whose
    # first choice was taken; with replacement treated 1 keeps control 2, so ratio 2 reaches 3)
    "contested": ([0.70, 0.50, 0.62, 0.37, 0.95], [1, 1, 0, 0, 0], (1, 3), (1, 2)),
}


def _seed_processing_first(first, n_treated):
    """A seed whose order='random' permutation processes treated unit ``first`` first."""
    return next(s for s in range(1000) if np.random.default_rng(s).permutation(n_treated)[0] == first)


@pytest.mark.parametrize("design", sorted(WIDTH_DESIGNS))
@pytest.mark.parametrize("scale", ["logit", "ps"])
@pytest.mark.parametrize("sd_kind", ["pooled", "whole", "treated"])
@pytest.mark.parametrize("algo, order, replace", COMBOS)
def test_caliper_boundary_width_set_to_a_pair_distance(scale, sd_kind, algo, order, replace, design):
    """Any scale and SD: choose the caliper so that the width the matcher uses equals one
    pair's computed distance; the pair is matched, and not at the next smaller width."""
    raw, treated, (i, j), ratios = WIDTH_DESIGNS[design]
    score, treated = np.array(raw), np.array(treated)
    seed = 0
    if design == "contested" and algo == "greedy":
        if order == "smallest":
            score = 1.0 - score  # treated 0 is now the smallest score
        seed = _seed_processing_first(0, 2)
    for _ in range(100):
        d = logit(score) if scale == "logit" else score
        target = abs(d[i] - d[j])
        hit = _caliper_hitting(d, treated, target, sd_kind)
        if hit is not None:
            break
        score[j] = np.nextafter(score[j], 0.0 if d[j] < d[i] else 1.0)  # another target distance
    assert hit is not None
    c_in, c_out = hit
    kw = dict(algorithm=algo, order=order, replace=replace, ratio=ratios[replace], caliper_scale=scale,
              caliper_sd=sd_kind, rng=np.random.default_rng(seed))
    res = match(score, treated, caliper=c_in, **kw)
    assert res.caliper_width == target
    assert (i, j) in links_of(res)
    res = match(score, treated, caliper=c_out, **kw)
    assert res.caliper_width < target
    assert (i, j) not in links_of(res)

"""The fast matching cores against the reference implementations they replace.

sim.methods.matching.cores keeps the original greedy cores as references, ``_greedy_ordered_py`` and
``_greedy_closest_py`` (plain Python), for the compiled (numba) cores of matching_compiled, and
matching_optimal ``_optimal_dense`` (dense cost matrix, ``linear_sum_assignment``) for the
caliper-sparse optimal core. Here:

* greedy: ``match`` with the compiled cores gives exactly the result of ``match`` with the
  reference cores (same links in the same order, pair ids, weights), for every order, ratio,
  caliper and scale, with tied scores and exact strata (hypothesis, and seeded loops on larger
  inputs), and the cores called directly agree too (controls in any index order, empty sides);
* a 100,000-row greedy match equals the reference;
* optimal with a caliper: the sparse core finds as many links and the same total distance as the
  dense reference, every link within the caliper (on ~2,000 rows, and on small inputs with the
  sparse path forced), links exactly at the caliper width included.

No timings are asserted here (see ``python -m sim.bench``).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.methods.matching as MM
from sim.methods.matching import compiled as MC
from sim.methods.matching import cores as MR
from sim.methods.matching import optimal as MO
from sim.methods.matching import CALIPER_SDS, ORDERS, check_match, match

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
REFERENCE = {"_greedy_ordered": MR._greedy_ordered_py, "_greedy_closest": MR._greedy_closest_py,
             "_optimal": MO._optimal_dense}
TIE_VALUES = [0.125, 0.25, 0.375, 0.5, 0.625, 0.75]  # dyadic: exact distance ties


@pytest.fixture(autouse=True)
def compiled_always(monkeypatch):
    """The compiled greedy kernels for inputs of any size (small strata normally
    run the reference code until the kernels are loaded: see sim.methods.matching.compiled.COMPILED_MIN_UNITS)."""
    monkeypatch.setattr(MC, "COMPILED_MIN_UNITS", 0)


def match_ref(*args, **kwargs):
    """match() with the reference cores."""
    with pytest.MonkeyPatch.context() as mp:
        for name, core in REFERENCE.items():
            mp.setattr(MM, name, core)
        return match(*args, **kwargs)


def assert_same(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def logit(p):
    return np.log(p) - np.log1p(-p)


def distance_score(score, scale):
    return logit(score) if scale == "logit" else score


def total(res, d):
    return float(np.abs(d[res.treated_idx] - d[res.control_idx]).sum())


def tie_heavy(rng, n, levels):
    """Scores in (0, 1) on a grid of `levels` values (many exact ties), or continuous (levels 0)."""
    if levels:
        return (rng.integers(1, levels + 1, n) / (levels + 1.0)).astype(float)
    return rng.uniform(0.02, 0.98, n)


# ------------------------------------------------------------------ greedy: match() vs reference

values = st.one_of(
    st.floats(min_value=1e-6, max_value=1 - 1e-6),
    st.sampled_from(TIE_VALUES),
    st.integers(1, 15).map(lambda k: k / 16.0),
    st.integers(-24, 24).map(lambda k: float(1.0 / (1.0 + np.exp(-k / 4.0)))),
)


@st.composite
def samples(draw, max_treated=25, max_control=25):
    """(score, treated, exact): >= 1 unit per arm, scores often repeated (ties within and across arms)."""
    n_t = draw(st.integers(1, max_treated))
    n_c = draw(st.integers(1, max_control))
    n = n_t + n_c
    pool = draw(st.lists(values, min_size=1, max_size=n))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    score = np.array([pool[i] for i in picks], dtype=float)
    treated = np.array(draw(st.permutations([1] * n_t + [0] * n_c)), dtype=int)
    exact = draw(st.none() | st.lists(st.integers(0, 2), min_size=n, max_size=n).map(np.array))
    return score, treated, exact


@settings(max_examples=400, **SETTINGS)
@given(sample=samples(), order=st.sampled_from(ORDERS), ratio=st.integers(1, 3),
       caliper=st.sampled_from([None, 0.01, 0.2, 1.0]), scale=st.sampled_from(["logit", "ps"]),
       sd=st.sampled_from(CALIPER_SDS), seed=st.integers(0, 1000))
def test_greedy_equals_reference(sample, order, ratio, caliper, scale, sd, seed):
    score, treated, exact = sample
    kw = dict(order=order, ratio=ratio, caliper=caliper, caliper_scale=scale, caliper_sd=sd, exact=exact)
    res = match(score, treated, rng=np.random.default_rng(seed), **kw)
    assert_same(res, match_ref(score, treated, rng=np.random.default_rng(seed), **kw))


@pytest.mark.parametrize("order", ORDERS)
def test_greedy_equals_reference_larger_tied_inputs(order):
    """Seeded inputs of 200-3,000 units, mostly on a coarse grid (long runs of equal scores)."""
    rng = np.random.default_rng(zlib.crc32(order.encode()))
    for rep in range(12):
        n = int(rng.integers(200, 3000))
        score = tie_heavy(rng, n, [0, 7, 40, 300][rep % 4])
        treated = (rng.random(n) < [0.2, 0.5, 0.8][rep % 3]).astype(int)
        exact = rng.integers(0, 4, n) if rep % 2 else None
        kw = dict(order=order, ratio=int(rng.integers(1, 4)), caliper=[None, 0.05, 0.2, 1.0][rep % 4],
                  caliper_scale=["logit", "ps"][rep % 2], exact=exact)
        res = match(score, treated, rng=np.random.default_rng(rep), **kw)
        assert_same(res, match_ref(score, treated, rng=np.random.default_rng(rep), **kw))


def test_greedy_cores_called_directly():
    """The cores on their own: controls in any index order, ties, zero width, empty sides."""
    rng = np.random.default_rng(11)
    cores = [(MC._greedy_ordered, MR._greedy_ordered_py), (MC._greedy_closest, MR._greedy_closest_py)]
    for rep in range(1500):
        nt, nc = (int(k) for k in rng.integers(0, 15, 2))
        if rep % 2:
            dt, dc = rng.integers(0, 6, nt) / 4.0, rng.integers(0, 6, nc) / 4.0
        else:
            dt, dc = rng.normal(size=nt), rng.normal(size=nc)
        ids = rng.permutation(nt + nc)
        tid, cid = ids[:nt], np.sort(ids[nt:])
        if rep % 3 == 0:
            cid = rng.permutation(cid)  # not increasing: the lexsort path
        width = [None, 0.0, 0.1, 0.25, 0.5, 1.0][rep % 6]
        ratio = int(rng.integers(1, 4))
        for fast, ref in cores:
            got = fast(dt, tid, dc, cid, ratio, width)
            want = np.asarray(ref(dt, tid, dc, cid, ratio, width), dtype=np.int64).reshape(-1, 3)
            assert got.dtype == np.int64 and np.array_equal(got, want), (fast.__name__, rep)


@pytest.mark.parametrize("kw", [dict(), dict(order="closest", ratio=2), dict(order="data", caliper=None)],
                         ids=["largest", "closest-ratio2", "data-nocaliper"])
def test_greedy_100k_rows_equal_reference(kw):
    rng = np.random.default_rng(5)
    n = 100_000
    score = tie_heavy(rng, n, 0)
    score[rng.random(n) < 0.2] = 0.5  # a block of exact ties
    treated = (rng.random(n) < 0.35).astype(int)
    res = match(score, treated, **kw)
    assert res.n_pairs > 0
    assert_same(res, match_ref(score, treated, **kw))


# ------------------------------------------------------------------ optimal: sparse vs dense


def _austin_like(n, share, seed):
    """PS of the austin2011 design (10 N(0,1) confounders, Austin's odds ratios), `share` treated."""
    from scipy.optimize import brentq

    rng = np.random.default_rng(seed)
    lp = rng.standard_normal((n, 10)) @ np.log([1.1] * 3 + [1.25] * 3 + [1.5] * 3 + [2.0])
    a = brentq(lambda a: np.mean(1 / (1 + np.exp(-(a + lp)))) - share, -20, 20)
    ps = 1 / (1 + np.exp(-(a + lp)))
    return ps, (rng.random(n) < ps).astype(int)


@pytest.mark.parametrize("share, ratio, caliper, strata", [
    (0.25, 1, 0.2, False), (0.5, 1, 0.2, False), (0.75, 1, 0.2, False), (0.25, 2, 0.2, False),
    (0.5, 1, 0.05, True), (0.3, 1, 1.0, False),
])
def test_optimal_2000_rows_same_total_as_dense(share, ratio, caliper, strata):
    ps, treated = _austin_like(2000, share, seed=int(share * 100) + ratio)
    exact = np.random.default_rng(1).integers(0, 3, ps.size) if strata else None
    kw = dict(algorithm="optimal", caliper=caliper, ratio=ratio, exact=exact)
    res = match(ps, treated, **kw)
    ref = match_ref(ps, treated, **kw)
    d = logit(ps)
    assert res.n_pairs == ref.n_pairs > 0
    assert total(res, d) == pytest.approx(total(ref, d), rel=1e-9, abs=1e-9)
    assert np.abs(d[res.treated_idx] - d[res.control_idx]).max() <= res.caliper_width
    check_match(res, d, treated, res.caliper_width, ratio, False, exact)


@pytest.fixture
def sparse_always(monkeypatch):
    """The sparse optimal core on inputs of any size (normally small ones go to the dense one)."""
    monkeypatch.setattr(MO, "SPARSE_MIN_CELLS", 0)


@settings(max_examples=300, **SETTINGS)
@given(sample=samples(max_treated=12, max_control=12), ratio=st.integers(1, 3),
       caliper=st.sampled_from([0.01, 0.1, 0.2, 0.5, 1.0, 2.0]), scale=st.sampled_from(["logit", "ps"]),
       sd=st.sampled_from(CALIPER_SDS))
def test_optimal_sparse_equals_dense_small(sample, ratio, caliper, scale, sd):
    score, treated, exact = sample
    kw = dict(algorithm="optimal", ratio=ratio, caliper=caliper, caliper_scale=scale, caliper_sd=sd, exact=exact)
    ref = match_ref(score, treated, **kw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MO, "SPARSE_MIN_CELLS", 0)
        res = match(score, treated, **kw)  # check_match runs inside
    d = distance_score(score, scale)
    assert res.n_pairs == ref.n_pairs
    assert total(res, d) == pytest.approx(total(ref, d), rel=1e-9, abs=1e-12)


def test_optimal_sparse_seeded_cores(sparse_always):
    rng = np.random.default_rng(3)
    for rep in range(400):
        nt, nc = (int(k) for k in rng.integers(1, 40, 2))
        if rep % 3 == 0:
            dt, dc = rng.integers(0, 8, nt) / 4.0, rng.integers(0, 8, nc) / 4.0
        else:
            dt, dc = rng.normal(size=nt), rng.normal(size=nc)
        ids = rng.permutation(nt + nc)
        tid, cid = ids[:nt], np.sort(ids[nt:])
        width = [0.0, 0.05, 0.25, 1.0, 3.0][rep % 5]
        ratio = int(rng.integers(1, 4))
        got = np.asarray(MO._optimal(dt, tid, dc, cid, ratio, width)).reshape(-1, 3)
        want = np.asarray(MO._optimal_dense(dt, tid, dc, cid, ratio, width)).reshape(-1, 3)
        score = dict(zip(np.r_[tid, cid].tolist(), np.r_[dt, dc].tolist()))
        dist = np.array([abs(score[t] - score[c]) for t, c, _ in got.tolist()])
        ref = np.array([abs(score[t] - score[c]) for t, c, _ in want.tolist()])
        assert len(got) == len(want), rep
        assert dist.sum() == pytest.approx(ref.sum(), rel=1e-9, abs=1e-12), rep
        assert (dist <= width).all()
        assert len(set(got[:, 1].tolist())) == len(got)  # each control once
        assert np.bincount(np.unique(got[:, 0], return_inverse=True)[1]).max(initial=0) <= ratio
        for t in np.unique(got[:, 0]):  # round = 0, 1, ... within a treated unit's consecutive links
            at = np.flatnonzero(got[:, 0] == t)
            assert np.array_equal(at, np.arange(at[0], at[0] + at.size))
            assert np.array_equal(got[at, 2], np.arange(at.size))


def test_optimal_sparse_links_at_exactly_the_width(sparse_always):
    """Width = the computed distance of a pair (any magnitude): the pair is linked; one ulp less: not."""
    rng = np.random.default_rng(8)
    for _ in range(300):
        x = float(rng.normal() * 10.0 ** rng.integers(-3, 4))
        y = x + float(rng.uniform(0.01, 2.0) * 10.0 ** rng.integers(-3, 2)) * float(rng.choice([-1, 1]))
        w = abs(x - y)
        dt, dc = np.array([x]), np.array([y])
        assert len(np.asarray(MO._optimal(dt, np.r_[0], dc, np.r_[1], 1, w)).reshape(-1, 3)) == 1
        assert len(np.asarray(MO._optimal(dt, np.r_[0], dc, np.r_[1], 1, np.nextafter(w, 0.0))).reshape(-1, 3)) == 0


def test_optimal_without_caliper_or_all_pairs_allowed_is_the_dense_core():
    """No caliper, or a caliper admitting (nearly) every pair: the dense solver, same links."""
    ps, treated = _austin_like(1000, 0.4, seed=2)
    for caliper in (None, 50.0):
        kw = dict(algorithm="optimal", caliper=caliper)
        assert_same(match(ps, treated, **kw), match_ref(ps, treated, **kw))


# ------------------------------------------------------------------ when the compiled kernels run


def test_small_strata_use_the_reference_until_the_kernels_are_loaded(monkeypatch):
    monkeypatch.setattr(MC, "_KERNELS", {})
    monkeypatch.setattr(MC, "COMPILED_MIN_UNITS", 1000)
    assert [MC._compiled(999), MC._compiled(1000)] == [False, True]
    monkeypatch.setattr(MC, "_KERNELS", {"loaded": None})
    assert MC._compiled(1)  # once loaded, for every stratum


def test_a_small_match_does_not_import_numba():
    """The CLI's case: one match of a few hundred rows in a fresh process."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from sim.methods.matching import match; "
            "rng = np.random.default_rng(0); ps = rng.uniform(0.1, 0.9, 263); "
            "r = match(ps, (rng.random(263) < ps).astype(int), order='closest', ratio=2); "
            "print(r.n_pairs > 0, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]

"""The sensitivity and truncation analyses of a batched chunk (sim.methods.batched.sensitivity,
.truncation: rosenbaum, evalue, tost, lee_bounds, composite_rank computed for all pair sets at once)
against the reference: the rows of whole-experiment conditions (psm_chunk) equal psm_replicate's
within 1e-9, with and without an unmeasured confounder and a survival effect, in cohorts small
enough for replicates with one pair, no complete pair, too few observed and no usable unit; pair
sets built to hit every branch (ties, zeros, differences equal to the MCID, constant arms, the
dead with a change, equal observed shares, bounds exactly 0) against the reference functions; the
compiled numerics against numpy and scipy to the bit; and the reference-function fallback."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import special
from scipy.optimize import brentq

from sim.engine import per_replicate
from sim.jobs.psm import psm_chunk, psm_replicate
from sim.methods.batched import rows as R
from sim.methods.batched import sensitivity as S
from sim.methods.batched import truncation as TR
from sim.methods.sensitivity import sensitivity_fields
from sim.methods.sensitivity.rosenbaum import _signed_ranks
from sim.methods.sensitivity.truncation import truncation_fields
from test_batched import RTOL, assert_same_rows, plan_of, rngs

PER_PAIR = ("rosenbaum", "evalue", "tost", "lee_bounds", "composite_rank")


@pytest.fixture
def batched_only(monkeypatch):
    """The per-pair fields must come from the batch, never from the reference's functions (rows.records)."""
    def refuse(*args, **kwargs):
        raise AssertionError("rows.records ran: the batched per-pair fields did not cover the spec")

    monkeypatch.setattr(R, "records", refuse)


def assert_matches_reference(plan, n_reps: int, stream: int = 0):
    fast = psm_chunk(plan, rngs(n_reps, stream))
    ref = per_replicate(psm_replicate)(plan, rngs(n_reps, stream))
    assert fast.failures == ref.failures
    assert_same_rows(fast.rows, ref.rows)
    assert set(PER_PAIR) & set(fast.rows["analysis"])
    return fast.rows


# ----------------------------------------------------------------------------- whole-experiment conditions

@pytest.mark.parametrize("index", [0, 13, 26, 39])
def test_unmeasured_confounding_rows_equal_the_reference(index, batched_only):
    """No U and the null (0); U with odds ratio 1.5 to 5 and outcome effects -0.25 to -1 SD, one
    MCID (13, 39) and the null (26): Γ*, the MCID Γ and its exclusions, E-values, TOST."""
    plan = plan_of("unmeasured_confounding", index=index)
    assert (plan[0].unmeasured is not None and any(plan[0].unmeasured.latent_shift.values())) == (index > 0)
    assert R.covers(plan[1])
    assert_matches_reference(plan, 30, stream=index)


@pytest.mark.parametrize("index", [1, 9, 16])
def test_truncation_by_death_rows_equal_the_reference(index, batched_only):
    """Hazard ratios 0.7, 1 and 1.4 on death, attrition independent of health, as calibrated and
    doubled: Lee bounds (trimming either group) and the death-ranks-worst composite."""
    plan = plan_of("truncation_by_death", index=index)
    assert R.covers(plan[1])
    rows = assert_matches_reference(plan, 30, stream=index)
    lee = rows[rows["analysis"] == "lee_bounds"]
    assert lee["note"].eq("").all() and lee["trim_share"].gt(0).any()


@pytest.mark.parametrize("experiment, index, n", [("unmeasured_confounding", 39, 16), ("truncation_by_death", 5, 16),
                                                  ("truncation_by_death", 14, 24)])
def test_small_cohorts_with_few_pairs_equal_the_reference(experiment, index, n, batched_only):
    """Cohorts of 16 or 24: replicates with a single pair, with no pair whose changes are both
    seen (NaN changes: death, missed visits), with too few observed per group for Lee's bounds, and
    with no usable unit in an arm of the composite; PS fits that fail go to the reference path."""
    rows = assert_matches_reference(plan_of(experiment, [f"cohort.n={n}"], index=index), 60)
    assert rows["n_pairs"].min() <= 2
    notes = set(rows["note"])
    if experiment == "unmeasured_confounding":
        assert S.NO_PAIR in notes
    else:
        assert TR.TOO_FEW in notes and "need >=1 value per arm" in set(rows.loc[rows["analysis"] == "composite_rank", "note"])


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["unmeasured_confounding", "truncation_by_death"])
def test_every_condition_equals_the_reference(experiment, batched_only):
    """Every grid condition of both experiments, 10 replicates each."""
    from sim.api import compose
    from sim.jobs.conditions import conditions, matched_plan

    for index, cond in enumerate(conditions(compose(experiment, []))):
        assert_matches_reference(matched_plan(cond), 10, stream=100 + index)


def test_the_reference_functions_remain_the_fallback(monkeypatch):
    """Where the batch does not cover a spec, rows.records runs the reference's functions: the same rows."""
    plan = plan_of("truncation_by_death", ["method.outcomes.analyses=[wilcoxon,rosenbaum,tost,lee_bounds,composite_rank]"],
                   index=1)
    fast = psm_chunk(plan, rngs(12))
    monkeypatch.setattr(R, "covers", lambda spec: False)
    slow = psm_chunk(plan, rngs(12))
    assert_same_rows(fast.rows, slow.rows)
    assert_same_rows(fast.rows, per_replicate(psm_replicate)(plan, rngs(12)).rows)


def test_covers_names_what_the_batch_computes():
    spec = plan_of("unmeasured_confounding")[1]
    assert R.covers(spec) and not R.covers(dataclasses.replace(spec, alpha=0.5))
    fake = SimpleNamespace(analyses=("rosenbaum",), mcid=(("barthel", 9.25),), alpha=0.05, outcomes=("barthel",))
    assert R.covers(fake)
    assert not R.covers(SimpleNamespace(**{**vars(fake), "alpha": 0.6}))
    assert not R.covers(SimpleNamespace(**{**vars(fake), "mcid": (("barthel", 0.0),)}))
    assert not R.covers(SimpleNamespace(**{**vars(fake), "mcid": (("barthel", math.inf),)}))
    assert R.covers(SimpleNamespace(**{**vars(fake), "analyses": ("lee_bounds",), "mcid": ()}))


# ----------------------------------------------------------------------------- built pair sets

def pair_sets(sets, mcid=9.25):
    """PairSets of one outcome x visit over replicates b = 0.. from [(yt, yc, dt, dc)] (dt, dc: death
    days, inf alive; None: nobody died); treated b's units 0..m-1, their controls m..2m-1."""
    m_max = max(len(s[0]) for s in sets)
    B, N = len(sets), 2 * m_max
    obs, days = np.full((1, B, N), np.nan), np.full((B, N), np.inf)
    ti, ci, n_pairs = np.zeros((B, N), np.int64), np.zeros((B, N), np.int64), np.zeros(B, np.int64)
    for b, (yt, yc, dt, dc) in enumerate(sets):
        m = len(yt)
        n_pairs[b] = m
        ti[b, :m], ci[b, :m] = np.arange(m), m + np.arange(m)
        obs[0, b, :m], obs[0, b, m:2 * m] = yt, yc
        if dt is not None:
            days[b, :m], days[b, m:2 * m] = dt, dc
    spec = SimpleNamespace(analyses=PER_PAIR, mcid=(("barthel", mcid),), alpha=0.05, outcomes=("barthel",))
    return spec, R.PairSets(obs, ti, ci, n_pairs, [("barthel", "m1")], {"m1": days})


def assert_fields_equal_reference(spec, pairs):
    assert R.covers(spec)
    got = R.per_pair_fields(spec, pairs.keys, pairs)
    mcid = dict(spec.mcid)["barthel"]
    for b in range(pairs.n_pairs.size):
        (yt, yc), (dt, dc) = pairs.changes(b, 0), pairs.deaths(b, 0)
        for name in spec.analyses:
            want = (sensitivity_fields(name, yt, yc, mcid, spec.alpha) if name in S.COVERED
                    else truncation_fields(name, yt, dt, yc, dc, spec.alpha))
            assert list(got[name]) == list(want), name
            for field, value in want.items():
                x = got[name][field][b, 0]
                if isinstance(value, str) or isinstance(value, (int, np.integer)):
                    assert x == value, (b, name, field, x, value)
                else:
                    np.testing.assert_allclose(x, value, rtol=RTOL, atol=1e-12, err_msg=f"{b} {name} {field}")


def test_built_pair_sets_hit_every_branch():
    rng = np.random.default_rng(5)
    nan, inf = np.nan, np.inf
    grid = lambda m, step, width: step * rng.integers(-width, width + 1, m).astype(float)  # noqa: E731  tied scores
    sets = [
        (grid(40, 5.0, 8), grid(40, 5.0, 8), None, None),  # Barthel-like: ties in |d| and in the pooled changes
        (grid(30, 1.0, 2), grid(30, 1.0, 2), None, None),  # few levels: many zero differences
        (np.full(6, 10.0), np.full(6, 10.0), None, None),  # all differences 0; both arms constant
        (np.full(5, 19.25), np.full(5, 10.0), None, None),  # every difference equals the MCID
        (np.array([3.0]), np.array([1.0]), None, None),  # one pair
        (np.array([nan, 2.0]), np.array([1.0, nan]), None, None),  # no complete pair
        (np.round(rng.normal(0, 0.2, 25), 3), np.round(rng.normal(0, 0.2, 25), 3), None, None),  # 3 decimals
        (np.array([0.1, 0.2, 0.30000000000000004, 0.6]), np.array([0.6, 0.3, 0.2, 0.1]), None, None),  # bounds 0
        # death: equal observed shares, the treated trimmed, the controls trimmed, a dead unit with a change
        (np.array([1.0, nan, 3.0, 4.0, nan]), np.array([nan, 2.0, 2.0, nan, 5.0]),
         np.array([inf, 30.0, inf, inf, 12.0]), np.array([40.0, inf, inf, 12.0, inf])),
        (np.array([1.0, 2.0, 3.0, 4.0, nan, 6.0]), np.array([nan, 2.0, nan, 5.0, nan, 1.0]),
         np.array([inf, inf, inf, inf, 9.0, inf]), np.array([9.0, inf, 9.0, inf, 100.0, inf])),
        (np.array([nan, nan, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]),
         np.array([5.0, 5.0, inf, inf]), np.full(4, inf)),
        (np.array([7.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.array([20.0, inf, inf]), np.full(3, inf)),
        (np.array([nan, nan]), np.array([nan, nan]), np.array([inf, inf]), np.array([inf, inf])),  # nobody usable
        (np.array([nan, nan]), np.array([nan, nan]), np.array([3.0, 3.0]), np.array([3.0, 8.0])),  # all dead, tied days
    ]
    assert_fields_equal_reference(*pair_sets(sets))
    spec, pairs = pair_sets(sets, mcid=0.063)
    assert_fields_equal_reference(spec, pairs)


def test_lee_rows_near_zero_are_the_reference_own(monkeypatch):
    """A bound 0 in exact arithmetic but not in floating point (changes with decimals: 0.1 + 0.2 vs
    0.3 + 0) is recomputed by the reference, so `favours` and `ci_excludes_0` are its own whatever
    the order of the trimmed sums; a bound 0 of whole numbers is exact, and kept."""
    spec, pairs = pair_sets([(np.array([0.1, 0.2, 0.7]), np.array([0.3, 0.0, 0.7]), None, None),
                             (np.array([1.0, 2.0, 7.0]), np.array([3.0, 0.0, 7.0]), None, None),
                             (np.array([0.1, 0.25, 0.7]), np.array([0.3, 0.0, 0.7]), None, None)])
    calls = []
    monkeypatch.setattr(R, "truncation_fields", lambda *a: calls.append(a) or truncation_fields(*a))
    assert_fields_equal_reference(spec, pairs)
    assert len(calls) == 1 and list(calls[0][1]) == [0.1, 0.2, 0.7]
    lee = R.per_pair_fields(spec, pairs.keys, pairs)["lee_bounds"]
    assert lee["bound_low"][1, 0] == 0.0 and np.isnan(lee["favours"][1, 0])


# ----------------------------------------------------------------------------- the numerics, to the bit

def test_sums_means_and_variances_are_numpy_own():
    """The sums the sensitivity and truncation kernels share, to the bit of numpy's."""
    rng = np.random.default_rng(1)
    for n in [*range(0, 300), 1000, 4099]:
        x = rng.normal(size=n) ** 3 * 50
        assert S.pairwise_sum(x, 0, n) == np.sum(x) and TR.pairwise_sum is S.pairwise_sum
        if n >= 2:
            assert S.mean_var(x, n, np.empty(n)) == (x.mean(), x.var(ddof=1))


def test_signed_ranks_are_rosenbaum_own():
    rng = np.random.default_rng(2)
    for d in (rng.integers(-3, 4, 50) * 5.0, np.array([0.5 - 0.437, 0.063, -0.063, 0.0]), np.zeros(3),
              rng.normal(size=80)):
        out = np.zeros(4)
        S.signed_rank_stats(d, d.size, out, 0)
        ranks, t = _signed_ranks(d)
        assert list(out) == [ranks.size, ranks.sum(), float(np.dot(ranks, ranks)), t]


def test_ndtr_and_the_imbens_manski_root_are_scipy_own():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=20000) * s for s in (0.5, 2.0, 8.0)] + [[0.0, -0.0, 40.0, -40.0]])
    got = np.array([TR.ndtr(v) for v in x[:3000]] + [TR.ndtr(v) for v in x[-4:]])
    assert np.array_equal(got, special.ndtr(np.concatenate([x[:3000], x[-4:]])))
    z = float(special.ndtri(1 - 0.05 / 2))
    for r in np.concatenate([rng.exponential(1.0, 300), rng.exponential(1e-6, 30), rng.exponential(30.0, 30)]):
        want = brentq(lambda c: special.ndtr(c + r) - special.ndtr(-c) - 0.95, 0.0, z, xtol=1e-10)
        assert TR.im_constant(r, 0.95, 0.0, z) == want

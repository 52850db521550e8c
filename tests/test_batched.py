"""The batched replicate pipeline (sim.cohort.generate.generate_batch, sim.methods.batched,
sim.jobs.psm.psm_chunk) against the per-replicate reference (psm_replicate, one cohort at a time):
the same cohorts to the bit, the same pairs and failures, estimates and p-values within 1e-9, and
results that do not depend on how replicates are grouped into chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.api import compose
from sim.cohort.generate import generate, generate_batch
from sim.engine import per_replicate, replicate_rng
from sim.jobs.conditions import conditions, matched_plan
from sim.jobs.psm import psm_chunk, psm_replicate
from sim.methods import batched
from sim.methods.matching import match
from sim.methods.matching import compiled as MC
from sim.methods.matching.cores import TIE_TOL, _greedy_ordered_py
from sim.methods.propensity import fit_propensity

RTOL = 1e-9  # the agreement the batched path promises (it differs only in the order of float sums)


def plan_of(experiment: str, overrides=(), index: int = 0, **factors):
    """The plan of a grid condition: the `index`-th of those whose factors end with the given
    names and values (caliper=0.2: method.matching.caliper = 0.2)."""
    conds = [c for c in conditions(compose(experiment, list(overrides)))
             if all(any(k.endswith(name) and v == want for k, v in c.factors.items()) for name, want in factors.items())]
    return matched_plan(conds[index])


def rngs(n: int, stream: int = 0, first: int = 0):
    return [replicate_rng(20251127, (stream,), r) for r in range(first, first + n)]


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same columns, dtypes and non-float values; floats within RTOL (NaN where NaN)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in b.columns:
        assert a[col].dtype == b[col].dtype, col
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if b[col].dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=1e-12, equal_nan=True, err_msg=col)
        else:  # equal values, NaN where NaN (Series.equals)
            assert a[col].reset_index(drop=True).equals(b[col].reset_index(drop=True)), (col, x[:5], y[:5])


def assert_matches_reference(plan, n_reps: int, stream: int = 0) -> None:
    fast = psm_chunk(plan, rngs(n_reps, stream))
    ref = per_replicate(psm_replicate)(plan, rngs(n_reps, stream))
    assert fast.failures == ref.failures
    assert_same_rows(fast.rows, ref.rows)


# ----------------------------------------------------------------------------- generation

def assert_same_cohorts(design, batch: int, only=None) -> None:
    stacked = generate_batch(design, rngs(batch), only)
    for b, rng in enumerate(rngs(batch)):
        one = generate(design, rng)
        part = stacked.take(slice(b * design.n, (b + 1) * design.n))
        kept = part.columns.keys()
        assert kept == one.columns.keys() if only is None else kept < one.columns.keys()
        for k in kept:
            assert np.array_equal(one.columns[k], part.columns[k], equal_nan=True), k
        for k, (d0, d1) in one.potential_deltas.items():
            assert np.array_equal(d0, part.potential_deltas[k][0], equal_nan=True)
            assert np.array_equal(d1, part.potential_deltas[k][1], equal_nan=True)
        for t, (s0, s1) in one.seen.items():
            assert np.array_equal(s0, part.seen[t][0]) and np.array_equal(s1, part.seen[t][1])


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_generate_batch_equals_generate_to_the_bit(batch):
    design, _ = plan_of("caliper_sweep")
    assert_same_cohorts(design, batch)


@pytest.mark.parametrize("overrides", [
    ["cohort.effect_heterogeneity=0.3"],
    ["cohort.survival_effect=0.6", "cohort.attrition_effect=2.0"],
])
def test_generate_batch_with_effects_equals_generate_to_the_bit(overrides):
    """The compiled outcomes (batch_kernels) with latent shifts, heterogeneity, deaths and missed
    visits that differ by arm; and with only the analysis' covariates (the same values)."""
    design, spec = plan_of("caliper_sweep", overrides, effect_mcid=1.0)
    assert design.latent_shift and any(design.latent_shift.values())
    assert_same_cohorts(design, 5)
    assert_same_cohorts(design, 5, only=(*spec.ps_covariates, *spec.balance_covariates))


def test_generate_batch_with_an_unmeasured_confounder():
    design, _ = plan_of("unmeasured_confounding", index=7)
    assert design.unmeasured is not None and any(design.unmeasured.latent_shift.values())
    assert_same_cohorts(design, 4)


# ----------------------------------------------------------------------------- the analysis

@pytest.mark.parametrize("caliper", [None, 0.05, 0.2, 1.0])
def test_batched_rows_equal_the_reference(caliper):
    plan = plan_of("caliper_sweep", caliper=caliper, effect_mcid=1.0)
    assert plan[1].caliper == caliper
    assert_matches_reference(plan, 60)


def test_batched_crude_comparison_equals_the_reference():
    plan = plan_of("confounding_sweep", index=3)
    assert plan[1].crude
    assert_matches_reference(plan, 40)


@pytest.mark.parametrize("overrides", [
    ["cohort.survival_effect=0.6", "cohort.attrition_effect=2.0", "cohort.effect_mcid=1.0"],
    ["cohort.effect_heterogeneity=1.0", "cohort.effect_mcid=1.0", "method.matching.order=smallest"],
    ["method.matching.caliper_sd=whole", "method.balance.denominator=treated", "method.matching.order=data"],
    ["method.balance.covariates=[age,op_time,reoperation]"],  # the operation's consequences, kept when named
])
def test_batched_settings_equal_the_reference(overrides):
    assert_matches_reference(plan_of("caliper_sweep", overrides, caliper=0.2), 30)


def test_small_cohorts_fail_and_fall_back_as_the_reference_does():
    """n = 12: single treatment groups, constant columns, singular fits and calipers without pairs occur; the
    batched chunk hands the awkward fits to the reference and records the same failures."""
    plan = plan_of("caliper_sweep", ["cohort.n=12"], caliper=0.05)
    design, spec = plan
    cohort = generate_batch(design, rngs(200))
    cols = {k: v.reshape(200, design.n) for k, v in cohort.columns.items()}
    treated = cols["treated"].astype(bool)
    X = np.stack([cols[c].astype(float) for c in spec.ps_covariates], axis=-1)
    _, status = batched.fit_status(X, treated)
    assert {0, 1, 2, 3} <= set(status.tolist())  # regular, single group, constant column, singular
    assert_matches_reference(plan, 200)
    fast = psm_chunk(plan, rngs(200))
    assert any("no matched pairs" in r for r in fast.failures.values())


def test_the_batched_fit_is_the_reference_fit():
    design, spec = plan_of("caliper_sweep")
    cohort = generate_batch(design, rngs(30))
    cols = {k: v.reshape(30, design.n) for k, v in cohort.columns.items()}
    treated = cols["treated"].astype(bool)
    X = np.stack([cols[c].astype(float) for c in spec.ps_covariates], axis=-1)
    eta, status = batched.fit_status(X, treated)
    assert (status == 0).all()
    for b in range(30):
        ref = fit_propensity(X[b], treated[b].astype(np.int8))
        np.testing.assert_allclose(eta[b], ref.logit_ps, rtol=1e-10, atol=1e-10)


def test_unsupported_settings_run_replicate_by_replicate():
    plan = plan_of("caliper_sweep", ["method.matching.ratio=2"])
    assert batched.unsupported(plan[1]) == "ratio 2"
    fast = psm_chunk(plan, rngs(5))
    ref = per_replicate(psm_replicate)(plan, rngs(5))
    pd.testing.assert_frame_equal(fast.rows, ref.rows)


# ----------------------------------------------------------------------------- chunking

def test_rows_do_not_depend_on_the_chunk():
    """Replicates 0..11 in one chunk, or as chunks 0..4 and 5..11: identical rows to the bit."""
    plan = plan_of("caliper_sweep", caliper=0.2)
    whole = psm_chunk(plan, rngs(12))
    first, second = psm_chunk(plan, rngs(5)), psm_chunk(plan, rngs(7, first=5))
    second.rows["replicate"] += 5
    pd.testing.assert_frame_equal(whole.rows, pd.concat([first.rows, second.rows], ignore_index=True))


# ----------------------------------------------------------------------------- mirror ties

@pytest.mark.parametrize("core", ["python", "compiled"])
def test_mirror_ties_go_to_the_lower_control_index_whatever_the_rounding(core):
    """Controls at 0.2 and 0.4 are equally near a treated unit at 0.3 in exact arithmetic; in
    floating point 0.3 - 0.2 < 0.4 - 0.3. The lower control index wins, whichever side it is on."""
    assert (0.3 - 0.2) < (0.4 - 0.3) and (0.4 - 0.3) - (0.3 - 0.2) < TIE_TOL
    for scores, winner in (([0.3, 0.4, 0.2], 1), ([0.3, 0.2, 0.4], 1)):
        d = np.array(scores)
        dt, tid, dc, cid = d[:1], np.array([0]), d[1:], np.array([1, 2])
        if core == "python":
            links = _greedy_ordered_py(dt, tid, dc, cid, 1, None)
        else:
            dt, tid, pos, vals, cs, w = MC._greedy_prepare(dt, tid, dc, cid, None)
            _, c, _ = MC._kernel("_greedy_ordered_kernel")(dt, pos, vals, cs, 1, w)
            links = [(0, int(c[0]), 0)]
        assert [link[1] for link in links] == [winner]
    res = match(np.array([0.3, 0.4, 0.2]), np.array([1, 0, 0]), caliper=None, caliper_scale="ps")
    assert res.control_idx.tolist() == [1]


# ----------------------------------------------------------------------------- per-pair analyses

@pytest.mark.parametrize("index", [0, 13, 39])
def test_sensitivity_analyses_on_batched_pairs_equal_the_reference(index):
    """unmeasured_confounding: Rosenbaum bounds, E-values and TOST beside the batched tests, with
    and without U."""
    plan = plan_of("unmeasured_confounding", index=index)
    assert {"rosenbaum", "evalue", "tost"} <= set(plan[1].analyses) and batched.unsupported(plan[1]) is None
    assert_matches_reference(plan, 25)


@pytest.mark.parametrize("index", [0, 5, 17])
def test_truncation_analyses_on_batched_pairs_equal_the_reference(index):
    """truncation_by_death: Lee bounds and the death-ranks-worst composite, with survival effects."""
    plan = plan_of("truncation_by_death", index=index)
    assert {"lee_bounds", "composite_rank"} <= set(plan[1].analyses) and batched.unsupported(plan[1]) is None
    assert_matches_reference(plan, 25)


# ----------------------------------------------------------------------------- analyses without a kernel

def _median_difference(y_treated, y_control):
    """A user's own analysis: the difference in median change (no SE)."""
    from sim.methods.outcomes import TestResult

    yt, yc = y_treated[~np.isnan(y_treated)], y_control[~np.isnan(y_control)]
    if yt.size < 2 or yc.size < 2:
        return TestResult("median_difference", reason="fewer than 2 values in an arm")
    return TestResult("median_difference", estimate=float(np.median(yt) - np.median(yc)),
                      n_treated=int(yt.size), n_control=int(yc.size))


def test_a_registered_analysis_without_a_kernel_keeps_the_chunk_batched(monkeypatch):
    """A new outcome analysis (a function and a registry entry, as the README's recipe says) runs on
    each replicate's pairs inside the batched path, equal to the reference; fisher_exact and the
    paired difference in means (no kernels either) too."""
    from sim.methods import outcomes as O

    monkeypatch.setitem(O.ANALYSES, "median_difference", _median_difference)
    analyses = "[wilcoxon,median_difference,diff_means_paired,diff_means]"
    plan = plan_of("caliper_sweep", [f"method.outcomes.analyses={analyses}"], caliper=0.2)
    assert batched.unsupported(plan[1]) is None
    calls = []
    monkeypatch.setattr(batched.R, "records", lambda *a, **k: calls.append(1))  # never the slow fallback
    assert_matches_reference(plan, 12)
    assert not calls


def test_tags_decide_how_an_analysis_is_reported(monkeypatch):
    """An analysis declares what its rows carry: an odds ratio favours treatment above 1 (not above 0),
    and a test without an estimate keeps only its p-value and direction, on both paths."""
    from sim.methods import outcomes as O
    from sim.methods.pipeline import result_row_fields

    r = O.TestResult("fisher_exact", estimate=0.5, se=0.3, ci_low=0.2, ci_high=1.2, p_value=0.2)
    assert result_row_fields(r, "fisher_exact")["favours"] == -1.0
    monkeypatch.setitem(O.ANALYSES, "median_difference", _median_difference)
    monkeypatch.setitem(O.TAGS, "median_difference", O.Tags(estimate=False))
    plan = plan_of("caliper_sweep", ["method.outcomes.analyses=[median_difference,diff_means]"], caliper=0.2)
    rows = psm_chunk(plan, rngs(6)).rows
    mine = rows[rows["analysis"] == "median_difference"]
    assert mine["estimate"].isna().all() and mine["favours"].notna().any()
    assert_matches_reference(plan, 6)

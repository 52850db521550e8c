"""The truncation-by-death layer end to end: estimands that agree when decompression does not change
who survives and differ when it does, trimming bounds that cover the survivor effect where their
assumptions hold, and paired (common random numbers) conditions in truncation_by_death."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.api import compose, run

M6 = {"timepoint": "m6"}


def _summary(overrides: list[str]) -> pd.DataFrame:
    return run(compose("truncation_by_death", overrides)).summary


def _pick(s: pd.DataFrame, **eq) -> pd.DataFrame:
    for k, v in eq.items():
        s = s[np.isclose(s[k], v)] if isinstance(v, float) else s[s[k] == v]
    return s


@pytest.fixture(scope="module")
def grid_run():
    """truncation_by_death on a reduced grid: survival effect 0.7 and 1, attrition as calibrated,
    no effect and one MCID."""
    cfg = compose("truncation_by_death", ["reps=150", "seed=11", "n_jobs=1",
                   "experiment.grid={cohort.survival_effect: [0.7, 1.0], cohort.attrition.health_scale: [1.0], "
                   "cohort.effect_mcid: [0.0, 1.0]}"])
    return run(cfg)


def test_estimands_agree_without_a_survival_effect(grid_run):
    """HR = 1 and no attrition effect: the survivor effect equals the while-alive contrast in every
    replicate, to rounding (the same patients are alive under both arms), among the matched treated
    and in the whole cohort alike."""
    r = grid_run.replicates
    same = r[np.isclose(r["survival_effect"], 1.0)]
    np.testing.assert_allclose(same["truth_matched"], same["truth_while_alive"], atol=1e-9)
    np.testing.assert_allclose(same["truth_ate"], same["truth_while_alive_cohort"], atol=1e-9)


def test_estimands_differ_with_a_survival_effect(grid_run):
    """HR = 0.7: decompression keeps patients alive who would have died; the while-alive contrast
    then differs from the survivor effect, by more than 4 MCSE for Barthel at 6 months (whole cohort,
    where the mechanism is measured most precisely)."""
    r = grid_run.replicates
    d = r[np.isclose(r["survival_effect"], 0.7) & (r["analysis"] == "diff_means") & (r["outcome"] == "barthel")
          & (r["timepoint"] == "m6")]
    gap = d["truth_while_alive_cohort"] - d["truth_ate"]
    assert abs(gap.mean()) > 4 * gap.std(ddof=1) / np.sqrt(len(gap))


def test_common_random_numbers_pair_the_conditions(grid_run):
    """Replicate r is the same cohort in every condition: the treated count and the matched pairs
    agree across survival effects (treatment and matching do not depend on death)."""
    r = grid_run.replicates
    r = r[(r["analysis"] == "wilcoxon") & (r["outcome"] == "barthel") & (r["timepoint"] == "m1")]
    wide = r.pivot_table(index=["effect_mcid", "rep"], columns="survival_effect", values="n_pairs")
    np.testing.assert_array_equal(wide[0.7], wide[1.0])


def test_summary_says_how_often_the_bounds_ci_excludes_0_and_which_group_was_trimmed(grid_run):
    """mean_ci_excludes_0, mean_trimmed_treated and the widths are the summary means of the
    per-replicate fields, recomputed here from each replicate's CI and bounds; a survival benefit
    (HR 0.7) makes decompression the group seen more often, so the treated are trimmed in most
    studies (more than half by 4 MCSE; the rest trim the wrong group)."""
    r, s = grid_run.replicates, grid_run.summary
    lee = r[(r["analysis"] == "lee_bounds") & r["ci_low"].notna()]
    ok = lee["ci_excludes_0"].notna()
    np.testing.assert_array_equal(lee.loc[ok, "ci_excludes_0"], ((lee["ci_low"] > 0) | (lee["ci_high"] < 0))[ok])
    np.testing.assert_allclose(lee["ci_width"], lee["ci_high"] - lee["ci_low"], rtol=1e-12)
    np.testing.assert_allclose(lee["bound_width"], lee["bound_high"] - lee["bound_low"], rtol=1e-12)
    keys = ["survival_effect", "effect_mcid", "outcome", "timepoint"]
    for col in ("ci_excludes_0", "trimmed_treated", "ci_width", "bound_width"):
        got = _pick(s, analysis="lee_bounds", measure=f"mean_{col}").set_index(keys)["value"].sort_index()
        want = lee.groupby(keys)[col].mean().sort_index()
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, err_msg=col)
    t = _pick(s, analysis="lee_bounds", measure="mean_trimmed_treated", survival_effect=0.7, **M6)
    assert len(t) == 8 and (t["value"] - 4 * t["mcse"] > 0.5).all(), t[["outcome", "value", "mcse"]]


@pytest.mark.slow
def test_trimming_bounds_cover_the_survivor_effect_where_their_assumptions_hold():
    """No confounding (matching then pairs exchangeable patients) and a monotone survival effect
    (HR 0.7): the Imbens-Manski CI of the Lee bounds covers the matched survivor effect in at
    least 95 % - 3 MCSE of replicates, for every outcome and visit."""
    reps = 300
    s = _summary([f"reps={reps}", "seed=5", "cohort.confounding=0",
                  "experiment.grid={cohort.survival_effect: [0.7], cohort.attrition.health_scale: [1.0], "
                  "cohort.effect_mcid: [1.0]}",
                  "method.outcomes.analyses=[lee_bounds]"])
    cover = _pick(s, analysis="lee_bounds", measure="coverage")
    assert len(cover) == 8
    floor = 0.95 - 3 * np.sqrt(0.95 * 0.05 / reps)
    assert (cover["value"] >= floor).all(), cover[["outcome", "timepoint", "value", "mcse"]]

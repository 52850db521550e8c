"""Every truth on the population its comparison targets, recomputed from both potential outcomes
and both potential death days on the matched sample (not from the analysis' own masks).

The matched comparison contrasts the matched treated with controls standing in for them, so its
estimands live on the matched treated: the survivor effect (alive under both arms), the
while-alive contrast (each arm's own survivors among them) and the always-seen effect (seen under
both arms among them). The whole-cohort versions are kept under names that say so."""

from __future__ import annotations

import numpy as np
import pytest

from sim.cohort.calibrate import calibrated
from sim.cohort.design import make_design
from sim.cohort.generate import generate
from sim.methods.pipeline import MethodSpec, TRUTH_NAMES, analyse, fit_and_match

PS = ("age", "male", "escc", "frankel_abc", "emergency")


@pytest.fixture(scope="module")
def model(study, cohort_settings):
    """The default settings' calibrated model (the shipped snapshot)."""
    return calibrated(study, cohort_settings)


def _spec(model, **kw) -> MethodSpec:
    return MethodSpec(ps_covariates=PS, balance_covariates=PS, analyses=("diff_means",), **kw).for_model(model)


def _potential(model, c, outcome: str, t: str):
    """Both potential changes from the potential outcomes and both potential death days, directly."""
    out = next(o for o in model.outcomes if o.name == outcome)
    pre = c.columns[f"{outcome}_{model.baseline}"]
    day = model.visit_days[t]
    t0, t1 = c.death_days
    alive0, alive1 = t0 > day, t1 > day
    y0, y1 = c.columns[f"{outcome}_{t}_y0"], c.columns[f"{outcome}_{t}_y1"]
    d0 = np.where(alive0, (y0 - pre) * out.direction(), np.nan)
    d1 = np.where(alive1, (y1 - pre) * out.direction(), np.nan)
    return d0, d1, alive0, alive1


def _expected(model, c, ti, outcome, t):
    d0, d1, a0, a1 = _potential(model, c, outcome, t)
    s0, s1 = c.seen[t]
    e = c.columns["ps_true"]
    pop = np.zeros(c.n, bool)
    pop[ti] = True
    both_alive, both_seen = a0 & a1, s0 & s1
    assert not (both_seen & ~both_alive).any()  # seen implies alive
    return {
        "truth_ate": np.mean((d1 - d0)[both_alive]),
        "truth_att": np.mean((d1 - d0)[both_alive & (c.columns["treated"] == 1)]),
        "truth_matched": np.mean((d1 - d0)[pop & both_alive]),
        "truth_while_alive": np.mean(d1[pop & a1]) - np.mean(d0[pop & a0]),
        "truth_always_seen": np.mean((d1 - d0)[pop & both_seen]),
        "truth_while_alive_cohort": np.mean(d1[a1]) - np.mean(d0[a0]),
        "truth_always_seen_cohort": np.mean((d1 - d0)[both_seen]),
        # the overlap population (Li, Morgan & Zaslavsky 2018): weights e(1 - e) of the true PS
        "truth_ato": np.average((d1 - d0)[both_alive], weights=(e * (1 - e))[both_alive]),
    }


@pytest.mark.parametrize("survival_effect, attrition_effect", [(0.7, 2.0), (1.4, 1.0), (1.0, 1.0)])
def test_every_truth_recomputed_on_the_matched_sample(model, survival_effect, attrition_effect):
    design = make_design(model, 1_500, effect_mcid=1.0, survival_effect=survival_effect,
                         attrition_effect=attrition_effect)
    c = generate(design, np.random.default_rng(77))
    spec = _spec(model)
    rows = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    _, res = fit_and_match(c.columns, spec, np.random.default_rng(1))
    assert res.n_pairs > 20
    for r in rows:
        want = _expected(model, c, res.treated_idx, r["outcome"], r["timepoint"])
        for name in TRUTH_NAMES:
            assert r[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), (name, r["outcome"], r["timepoint"])


def test_without_a_survival_effect_the_while_alive_truth_is_the_survivor_effect_of_the_matched(model):
    """HR 1, no attrition effect: the same matched treated are alive under both arms, so the
    while-alive contrast is the matched survivor effect exactly; the whole-cohort contrast is a
    different population's (it is what a bias measured against it would wrongly call bias)."""
    design = make_design(model, 1_500, effect_mcid=1.0)
    c = generate(design, np.random.default_rng(5))
    rows = analyse(c.columns, c.potential_deltas, _spec(model), np.random.default_rng(1), seen=c.seen)
    gaps = []
    for r in rows:
        assert r["truth_while_alive"] == pytest.approx(r["truth_matched"], rel=1e-12, abs=1e-12)
        assert r["truth_while_alive_cohort"] == pytest.approx(r["truth_ate"], rel=1e-12, abs=1e-12)
        gaps.append(abs(r["truth_while_alive_cohort"] - r["truth_matched"]))
    assert max(gaps) > 0.1  # the populations differ: a whole-cohort stand-in is not the matched truth


def test_matched_sets_target_each_matched_treated_once(model):
    """1:2 matching with replacement: the truths are over the matched treated units, each once."""
    design = make_design(model, 1_500, effect_mcid=1.0, survival_effect=0.7, attrition_effect=2.0)
    c = generate(design, np.random.default_rng(9))
    spec = _spec(model, ratio=2, replace=True)
    rows = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    _, res = fit_and_match(c.columns, spec, np.random.default_rng(1))
    ti = np.unique(res.treated_idx)
    assert ti.size < res.treated_idx.size  # some treated have two controls
    for r in rows:
        want = _expected(model, c, ti, r["outcome"], r["timepoint"])
        for name in ("truth_matched", "truth_while_alive", "truth_always_seen"):
            assert r[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name

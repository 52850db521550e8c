"""Effect heterogeneity (`cohort.effect_heterogeneity` = h): the individual latent shift is
shift x (1 + h P), P the standardised prognostic score. The population ATE still hits its target,
individual effects vary with P as h says, h = 0 gives one constant latent shift, and a target the
heterogeneous effect cannot reach fails with a one-line ValueError naming the setting (not scipy's
bracket error).

Tolerances are Monte Carlo SEs from the data (z = 4), fixed seeds; each assertion can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sim.cohort.generate import _REFERENCE_N, generate, make_design

Z = 4.0
N = 200_000
OUTCOMES = ("barthel", "eq5d", "vas", "face")
POST = ("m1", "m6")  # conf/study/tominaga2025.yaml: visits.follow_up
KEYS = [(o, t) for o in OUTCOMES for t in POST]
FINE = ("eq5d", "vas")  # steps small against the spread: the rounding of y0 and y1 hardly depends on P
EFFECT_MCID = 0.3  # reachable for h up to 2 on every outcome (1 MCID is not: see the error tests)


@pytest.fixture(scope="module")
def model(fast_model):
    """The session's quickly calibrated model (conftest: 20 000 reference patients)."""
    return fast_model


_COHORTS: dict = {}


@pytest.fixture(scope="module")
def cohort_of(model):
    def get(h: float):
        if h not in _COHORTS:
            design = make_design(model, N, effect_mcid=EFFECT_MCID, heterogeneity=h)
            c = generate(design, np.random.default_rng(1234))  # the same patients for every h
            _COHORTS[h] = (design, c, model.prognosis(c.columns))
        return _COHORTS[h]
    yield get
    _COHORTS.clear()


def _interior(model, c, key):
    """Alive patients whose y0 and y1 are both strictly inside the scale: there, y1 - y0 is the
    latent shift up to the rounding of each to the scale's step."""
    o, t = key
    out = next(x for x in model.outcomes if x.name == o)
    y0, y1 = c.columns[f"{o}_{t}_y0"], c.columns[f"{o}_{t}_y1"]
    inside = (y0 > out.lower) & (y0 < out.upper) & (y1 > out.lower) & (y1 < out.upper)
    return inside, (y1 - y0) * out.direction(), out.step


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_heterogeneous_effect_hits_the_target_ate(cohort_of, h):
    design, c, _ = cohort_of(h)
    bad = []
    for key in KEYS:
        assert design.effect[key] == pytest.approx(EFFECT_MCID * {"barthel": 9.25, "eq5d": 0.063, "vas": 15.0,
                                                                  "face": 2.0}[key[0]])
        d0, d1 = c.potential_deltas[key]
        diff = (d1 - d0)[~np.isnan(d0)]
        se = diff.std(ddof=1) * np.sqrt(1 / diff.size + 1 / (_REFERENCE_N * diff.size / c.n))
        ate = c.true_effects()[key]
        if not abs(ate - design.effect[key]) < Z * se:
            bad.append((key, ate, design.effect[key], se))
    assert bad == [], bad


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_individual_effects_vary_with_the_prognostic_score(model, cohort_of, h):
    design, c, P = cohort_of(h)
    _, c0, _ = cohort_of(0.0)
    for key in KEYS:
        d0, d1 = c.potential_deltas[key]
        alive = ~np.isnan(d0)
        effect = (d1 - d0)[alive]
        assert effect.std() > 0, key
        # more heterogeneity in P than the floors and ceilings alone make (h = 0, same patients)
        e0 = (c0.potential_deltas[key][1] - c0.potential_deltas[key][0])[alive]
        r, r0 = np.corrcoef(effect, P[alive])[0, 1], np.corrcoef(e0, P[alive])[0, 1]
        assert r > 0 and r > r0 + Z * 2 / np.sqrt(alive.sum()), (key, r, r0)
        # inside the scale, the individual effect is shift x (1 + h P): slope h x shift on P
        inside, diff, step = _interior(model, c, key)
        shift = design.latent_shift[key]
        res = stats.linregress(P[inside], diff[inside])
        if key[0] in FINE:
            assert abs(res.slope - h * shift) < Z * res.stderr, (key, res.slope, h * shift, res.stderr)
            assert abs(res.intercept - shift) < Z * res.intercept_stderr, (key, res.intercept, shift)
        else:  # coarse steps (Barthel 5 points, face scale 1 of 10): rounding biases by a few %
            assert abs(res.slope / (h * shift) - 1) < 0.05, (key, res.slope, h * shift)
        # and individual effects spread well beyond one step of rounding around the common shift
        assert np.abs(diff[inside] - shift).max() > 1.5 * step, key


def test_no_heterogeneity_is_one_constant_latent_shift(model, cohort_of):
    design, c, P = cohort_of(0.0)
    for key in KEYS:
        inside, diff, step = _interior(model, c, key)
        shift = design.latent_shift[key]
        assert shift > 0 and inside.sum() > 10_000, key
        # every patient inside the scale moves by the same latent shift, up to rounding y0 and y1
        assert np.all(np.abs(diff[inside] - shift) <= step + 1e-9), key
        if key[0] in FINE:
            res = stats.linregress(P[inside], diff[inside])
            assert abs(res.slope) < Z * res.stderr, (key, res.slope, res.stderr)


@pytest.mark.parametrize("h, kwargs", [
    (1.0, dict(effect_mcid=1.0)),
    (2.0, dict(effect_mcid=1.0)),
    (-1.0, dict(effect_mcid=1.0)),
    (50.0, dict(effect={"eq5d": {"m1": 0.01}})),
    (1e300, dict(effect={"vas": {"m6": -5.0}})),
], ids=["h=1", "h=2", "h=-1", "h=50", "h=1e300"])
def test_unreachable_heterogeneous_effect_names_the_setting(model, h, kwargs):
    with pytest.raises(ValueError) as info:
        make_design(model, 100, heterogeneity=h, **kwargs)
    msg = str(info.value)
    assert msg.startswith("cohort.effect_heterogeneity: "), msg
    assert "cannot reach" in msg or "no latent shift" in msg, msg
    assert "\n" not in msg and "f(a) and f(b)" not in msg


@pytest.mark.parametrize("h", [-5.0, -1.0, -0.3, 0.3, 3.0, 50.0, 1e6])
@pytest.mark.parametrize("effect", [{"vas": {"m6": -5.0}}, {"eq5d": {"m1": 0.01}}, {"barthel": {"m6": 3.0}}],
                         ids=["vas_m6_harm", "eq5d_m1_small", "barthel_m6"])
def test_any_finite_heterogeneity_solves_or_names_the_setting(model, h, effect):
    """Either the design hits its ATE (checked on a cohort) or a one-line ValueError names
    cohort.effect_heterogeneity: never scipy's raw bracket error."""
    try:
        design = make_design(model, 100_000, effect=effect, heterogeneity=h)
    except ValueError as e:
        assert str(e).startswith("cohort.effect_heterogeneity: ") and "\n" not in str(e), str(e)
        return
    [(o, times)] = effect.items()
    [(t, target)] = times.items()
    c = generate(design, np.random.default_rng(55))
    d0, d1 = c.potential_deltas[(o, t)]
    diff = (d1 - d0)[~np.isnan(d0)]
    se = diff.std(ddof=1) * np.sqrt(1 / diff.size + 1 / (_REFERENCE_N * diff.size / c.n))
    assert abs(diff.mean() - target) < Z * se + 1e-12, (h, diff.mean(), target, se)


def test_effect_in_sd_units_of_the_change(model):
    """cohort.effect_sd: the requested effect is effect_sd x the SD of the change in the reference
    population (an independent recomputation here), added to effect_mcid x MCID, and a large
    cohort's true ATE hits it within its MCSE."""
    from sim.cohort.generate import reference_change_sd, reference_latents

    lat = reference_latents(model)
    cols, L = model.covariates(lat)
    P = model.prognosis(cols)
    death, _ = model.death_days(L, model.health(P, lat), lat)
    sds = reference_change_sd(model)
    for o_idx, out in enumerate(model.outcomes):
        ylat = model.outcome_latents(out, P, lat.outcome[:, o_idx, :])
        for t in model.follow_up:
            alive = death > model.visit_days[t]
            change = (out.observe(ylat[t][alive]) - out.observe(ylat[model.baseline][alive])) * out.direction()
            assert sds[(out.name, t)] == pytest.approx(change.std(), rel=1e-12)
    design = make_design(model, 100_000, 1.0, effect_mcid=0.5, effect_sd=0.2)
    cohort = generate(design, np.random.default_rng(4))
    for (name, t), (d0, d1) in cohort.potential_deltas.items():
        target = 0.5 * model.mcid[name] + 0.2 * sds[(name, t)]
        assert design.effect[(name, t)] == pytest.approx(target)
        ite = (d1 - d0)[~np.isnan(d0)]
        assert abs(ite.mean() - target) <= 4 * ite.std(ddof=1) / np.sqrt(ite.size) + 1e-3 * abs(target), (name, t)

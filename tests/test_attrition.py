"""sim.cohort.attrition: who is seen at a follow-up visit (death and missed visits, both loading on
baseline health H), the potential death days and missed visits under both arms, the principal
strata they define, the truths of the analysis that depend on them, and the settings' checks.

Statistical tolerances are Monte Carlo standard errors computed from the data (4 SEs), with fixed
seeds, so every test is deterministic and each assertion can fail. The model is the default
settings' calibrated one (from the session's calibration cache).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import special

from sim.cohort import attrition as A
from sim.cohort.calibrate import calibrated, completers_baseline
from sim.cohort.generate import generate, make_design
from sim.methods.pipeline import MethodSpec, analyse

Z = 4.0
OUTCOMES = ("barthel", "eq5d", "vas", "face")
POST = ("m1", "m6")  # conf/study/tominaga2025.yaml: visits.follow_up
VISIT_DAYS = {"m1": 30.0, "m6": 182.0}


# ------------------------------------------------------------------ helpers
def _tree(model, lat):
    """L (core treatment index) and H (baseline health) of a set of latents."""
    cols, L = model.covariates(lat)
    return L, model.health(model.prognosis(cols), lat)


def _latents(model, n, seed):
    """The latents `generate(make_design(model, n, ...), default_rng(seed))` draws first."""
    return model.draw(n, np.random.default_rng(seed))


def _ols_residual(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    X = np.column_stack([np.ones_like(x), x])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return y - X @ beta


def _gap(cohort, mask: np.ndarray, t: str = "m6", outcome: str = "barthel") -> tuple[float, float]:
    """Completers' baseline gap among `mask`: mean baseline of those seen at t minus everyone's,
    with a conservative MCSE (the two means are positively correlated; their covariance is dropped)."""
    pre = cohort.columns[f"{outcome}_pre"].astype(float)
    seen = cohort.columns[f"seen_{t}"] == 1
    a, b = pre[mask & seen], pre[mask]
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return float(a.mean() - b.mean()), float(se)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(study, cohort_settings):
    """The default settings' calibrated model (200 000 reference patients; cached on disk)."""
    return calibrated(study, cohort_settings)


@pytest.fixture(scope="module")
def big(model):
    """A fresh default cohort of 200 000 (no effect), its latents, L and H."""
    seed, n = 20250801, 200_000
    c = generate(make_design(model, n), np.random.default_rng(seed))
    lat = _latents(model, n, seed)
    L, H = _tree(model, lat)
    return c, lat, L, H


# ------------------------------------------------------------------ 1. no effect on who is seen
def test_no_survival_or_attrition_effect_means_the_same_survivors(model):
    """survival_effect = attrition_effect = 1: T1 is T0 bit for bit, and alive/seen agree under both
    arms, so the SACE (truth_ate) equals the whole cohort's complete-case contrast (truth_while_alive_cohort) exactly,
    even with a non-zero effect; the always-seen truth is the effect among those seen."""
    seed, n = 606, 4_000
    design = make_design(model, n, effect_mcid=1.0, survival_effect=1.0, attrition_effect=1.0)
    c = generate(design, np.random.default_rng(seed))
    lat = _latents(model, n, seed)
    L, H = _tree(model, lat)
    t0, t1 = model.death_days(L, H, lat, 1.0, 1.0)
    np.testing.assert_array_equal(t0, t1)
    for t in POST:
        np.testing.assert_array_equal(c.alive[t][0], c.alive[t][1])
        np.testing.assert_array_equal(c.seen[t][0], c.seen[t][1])
        np.testing.assert_array_equal(c.alive[t][0], t0 > model.visit_days[t])
        assert not c.seen[t][0].all() and c.seen[t][0].any()
    spec = MethodSpec(ps_covariates=("age", "male", "escc", "frankel_abc", "emergency"),
                      balance_covariates=("age", "male", "escc", "frankel_abc", "emergency"),
                      analyses=("diff_means",)).for_model(model)
    rows = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    assert {(r["outcome"], r["timepoint"]) for r in rows} == {(o, t) for o in OUTCOMES for t in POST}
    differs = 0
    for r in rows:
        key = (r["outcome"], r["timepoint"])
        d0, d1 = c.potential_deltas[key]
        assert r["truth_ate"] != 0.0, key  # a real effect, so the equality below is not 0 == 0
        assert r["truth_ate"] == pytest.approx(r["truth_while_alive_cohort"], rel=1e-12, abs=1e-12), key
        # always seen = seen under the arm received (both arms alike here): an independent computation
        seen = c.columns[f"seen_{r['timepoint']}"] == 1
        np.testing.assert_array_equal(seen, c.seen[r["timepoint"]][0])
        assert r["truth_always_seen_cohort"] == pytest.approx(float(np.mean((d1 - d0)[seen])), rel=1e-12), key
        differs += r["truth_always_seen_cohort"] != pytest.approx(r["truth_ate"], rel=1e-9)
    # the effect varies (floors, ceilings) and missed visits select on H: the always-seen truth is
    # generally not the SACE
    assert differs > 0


# ------------------------------------------------------------------ 2. proportional hazards
@pytest.mark.parametrize("hr", [0.7, 1.4])
def test_survival_functions_are_proportional_hazards(model, hr):
    """With L = H = 0 and E ~ N(0, 1): S1(t) = S0(t)^HR at several t. Both come from the same E, so
    the MCSE is that of the per-patient influence 1[T1 > t] - HR S0^(HR-1) 1[T0 > t] (delta method)."""
    n = 400_000
    e = np.random.default_rng(int(hr * 100)).standard_normal(n)
    zero = np.zeros(n)
    t0, t1 = A.death_days(model.survival, model.attrition, zero, zero, e, 1.0, hr)
    assert (t0 != t1).mean() > 0.99
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):  # days at which S0 is about 0.9 ... 0.1
        day = float(np.quantile(t0, q))
        a0, a1 = t0 > day, t1 > day
        s0, s1 = a0.mean(), a1.mean()
        infl = a1 - hr * s0 ** (hr - 1) * a0
        se = infl.std(ddof=1) / np.sqrt(n)
        assert abs(s1 - s0**hr) < Z * se, (hr, q, s1, s0**hr, se)
        # and not merely equal: the survivors differ in the direction of the HR
        assert (s1 > s0) == (hr < 1)


@pytest.mark.slow
@pytest.mark.parametrize("hr", [0.7, 1.4])
def test_cox_model_recovers_the_hazard_ratio(model, hr):
    """A homogeneous population (L = H = 0), half under each arm (independent E's), no censoring:
    the Cox estimate of log(HR) from statsmodels is within 4 SE of the setting."""
    from statsmodels.duration.hazard_regression import PHReg

    n = 5_000  # per arm (PHReg is slow; the SE is about 0.02)
    e = np.random.default_rng(int(hr * 1000)).standard_normal(2 * n)
    zero = np.zeros(2 * n)
    t0, t1 = A.death_days(model.survival, model.attrition, zero, zero, e, 1.0, hr)
    arm = np.r_[np.zeros(n), np.ones(n)]
    time = np.r_[t0[:n], t1[n:]]
    fit = PHReg(time, arm[:, None]).fit()
    est, se = float(fit.params[0]), float(fit.bse[0])
    assert abs(est - np.log(hr)) < Z * se, (est, np.log(hr), se)
    assert abs(est) > Z * se  # the effect is detectable: the check is not vacuous


# ------------------------------------------------------------------ 3. monotonicity
@pytest.mark.parametrize("hr", [0.7, 1.4, 0.1, 10.0])
def test_effect_on_death_is_monotone(model, big, hr):
    """HR < 1: T1 >= T0 for every patient; HR > 1: T1 <= T0 (same E, real L and H; plus a grid of E
    over +-8 SD, beyond anything a simulation draws)."""
    _, lat, L, H = big
    for kappa in (0.0, 1.0, 2.0):
        t0, t1 = A.death_days(model.survival, model.attrition, L, H, lat.death, kappa, hr)
        assert np.all(t1 >= t0) if hr < 1 else np.all(t1 <= t0), (hr, kappa)
        assert (t1 != t0).mean() > 0.99
    e = np.linspace(-8.0, 8.0, 3201)
    for lh in (-2.0, 0.0, 2.0):
        fixed = np.full(e.size, lh)
        t0, t1 = A.death_days(model.survival, model.attrition, fixed, -fixed, e, 1.0, hr)
        assert np.all(t1 >= t0) if hr < 1 else np.all(t1 <= t0), (hr, lh)


@pytest.mark.parametrize("hr", [0.7, 1.4])
def test_effect_on_death_is_monotone_in_the_far_tail(model, hr):
    e = np.linspace(8.0, 10.0, 201)
    zero = np.zeros(e.size)
    t0, t1 = A.death_days(model.survival, model.attrition, zero, zero, e, 1.0, hr)
    assert np.all(t1 >= t0) if hr < 1 else np.all(t1 <= t0)


def test_with_hr_below_one_no_one_is_alive_only_without_decompression(model):
    seed, n = 707, 50_000
    lo = generate(make_design(model, n, survival_effect=0.7), np.random.default_rng(seed))
    hi = generate(make_design(model, n, survival_effect=1.4), np.random.default_rng(seed))
    for t in POST:
        a0, a1 = lo.alive[t]
        assert not np.any(a0 & ~a1), t
        assert np.any(a1 & ~a0), t  # some are alive only with decompression
        b0, b1 = hi.alive[t]
        assert not np.any(b1 & ~b0), t
        assert np.any(b0 & ~b1), t
        np.testing.assert_array_equal(a0, b0)  # T0 does not depend on the HR


# ------------------------------------------------------------------ 4. missed visits
def test_average_missed_probability_is_the_setting(model, big, cohort_settings):
    """The missed shares are defined on the (calibration) reference cohort: on a fresh cohort of
    200 000 the average P(miss) and the share of patients whose uniform falls below it (alive or
    not) equal the setting within 4 MCSE (fresh cohort's and reference cohort's errors together)."""
    _, lat, _, H = big
    n_ref = int(cohort_settings["calibration_n"])
    for j, t in enumerate(POST):
        share = float(cohort_settings["attrition"]["missed_visit"][t])
        assert model.attrition.missed_share[t] == share
        p = A.p_missed(model.attrition, H, t)
        se = p.std(ddof=1) * np.sqrt(1 / p.size + 1 / n_ref)
        assert abs(p.mean() - share) < Z * se, (t, p.mean(), share, se)
        m0, m1 = A.missed(model.attrition, H, lat.missed_u[:, j], t)
        assert m0 is m1 or np.array_equal(m0, m1)
        se_b = np.sqrt(share * (1 - share) / m0.size + p.var() / n_ref)
        assert abs(m0.mean() - share) < Z * se_b, (t, m0.mean(), share, se_b)
        # healthier patients miss less (g < 0): the selection the paper shows
        assert np.corrcoef(p, H)[0, 1] < -0.5


@pytest.mark.parametrize("odds_ratio", [2.0, 0.5])
def test_attrition_effect_nests_the_missed_visits(model, odds_ratio):
    """One uniform per visit shared by the arms: OR > 1 makes missed under treatment a superset of
    missed under control, OR < 1 a subset (alive sets are the same: no survival effect)."""
    c = generate(make_design(model, 50_000, attrition_effect=odds_ratio), np.random.default_rng(808))
    for t in POST:
        a0, a1 = c.alive[t]
        np.testing.assert_array_equal(a0, a1)
        s0, s1 = c.seen[t]
        miss0, miss1 = a0 & ~s0, a1 & ~s1
        np.testing.assert_array_equal(s0 | miss0, a0)
        if odds_ratio > 1:
            assert not np.any(miss0 & ~miss1) and np.any(miss1 & ~miss0), t
        else:
            assert not np.any(miss1 & ~miss0) and np.any(miss0 & ~miss1), t


@pytest.mark.slow
@pytest.mark.parametrize("odds_ratio", [2.0, 0.5])
def test_realised_odds_ratio_of_missing(model, big, odds_ratio):
    """Arm at random, patients alive under both arms: a logistic regression of missed on [arm, H]
    recovers log(OR) (and the calibrated loading on H) within 4 SE."""
    import statsmodels.api as sm

    _, lat, L, H = big
    t0, t1 = A.death_days(model.survival, model.attrition, L, H, lat.death)
    arm = np.random.default_rng(99).random(H.size) < 0.5
    for j, t in enumerate(POST):
        m0, m1 = A.missed(model.attrition, H, lat.missed_u[:, j], t, 1.0, odds_ratio)
        alive = (t0 > model.visit_days[t]) & (t1 > model.visit_days[t])
        y = np.where(arm, m1, m0)[alive].astype(float)
        X = sm.add_constant(np.column_stack([arm[alive].astype(float), H[alive]]))
        fit = sm.Logit(y, X).fit(disp=0)
        est, se = fit.params[1], fit.bse[1]
        assert abs(est - np.log(odds_ratio)) < Z * se, (t, est, np.log(odds_ratio), se)
        assert abs(fit.params[2] - model.attrition.missed_health) < Z * fit.bse[2], (t, fit.params[2])


# ------------------------------------------------------------------ 5. health_scale
SCALE_SEEDS = {0.0: 5150, 2.0: 5151}


@pytest.fixture(scope="module")
def by_scale(model, big):
    """Default cohorts of 200 000 at health_scale 0 and 2 (1: `big`), independent seeds."""
    out = {1.0: big[0]}
    for k, seed in SCALE_SEEDS.items():
        out[k] = generate(make_design(model, 200_000, health_scale=k), np.random.default_rng(seed))
    return out


def test_health_scale_zero_makes_attrition_blind_to_health(model, big):
    """k = 0: log T0 is independent of H given L (the partial correlation is 0 within 4/sqrt(n)),
    and P(miss) is constant. At k = 1 both depend on H, so the checks can fail."""
    _, lat, L, H = big
    n = H.size
    for k in (0.0, 1.0):
        t0, _ = A.death_days(model.survival, model.attrition, L, H, lat.death, k)
        r = np.corrcoef(_ols_residual(np.log(t0), L), _ols_residual(H, L))[0, 1]
        if k == 0.0:
            assert abs(r) < Z / np.sqrt(n), r
        else:
            assert abs(r) > 10 / np.sqrt(n), r
        for t in POST:
            p = A.p_missed(model.attrition, H, t, k)
            assert (np.ptp(p) == 0.0) == (k == 0.0), (k, t)


@pytest.mark.parametrize("k", [0.0, 2.0])
def test_generate_applies_the_health_scale(model, by_scale, k):
    """The design's health_scale reaches both death days and the missed visits of a cohort."""
    c = by_scale[k]
    lat = _latents(model, c.n, SCALE_SEEDS[k])
    L, H = _tree(model, lat)
    t0, _ = A.death_days(model.survival, model.attrition, L, H, lat.death, k)
    t1, _ = A.death_days(model.survival, model.attrition, L, H, lat.death, 1.0)
    for j, t in enumerate(POST):
        day = model.visit_days[t]
        np.testing.assert_array_equal(c.alive[t][0], t0 > day)
        assert not np.array_equal(c.alive[t][0], t1 > day)  # k = 1 would give other survivors
        # missed visits at loading k x g, intercepts re-solved to keep the setting's share
        missed = lat.missed_u[:, j] < A.p_missed(make_design(model, 100, health_scale=k).attrition, H, t)
        np.testing.assert_array_equal(c.seen[t][0], (t0 > day) & ~missed)


def test_health_scale_zero_in_a_generated_cohort(by_scale):
    """In a generated cohort at k = 0, missing a visit while alive is unrelated to baseline
    Barthel: the missed share among the alive is the same in the lower and upper halves."""
    c = by_scale[0.0]
    pre = c.columns["barthel_pre"]
    for t in POST:
        alive = np.where(c.columns["treated"] == 1, c.alive[t][1], c.alive[t][0])
        missed = alive & (c.columns[f"seen_{t}"] == 0)
        low = pre <= np.median(pre[alive])
        p_lo, p_hi = missed[alive & low].mean(), missed[alive & ~low].mean()
        se = np.sqrt(p_lo * (1 - p_lo) / (alive & low).sum() + p_hi * (1 - p_hi) / (alive & ~low).sum())
        assert abs(p_lo - p_hi) < Z * se, (t, p_lo, p_hi, se)


@pytest.mark.slow
def test_health_scale_orders_the_completers_baseline_gap(by_scale):
    """The mean baseline Barthel of the patients seen at 6 months minus everyone's grows with k:
    gap(2) > gap(1) > gap(0), each difference beyond 4 MCSE."""
    gaps = {k: _gap(c, np.ones(c.n, bool)) for k, c in by_scale.items()}
    for lo, hi in ((0.0, 1.0), (1.0, 2.0)):
        diff = gaps[hi][0] - gaps[lo][0]
        se = np.hypot(gaps[hi][1], gaps[lo][1])
        assert diff > Z * se, (lo, hi, gaps)


def _sd_se(x: np.ndarray) -> float:
    """Large-sample SE of the sample SD (delta method on the variance)."""
    s2 = x.var()
    m4 = np.mean((x - x.mean()) ** 4)
    return float(np.sqrt(max(m4 - s2**2, 0.0) / x.size) / (2 * np.sqrt(s2)))


def test_health_scale_keeps_z_standard_and_the_death_share(model, big):
    """Z = (loc - log T0) / scale has mean 0 and SD 1 whatever k (s_k: exact, whatever H's shape;
    4 MCSE), and so the 6-month death share is the same at k = 0, 1, 2 (same latents: the MCSE is
    that of the paired differences). Z is exactly normal only if H is, and H carries the prognostic
    score of discrete covariates: the shares may differ by that too, a tenth of a point here; half a
    point is allowed for it (a sixth of the calibration's 3-point acceptance for a proportion)."""
    from sim.cohort.checks import PROP_TOL

    _, lat, L, H = big
    sm = model.survival
    dead = {}
    for k in (0.0, 1.0, 2.0):
        t0, _ = A.death_days(sm, model.attrition, L, H, lat.death, k)
        z = (sm.loc - np.log(t0)) / sm.scale
        assert abs(z.mean()) < Z * z.std() / np.sqrt(z.size), (k, z.mean())
        assert abs(z.std() - 1.0) < Z * _sd_se(z), (k, z.std(), _sd_se(z))
        dead[k] = (t0 <= model.visit_days["m6"]).astype(float)
    allowance = 0.005
    assert allowance < PROP_TOL / 3
    for k in (0.0, 2.0):
        diff = dead[k] - dead[1.0]
        se = diff.std(ddof=1) / np.sqrt(diff.size)
        assert abs(diff.mean()) < Z * se + allowance, (k, diff.mean(), se)
        assert np.any(diff != 0)  # the patients who die differ: k is not ignored


def test_health_scale_keeps_the_missed_share(model, big):
    """The design at health_scale k re-solves the missed-visit intercepts on the reference cohort:
    on a fresh cohort the average chance of missing each visit stays the setting (MC tolerance)."""
    _, _, _, H = big
    for k in (0.0, 2.0):
        am = make_design(model, 100, health_scale=k).attrition
        assert am.missed_health == pytest.approx(k * model.attrition.missed_health)
        for t in POST:
            p = A.p_missed(am, H, t)
            tol = 4 * p.std() / np.sqrt(H.size) * np.sqrt(2) + 1e-9
            assert abs(p.mean() - model.attrition.missed_share[t]) < tol, (k, t, p.mean())
    assert make_design(model, 100).attrition is None  # as calibrated


# ------------------------------------------------------------------ 6. calibration reproduces the selection
def test_completers_baseline_targets(study, model):
    """completers_baseline = Fig. 1 at the visit minus Table 2's change (improvement direction),
    with Table 2's change SD: recomputed from the study's numbers."""
    got = completers_baseline(study, model)
    assert set(got) == {(o, t, g) for o in OUTCOMES for t in POST for g in ("treated", "control")}
    for (o, t, g), (mean, sd) in got.items():
        out = study.outcomes[o]
        sign = 1.0 if out["higher_is_better"] else -1.0
        fig1_mean = out["fig1"][g][t][0]
        change, change_sd = out["table2"][g][t]
        assert mean == pytest.approx(fig1_mean - sign * change), (o, t, g)
        assert sd == change_sd
    # the Barthel numbers, by hand: treated 85.1 - 26.2, control 92.8 - 19.1 (the VAS's sign flips)
    assert got[("barthel", "m6", "treated")][0] == pytest.approx(58.9)
    assert got[("barthel", "m6", "control")][0] == pytest.approx(73.7)
    assert got[("vas", "m6", "treated")][0] == pytest.approx(25.4 + 38.0)


@pytest.mark.slow
@pytest.mark.parametrize("group", ["treated", "control"])
def test_calibration_reproduces_the_completers_gap(study, big, group):
    """On 200 000 patients at the default settings, the Barthel completers' baseline gap at 6 months
    (seen at 6 months minus everyone, by group) is the published one within 0.1 SD of Table 2's
    change: published gap = Fig. 1 6-month mean - Table 2 change - Fig. 1 baseline mean."""
    c = big[0]
    b = study.outcomes["barthel"]
    published = b["fig1"][group]["m6"][0] - b["table2"][group]["m6"][0] - b["fig1"][group]["pre"][0]
    assert published == pytest.approx({"treated": 6.6, "control": 7.8}[group])
    mask = (c.columns["treated"] == 1) == (group == "treated")
    gap, se = _gap(c, mask)
    assert se < 0.2  # the MC error is small beside the tolerance
    tol = 0.1 * b["table2"][group]["m6"][1]
    assert abs(gap - published) < tol, (group, gap, published, tol)
    assert gap > 0  # the completers started healthier


# ------------------------------------------------------------------ 7. principal strata
def test_principal_strata_are_known_per_patient(model):
    """HR = 0.7: alive under both / only under decompression / neither (never only without it), as
    given by both potential death days; the observed dead_<t> is the received arm's death status,
    potential outcomes are NaN exactly where that arm's patient is dead, and the share alive only
    under decompression is E[S0^HR - S0] within its binomial MCSE."""
    seed, n, hr = 909, 100_000, 0.7
    c = generate(make_design(model, n, effect_mcid=1.0, survival_effect=hr), np.random.default_rng(seed))
    lat = _latents(model, n, seed)
    L, H = _tree(model, lat)
    t0, t1 = model.death_days(L, H, lat, 1.0, hr)
    treated = c.columns["treated"] == 1
    for t in POST:
        day = model.visit_days[t]
        assert day == VISIT_DAYS[t]
        a0, a1 = c.alive[t]
        np.testing.assert_array_equal(a0, t0 > day)
        np.testing.assert_array_equal(a1, t1 > day)
        both, only1, only0, neither = a0 & a1, a1 & ~a0, a0 & ~a1, ~a0 & ~a1
        assert only0.sum() == 0
        assert both.sum() + only1.sum() + neither.sum() == n
        assert both.sum() == a0.sum() and both.sum() + only1.sum() == a1.sum()
        assert min(both.sum(), only1.sum(), neither.sum()) > 100
        s0 = A.p_alive(model.survival, model.attrition, L, H, day)
        expected = np.mean(s0**hr - s0)
        se = np.sqrt(expected * (1 - expected) / n)
        assert abs(only1.mean() - expected) < Z * se, (t, only1.mean(), expected, se)
        # observed death status: the received arm's
        dead = c.columns[f"dead_{t}"] == 1
        np.testing.assert_array_equal(dead, np.where(treated, ~a1, ~a0))
        assert np.all(c.columns["died"][dead] == 1)
        assert np.all(c.columns["survival_days"][dead] <= day)
        # seen needs alive, under each arm
        s0_, s1_ = c.seen[t]
        assert not np.any(s0_ & ~a0) and not np.any(s1_ & ~a1)
        np.testing.assert_array_equal(c.columns[f"seen_{t}"] == 1, np.where(treated, s1_, s0_))
        for o in OUTCOMES:
            d0, d1 = c.potential_deltas[(o, t)]
            np.testing.assert_array_equal(np.isnan(d0), ~a0, err_msg=f"{o} {t}")
            np.testing.assert_array_equal(np.isnan(d1), ~a1, err_msg=f"{o} {t}")
            np.testing.assert_array_equal(np.isnan(c.columns[f"{o}_{t}_y0"]), ~a0)
            np.testing.assert_array_equal(np.isnan(c.columns[f"{o}_{t}_y1"]), ~a1)
        # the SACE is over the always-alive: true_effects' NaN-dropping keeps exactly `both`
        d0, d1 = c.potential_deltas[("barthel", t)]
        assert c.true_effects()[("barthel", t)] == pytest.approx(float(np.mean((d1 - d0)[both])), rel=1e-12)


def test_analysis_truths_when_decompression_changes_who_is_seen(model):
    """HR = 0.7 and OR = 2: truth_ate is the mean effect over the always-alive, truth_while_alive_cohort
    compares each arm's own survivors (now a different set, so it is not the SACE), and
    truth_always_seen_cohort is the mean effect over the patients seen under both arms."""
    seed, n = 4242, 4_000
    design = make_design(model, n, effect_mcid=1.0, survival_effect=0.7, attrition_effect=2.0)
    c = generate(design, np.random.default_rng(seed))
    spec = MethodSpec(ps_covariates=("age", "male", "escc", "frankel_abc", "emergency"),
                      balance_covariates=("age", "male", "escc", "frankel_abc", "emergency"),
                      analyses=("diff_means",)).for_model(model)
    rows = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    assert len(rows) == len(OUTCOMES) * len(POST)
    for r in rows:
        o, t = r["outcome"], r["timepoint"]
        d0, d1 = c.potential_deltas[(o, t)]
        a0, a1 = c.alive[t]
        s0, s1 = c.seen[t]
        both = s0 & s1
        # OR > 1 nests the missed visits: seen under both = alive under both and seen with decompression
        np.testing.assert_array_equal(both, a0 & a1 & s1)
        assert not np.isnan(d1 - d0)[both].any() and both.sum() < (a0 & a1).sum()
        assert r["truth_ate"] == pytest.approx(float(np.mean((d1 - d0)[a0 & a1])), rel=1e-12), (o, t)
        wa = float(np.mean(d1[a1]) - np.mean(d0[a0]))
        assert r["truth_while_alive_cohort"] == pytest.approx(wa, rel=1e-12, abs=1e-12), (o, t)
        assert r["truth_always_seen_cohort"] == pytest.approx(float(np.mean((d1 - d0)[both])), rel=1e-12), (o, t)
    # the added survivors under decompression are sicker: the while-alive contrast is not the SACE
    assert any(r["truth_while_alive_cohort"] != pytest.approx(r["truth_ate"], rel=1e-6) for r in rows)


# ------------------------------------------------------------------ 8. validation names the key
@pytest.mark.parametrize("kwargs, key", [
    (dict(survival_effect=0), "cohort.survival_effect"),
    (dict(survival_effect=20), "cohort.survival_effect"),
    (dict(survival_effect=float("nan")), "cohort.survival_effect"),
    (dict(attrition_effect=-1), "cohort.attrition_effect"),
    (dict(attrition_effect=True), "cohort.attrition_effect"),
    (dict(health_scale=-1), "cohort.attrition.health_scale"),
    (dict(health_scale=6), "cohort.attrition.health_scale"),
    (dict(health_scale=float("inf")), "cohort.attrition.health_scale"),
], ids=["hr=0", "hr=20", "hr=nan", "or=-1", "or=bool", "k=-1", "k=6", "k=inf"])
def test_make_design_rejects_bad_attrition_settings(model, kwargs, key):
    with pytest.raises(ValueError) as info:
        make_design(model, 100, **kwargs)
    assert str(info.value).startswith(key + ":"), str(info.value)


def test_make_design_accepts_the_bounds(model):
    d = make_design(model, 100, survival_effect=0.1, attrition_effect=10, health_scale=0)
    assert (d.survival_effect, d.attrition_effect, d.health_scale) == (0.1, 10.0, 0.0)


GOOD = {"health": {"barthel": 1.0}, "missed_visit": {"m1": 0.05, "m6": 0.1}, "health_scale": 1.0}


def _with(**kw):
    raw = copy.deepcopy(GOOD)
    raw.update(kw)
    return raw


@pytest.mark.parametrize("raw, key", [
    (_with(dropout=0.1), "cohort.attrition.dropout:"),
    (_with(health={"pain": 1.0}), "cohort.attrition.health.pain:"),
    (_with(health={"barthel": 0.0, "vas": 0}), "cohort.attrition.health:"),
    (_with(health={}), "cohort.attrition.health:"),
    (_with(health={"barthel": "1"}), "cohort.attrition.health.barthel:"),
    (_with(missed_visit=0.7), "cohort.attrition.missed_visit.m1:"),
    (_with(missed_visit={"m1": 0.05, "m6": 0.7}), "cohort.attrition.missed_visit.m6:"),
    (_with(missed_visit={"m1": -0.1, "m6": 0.1}), "cohort.attrition.missed_visit.m1:"),
    (_with(missed_visit={"m1": 0.05}), "cohort.attrition.missed_visit:"),
    (_with(missed_visit={"m1": 0.05, "m6": 0.1, "m12": 0.1}), "cohort.attrition.missed_visit:"),
], ids=["unknown_key", "unknown_outcome", "all_zero", "empty_health", "weight_str", "share_0.7",
        "share_0.7_m6", "share_neg", "missing_visit", "extra_visit"])
def test_attrition_settings_errors_name_the_key(raw, key):
    with pytest.raises(ValueError) as info:
        A.settings(raw, OUTCOMES, POST)
    assert str(info.value).startswith(key), str(info.value)


def test_attrition_settings_parse():
    weights, missed = A.settings(GOOD, OUTCOMES, POST)
    assert weights == {"barthel": 1.0} and missed == {"m1": 0.05, "m6": 0.1}
    _, one = A.settings(_with(missed_visit=0.2), OUTCOMES, POST)
    assert one == {"m1": 0.2, "m6": 0.2}

"""The randomised-trial planning job (sim.jobs.rct), its statistics (sim.methods.trial) and the
closed-form power and planning formulas (sim.power), checked against statsmodels and,
statistically, against each other (fixed seeds, tolerances of 3 Monte Carlo SEs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from sim import power as PW
from sim.jobs import rct
from sim.jobs.conditions import Condition
from sim.methods import trial
from sim.methods.outcomes import TestResult

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("d, n, alpha", [(0.2, 50, 0.05), (0.5, 64, 0.05), (0.8, 10, 0.01), (1.3, 4, 0.05)])
def test_power_ttest_exact_matches_statsmodels(d, n, alpha):
    sd = 3.0
    ours = PW.power_ttest(n, d * sd, sd, alpha, exact=True)
    assert ours == pytest.approx(TTestIndPower().power(d, n, alpha, ratio=1.0), abs=1e-9)
    # unequal arms and a negative effect (two-sided)
    ours = PW.power_ttest(n, -d * sd, sd, alpha, exact=True, ratio=1.5)
    assert ours == pytest.approx(TTestIndPower().power(d, n, alpha, ratio=1.5), abs=1e-9)


@pytest.mark.parametrize("d, n, alpha", [(0.2, 50, 0.05), (0.5, 64, 0.05), (0.8, 10, 0.01)])
def test_power_ttest_normal_matches_statsmodels(d, n, alpha):
    assert PW.power_ttest(n, d, 1.0, alpha, exact=False) == pytest.approx(
        NormalIndPower().power(d, n, alpha, ratio=1.0, alternative="two-sided"), abs=1e-9)


@pytest.mark.parametrize("d, power, alpha", [(0.2, 0.8, 0.05), (0.5, 0.9, 0.05), (1.0, 0.8, 0.01)])
def test_n_per_arm_ttest_matches_statsmodels(d, power, alpha):
    sd = 25.0
    normal = PW.n_per_arm_ttest(d * sd, sd, alpha, power)
    assert normal == pytest.approx(2 * (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2 / d ** 2, rel=1e-12)
    # statsmodels also counts the far rejection tail (power += Phi(-ncp - z)), hence a hair larger
    assert normal == pytest.approx(NormalIndPower().solve_power(d, nobs1=None, alpha=alpha, power=power, ratio=1.0),
                                   rel=1e-4)
    exact = PW.n_per_arm_ttest(d * sd, sd, alpha, power, exact=True)
    assert exact == pytest.approx(TTestIndPower().solve_power(d, nobs1=None, alpha=alpha, power=power, ratio=1.0),
                                  rel=1e-6)
    assert exact > normal  # the t distribution costs a little
    # the power at the computed n is the target
    assert PW.power_ttest(exact, d * sd, sd, alpha, exact=True) == pytest.approx(power, abs=1e-8)


def test_death_inflation():
    n = PW.n_per_arm_ttest(5.0, 20.0, 0.05, 0.8)
    assert PW.n_per_arm_ttest(5.0, 20.0, 0.05, 0.8, survival=0.75) == pytest.approx(n / 0.75)
    assert PW.power_ttest(n / 0.75, 5.0, 20.0, survival=0.75) == pytest.approx(PW.power_ttest(n, 5.0, 20.0))
    assert np.allclose(PW.power_ttest(np.array([10.0, 50.0]), 5.0, 20.0),
                       [PW.power_ttest(10.0, 5.0, 20.0), PW.power_ttest(50.0, 5.0, 20.0)])


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.7])
def test_ancova_closed_form(rho):
    delta, sd, alpha, power = 4.0, 20.0, 0.05, 0.9
    res = sd * math.sqrt(1 - rho ** 2)
    assert PW.n_per_arm_ancova(delta, sd, rho, alpha, power) == pytest.approx(
        PW.n_per_arm_ttest(delta, res, alpha, power))
    assert PW.n_per_arm_ancova(delta, sd, rho, alpha, power) == pytest.approx(
        NormalIndPower().solve_power(delta / res, nobs1=None, alpha=alpha, power=power), rel=1e-4)
    # exact: noncentral t with one df less for the baseline slope
    for n in (15, 60):
        assert PW.power_ancova(n, delta, sd, rho, alpha) == pytest.approx(
            TTestIndPower().power(delta / res, n, alpha, df=2 * n - 3), abs=1e-9)
    n_exact = PW.n_per_arm_ancova(delta, sd, rho, alpha, power, exact=True)
    assert PW.power_ancova(n_exact, delta, sd, rho, alpha) == pytest.approx(power, abs=1e-8)


def test_power_formulas_reject_bad_input():
    with pytest.raises(ValueError, match="sd"):
        PW.n_per_arm_ttest(1.0, 0.0)
    with pytest.raises(ValueError, match="delta"):
        PW.n_per_arm_ttest(0.0, 1.0)
    with pytest.raises(ValueError, match="rho"):
        PW.n_per_arm_ancova(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="survival"):
        PW.power_ttest(10, 1.0, 1.0, survival=0.0)


# ----------------------------------------------------------------------------- analyses
def test_ancova_matches_statsmodels_ols():
    import statsmodels.api as sm

    rng = np.random.default_rng(11)
    n = 120
    z = rng.permutation(np.arange(n) < 60)
    pre = rng.normal(50, 20, n)
    post = 10 + 0.6 * pre - 7.0 * z + rng.normal(0, 15, n)  # a lower-is-better outcome improved by 7
    post[rng.random(n) < 0.1] = np.nan  # deaths
    ok = ~np.isnan(post)
    fit = sm.OLS(post[ok], sm.add_constant(np.column_stack([z[ok].astype(float), pre[ok]]))).fit()
    for direction in (1.0, -1.0):
        r = trial.ancova(post, pre, z, direction)
        assert isinstance(r, TestResult)
        assert r.estimate == pytest.approx(direction * fit.params[1], rel=1e-10)
        assert r.se == pytest.approx(fit.bse[1], rel=1e-10)
        assert r.p_value == pytest.approx(fit.pvalues[1], rel=1e-8)
        lo, hi = sorted(direction * fit.conf_int()[1])
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=1e-10)
        assert r.n_treated + r.n_control == ok.sum()


def test_t_tests_match_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(1, 2, 40), rng.normal(0, 3, 55)
    a[:3] = np.nan
    for fn, equal in ((trial.student_t, True), (trial.welch_t, False)):
        r = fn(a, b)
        assert isinstance(r, TestResult)
        ref = stats.ttest_ind(a[~np.isnan(a)], b, equal_var=equal)
        assert r.estimate == pytest.approx(np.nanmean(a) - b.mean())
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-8)
        ci = ref.confidence_interval(0.95)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-8)


def test_worst_rank_and_crossing():
    d = np.array([3.0, np.nan, -2.0, 5.0, np.nan])
    assert np.array_equal(trial.worst_rank(d), [3.0, -3.0, -2.0, 5.0, -3.0])
    # the text says what the code does: every patient without a change ranks worst, missed ones too
    assert "alive but not seen" in trial.worst_rank.__doc__
    for doc in (rct.__doc__, trial.__doc__):
        assert "every patient without a change (dead, or alive but not seen" in " ".join(doc.split())
        assert "a patient dead before the visit gets the worst" not in " ".join(doc.split())
    n, status = PW.crossing([60, 20, 40], [0.9, 0.5, 0.7], 0.8)  # any order
    assert n == pytest.approx(50.0) and status == "interpolated"
    assert PW.crossing([20, 40, 60], [0.85, 0.9, 0.95], 0.8) == (20.0, "at or below the smallest grid n")
    n, status = PW.crossing([20, 40, 60], [0.1, 0.2, 0.3], 0.8)
    assert math.isnan(n) and status == "not reached"


# ----------------------------------------------------------------------------- the simulation
@pytest.fixture(scope="module")
def model(study, cohort_settings):
    from sim.cohort.calibrate import calibrated

    return calibrated(study, cohort_settings)


def _design(model, n_per_arm, effect_mcid):
    from sim.cohort.generate import make_design

    return make_design(model, 2 * n_per_arm, confounding=0.0, effect_mcid=effect_mcid)


def test_randomisation_gives_exactly_n_per_arm(model):
    for n_total, n_t in ((40, 20), (11, 5), (600, 300)):
        z = trial.randomise(n_total, n_t, np.random.default_rng(n_total))
        assert z.dtype == bool and z.sum() == n_t and z.size == n_total
    assert not np.array_equal(trial.randomise(100, 50, np.random.default_rng(1)),
                              trial.randomise(100, 50, np.random.default_rng(2)))
    # in a replicate: with the worst-rank composite every randomised patient is analysed, n per arm
    spec = trial.TrialSpec(n_per_arm=30, analyses=("ttest", "wilcoxon"), death_strategy="worst_rank")
    design = _design(model, 30, 1.0)
    out = rct.rct_replicate((design, spec), np.random.default_rng(3))
    w = out[out["analysis"] == "wilcoxon"]
    assert (w["n_used_treated"] == 30).all() and (w["n_used_control"] == 30).all()
    t = out[out["analysis"] == "ttest"]  # complete case: the patients seen (alive, not missed) only
    assert ((t["n_used_treated"] + t["n_used_control"]) == 60 - t["n_unseen"]).all()
    assert (t["n_unseen"] >= t["n_deaths"]).all()
    assert (t.loc[t["timepoint"] == "m6", "n_deaths"] > 0).any()


def _simulate(model, n_per_arm, effect_mcid, outcome, time, reps, seed):
    """The job's randomisation and analysis for one outcome x time and the t-test, `reps` times.
    For speed the patients of all trials are drawn as one large cohort and cut into trials of
    2 x n_per_arm: patients are i.i.d., so each block is distributed as the job's cohort."""
    from sim.cohort.generate import generate

    design = _design(model, n_per_arm, effect_mcid)
    m = 2 * n_per_arm
    rng = np.random.default_rng(seed)
    big = generate(_design(model, m * reps, effect_mcid), rng)
    spec = trial.TrialSpec(n_per_arm=n_per_arm, outcomes=(outcome,), times=(time,), analyses=("ttest",))
    dirs = {o.name: o.direction() for o in model.outcomes}
    cols: dict[str, list] = {}
    for r in range(reps):
        s = slice(r * m, (r + 1) * m)
        z = trial.randomise(m, n_per_arm, rng)
        res = trial.analyse_trial(big.take(s), z, spec, dirs, model.visit_days, design.effect)
        for k, v in res.items():
            cols.setdefault(k, []).extend(v)
    return pd.DataFrame(cols), design


def test_type_one_error_of_the_t_test_is_nominal(model):
    reps = 4000
    out, _ = _simulate(model, 40, 0.0, "barthel", "m6", reps, seed=101)
    rate = float((out["p_value"] < 0.05).mean())
    mcse = math.sqrt(0.05 * 0.95 / reps)
    assert abs(rate - 0.05) < 3 * mcse, (rate, mcse)
    assert np.allclose(out["truth"], 0.0)  # no effect: the potential outcomes coincide


def test_simulated_t_test_power_matches_the_closed_form(model):
    """Acceptance criterion: the rct_planning power is within MCSE of the closed form for the
    t-test. Closed form: noncentral t at each replicate's survivors per arm, with the SD of the
    change score pooled over the simulated trials and the population effect (1 MCID)."""
    reps = 3000
    out, design = _simulate(model, 40, 1.0, "face", "m1", reps, seed=202)
    delta = design.effect[("face", "m1")]
    assert delta == pytest.approx(2.0)
    sd = math.sqrt(float(np.mean(out["sd_change"] ** 2)))
    n_t = out["n_used_treated"].to_numpy(float)
    n_c = out["n_used_control"].to_numpy(float)
    closed = float(np.mean(PW.power_ttest(n_t, delta, sd, 0.05, exact=True, ratio=n_c / n_t)))
    sim = float((out["p_value"] < 0.05).mean())
    mcse = math.sqrt(sim * (1 - sim) / reps)
    assert 0.5 < closed < 0.95  # a point on the curve where the check has teeth
    assert abs(sim - closed) < 3 * mcse, (sim, closed, mcse)


def test_summary_is_tidy_with_mcse():
    conds = [Condition(0, {"experiment.n_per_arm": 20, "cohort.effect_mcid": 0.0}, {}),
             Condition(1, {"experiment.n_per_arm": 40, "cohort.effect_mcid": 0.0}, {})]
    rng = np.random.default_rng(0)
    rows = []
    for c in (0, 1):
        for r in range(50):
            est = rng.normal()
            rows.append({"condition": c, "rep": r, "outcome": "vas", "timepoint": "m1", "analysis": "ttest",
                         "estimate": est, "se": 1.0, "ci_low": est - 1.96, "ci_high": est + 1.96,
                         "p_value": 2 * stats.norm.sf(abs(est)), "truth": 0.0, "truth_pop": 0.0,
                         "n_used_treated": 20, "n_used_control": 19, "n_deaths": 1, "sd_change": 3.0,
                         "favours": float(np.sign(est))})
    s = rct.summary_table(pd.DataFrame(rows), pd.DataFrame(columns=["condition", "rep", "reason"]), conds, 0.05, 50)
    assert list(s.columns) == ["n_per_arm", "effect_mcid", "outcome", "timepoint", "analysis", "measure", "value",
                               "mcse", "n"]
    for m in ("bias", "coverage", "rejection", "true_ate", "n_failed", "mean_n_used_treated"):
        assert m in set(s["measure"]), m
    rej = s[(s["measure"] == "rejection")]
    assert np.allclose(rej["mcse"], np.sqrt(rej["value"] * (1 - rej["value"]) / 50))
    # power counts only the significant results in favour of treatment (one-sided at alpha/2)
    reps = pd.DataFrame(rows)
    for c, g in reps.groupby("condition"):
        hit = ((g["p_value"] < 0.05) & (g["favours"] > 0)).mean()
        got = s[(s["measure"] == "rejection_benefit") & (s["n_per_arm"] == 20 * (c + 1))]
        assert got["value"].iloc[0] == pytest.approx(hit) and got["n"].iloc[0] == 50


# ----------------------------------------------------------------------------- end to end
# The job's whole run (its files, sample sizes, report): tests/test_cli.py::test_rct_planning_outputs


@pytest.mark.slow  # ~4 s: one Hydra compose and prepare per bad setting
def test_bad_settings_are_config_errors():
    """Every job-specific setting is checked by the job before any replicate runs (prepare), in one
    line naming the key; the allowed analyses are those of the registry sim.methods.trial.ANALYSES."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from sim.jobs import contract as experiment
    from sim.jobs.config import ConfigError

    cases = (("experiment.death_strategy=impute", "experiment.death_strategy"),
             ("experiment.analyses=[ttest,cox]", "experiment.analyses"),
             ("experiment.power_targets=[0.8,1.2]", "experiment.power_targets"),
             ("experiment.reference_n=10", "experiment.reference_n"),
             ("experiment.direct_checks.reps=5", "experiment.direct_checks.reps"),
             ("experiment.direct_checks.top=-1", "experiment.direct_checks.top"),
             ("+experiment.direct_checks.trials=5", "experiment.direct_checks"),
             ("experiment.grid={experiment.n_per_arm:[2,40],cohort.effect_mcid:[0.0]}", "experiment.n_per_arm"),
             (None, "experiment.grid"))
    for override, key in cases:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
            cfg = compose("config", overrides=["experiment=rct_planning", "reps=2", *([override] if override else [])])
        if override is None:  # a grid without n per arm
            with open_dict(cfg):
                del cfg.experiment.grid["experiment.n_per_arm"]
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
            experiment.prepare(cfg)
        assert "\n" not in str(err.value)
        if key == "experiment.analyses":
            assert str(list(trial.ANALYSES)) in str(err.value)


def _trials(model, n_per_arm, reps, seed, analyses, **design_kw):
    """`reps` trials of 2 x n_per_arm cut from one large cohort (patients are i.i.d.)."""
    from sim.cohort.generate import generate, make_design

    m = 2 * n_per_arm
    rng = np.random.default_rng(seed)
    big = generate(make_design(model, m * reps, confounding=0.0, **design_kw), rng)
    spec = trial.TrialSpec(n_per_arm=n_per_arm, outcomes=("barthel",), times=("m6",), analyses=analyses)
    dirs = {o.name: o.direction() for o in model.outcomes}
    cols: dict[str, list] = {}
    for r in range(reps):
        z = trial.randomise(m, n_per_arm, rng)
        for k, v in trial.analyse_trial(big.take(slice(r * m, (r + 1) * m)), z, spec, dirs, model.visit_days).items():
            cols.setdefault(k, []).extend(v)
    return pd.DataFrame(cols)


@pytest.mark.slow
def test_composite_detects_a_survival_benefit_and_keeps_its_level_without_one(model):
    """The death-ranks-worst composite: at its level when decompression changes nothing, and
    powered against a survival benefit alone (hazard ratio 0.5, no effect on the change), which
    the complete-case t-test is not built to see."""
    reps = 600
    null = _trials(model, 120, reps, 31, ("composite",))
    rate = float((null["p_value"] < 0.05).mean())
    assert abs(rate - 0.05) < 3 * math.sqrt(0.05 * 0.95 / reps), rate
    saved = _trials(model, 120, reps, 32, ("composite", "ttest"), survival_effect=0.5)
    comp = saved[saved["analysis"] == "composite"]
    power = float((comp["p_value"] < 0.05).mean())
    assert power > 0.05 + 6 * math.sqrt(0.05 * 0.95 / reps), power
    # and every randomised patient not lost to a missed visit is analysed
    assert (comp["n_used_treated"] + comp["n_used_control"] == 240 - (comp["n_unseen"] - comp["n_deaths"])).all()


def test_informative_loss_quantities_are_those_of_the_patients_seen(model):
    """reference_quantities: the share seen, the SD of the change and the effect among the
    patients seen, recomputed here from the cohort's potential outcomes and seen masks."""
    from sim.cohort.generate import generate, make_design

    design = make_design(model, 20_000, confounding=0.0, effect_mcid=1.0)
    ref = PW.reference_quantities(design, 20_000, np.random.default_rng(9), ["barthel"], ["m6"]).iloc[0]
    c = generate(design, np.random.default_rng(9))
    d0, d1 = c.potential_deltas[("barthel", "m6")]
    s0, s1 = c.seen["m6"]
    assert ref["seen"] == pytest.approx((s0.mean() + s1.mean()) / 2)
    assert ref["seen"] < ref["survival"]  # missed visits on top of deaths
    assert ref["effect_seen"] == pytest.approx(np.mean(d1[s1]) - np.mean(d0[s0]))
    assert ref["sd_change_seen"] == pytest.approx(math.sqrt((np.var(d0[s0], ddof=1) + np.var(d1[s1], ddof=1)) / 2))
    # the planned n: the closed form on those quantities, inflated by the share seen
    n = PW.n_per_arm_ttest(ref["effect_seen"], ref["sd_change_seen"], alpha=0.05, power=0.8, survival=ref["seen"])
    z = stats.norm.ppf
    assert n == pytest.approx(2 * (z(0.975) + z(0.8)) ** 2 * ref["sd_change_seen"] ** 2
                              / ref["effect_seen"] ** 2 / ref["seen"])


# ----------------------------------------------------------------------------- Wilcoxon inputs, report, answer
def test_reference_superiority_is_the_mann_whitney_p_of_the_patients_seen(model):
    """reference_quantities: P(Y1 > Y0) + P(Y1 = Y0)/2 among the patients seen is U / (n1 n0) of
    scipy's Mann-Whitney U on the two arms' potential changes, and the worst-rank version ranks
    every patient not seen below every change (as sim.methods.trial.worst_rank does)."""
    from sim.cohort.generate import generate, make_design

    design = make_design(model, 20_000, confounding=0.0, effect_mcid=1.0)
    ref = PW.reference_quantities(design, 20_000, np.random.default_rng(9), ["face"], ["m6"]).iloc[0]
    c = generate(design, np.random.default_rng(9))
    d0, d1 = c.potential_deltas[("face", "m6")]
    s0, s1 = c.seen["m6"]
    u = stats.mannwhitneyu(d1[s1], d0[s0]).statistic
    assert ref["p_superiority"] == pytest.approx(u / (s1.sum() * s0.sum()), rel=1e-12)
    assert 0.5 < ref["p_superiority"] < 1 and 0 < ref["p_tie"] < 1 and 0.9 < ref["tie_factor"] < 1
    worst = trial.worst_rank(np.concatenate([np.where(s1, d1, np.nan), np.where(s0, d0, np.nan)]))
    u = stats.mannwhitneyu(worst[:c.n], worst[c.n:]).statistic
    assert ref["p_superiority_worst_rank"] == pytest.approx(u / c.n ** 2, rel=1e-12)
    assert ref["tie_factor_worst_rank"] < ref["tie_factor"]  # the block of patients not seen is one tie

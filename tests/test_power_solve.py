"""Sample size by root-finding on simulated power (sim.power.solve_simulated_n: probit GLM of the
rejection counts on sqrt(n), Fieller / delta-method interval), the Wilcoxon closed form after
Noether (1987) with its tie factor, the composite's diluted closed form, the Bonferroni factor, the
sample-size table and the unrounded comparison that set them side by side, and the direct
simulation that checks a gap. Statistical checks use fixed seeds and tolerances of 3 Monte Carlo
SEs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from sim import power as PW

NAN_ = float("nan")
GRID = np.array([20, 40, 60, 80, 100, 150, 200, 300, 450, 650], dtype=float)


def _probit_curve(n_star: float, target: float = 0.8, a: float = -1.96):
    """A power curve Phi(a + b sqrt(n)) reaching `target` at n_star."""
    b = (stats.norm.ppf(target) - a) / math.sqrt(n_star)
    return lambda n: stats.norm.cdf(a + b * np.sqrt(np.asarray(n, dtype=float)))


# ----------------------------------------------------------------------------- the fit
def test_probit_fit_agrees_with_a_direct_likelihood_fit_and_statsmodels_prediction():
    """The GLM coefficients are the binomial-probit MLE (checked by maximising the likelihood
    directly), n* solves the fitted curve, and the Fieller limits are where statsmodels' pointwise
    95 % interval of the linear predictor (same dispersion scaling) reaches the target."""
    reps = np.full(GRID.size, 300)
    k = np.random.default_rng(0).binomial(reps, _probit_curve(150.0)(GRID))
    fit = PW.solve_simulated_n(GRID, k, reps, 0.8)
    assert fit.status == "fitted" and fit.reason == ""

    def nll(b):
        p = np.clip(stats.norm.cdf(b[0] + b[1] * np.sqrt(GRID)), 1e-300, 1 - 1e-16)
        return -float(np.sum(k * np.log(p) + (reps - k) * np.log1p(-p)))

    mle = optimize.minimize(nll, x0=[-1.0, 0.1], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12,
                                                                              "maxiter": 20000}).x
    assert fit.coef == pytest.approx(tuple(mle), rel=1e-4)
    b0, b1 = fit.coef
    assert fit.n == pytest.approx(((stats.norm.ppf(0.8) - b0) / b1) ** 2, rel=1e-12)
    assert fit.low < fit.n < fit.high

    res = PW.fit_probit_curve(GRID, k, reps)
    assert tuple(res.params) == pytest.approx(fit.coef, rel=1e-10)
    assert fit.dispersion == pytest.approx(res.pearson_chi2 / res.df_resid)
    scaled = res.model.fit(scale=max(1.0, fit.dispersion))
    ci = scaled.get_prediction(np.array([[1.0, math.sqrt(fit.low)], [1.0, math.sqrt(fit.high)]]),
                               which="linear").conf_int(alpha=0.05)
    assert ci[0, 1] == pytest.approx(stats.norm.ppf(0.8), abs=1e-8)  # upper limit at the lower n
    assert ci[1, 0] == pytest.approx(stats.norm.ppf(0.8), abs=1e-8)  # lower limit at the upper n
    # the delta method: symmetric on the sqrt(n) scale, close to Fieller here
    d = PW.solve_simulated_n(GRID, k, reps, 0.8, interval="delta")
    assert d.n == fit.n
    assert math.sqrt(d.n) - math.sqrt(d.low) == pytest.approx(math.sqrt(d.high) - math.sqrt(d.n), rel=1e-9)
    assert (d.low, d.high) == pytest.approx((fit.low, fit.high), rel=0.02)


@pytest.mark.parametrize("interval", ["fieller", "delta"])
def test_interval_covers_the_true_n_of_a_probit_curve(interval):
    """200 seeded synthetic data sets of 300 replicates per grid n from a known probit curve
    reaching 80 % at n = 150: the 95 % interval covers 150 in 95 % of them within 3 MCSE, and the
    estimate is unbiased within 3 of its MCSEs."""
    true_n, sets, reps = 150.0, 200, np.full(GRID.size, 300)
    power = _probit_curve(true_n)(GRID)
    hits, est = [], []
    for seed in range(sets):
        fit = PW.solve_simulated_n(GRID, np.random.default_rng(seed).binomial(reps, power), reps, 0.8,
                                   interval=interval)
        assert fit.status == "fitted"
        hits.append(fit.low <= true_n <= fit.high)
        est.append(fit.n)
    cover, mcse = float(np.mean(hits)), math.sqrt(0.95 * 0.05 / sets)
    assert abs(cover - 0.95) < 3 * mcse, cover
    assert abs(np.mean(est) - true_n) < 3 * np.std(est, ddof=1) / math.sqrt(sets), np.mean(est)


def test_interval_covers_the_noncentral_t_solution():
    """Counts drawn from the exact noncentral-t power of the t-test (not exactly probit-linear in
    sqrt(n): t distribution, far rejection tail): the fit still covers the exact n in ~95 %."""
    sets, reps = 200, np.full(GRID.size, 1000)
    power = PW.power_ttest(GRID, 0.3, 1.0, exact=True)
    true_n = PW.n_per_arm_ttest(0.3, 1.0, 0.05, 0.8, exact=True)
    hits = [(lambda f: f.low <= true_n <= f.high)(
        PW.solve_simulated_n(GRID, np.random.default_rng(100 + s).binomial(reps, power), reps, 0.8))
        for s in range(sets)]
    assert abs(np.mean(hits) - 0.95) < 3 * math.sqrt(0.95 * 0.05 / sets), np.mean(hits)


def test_no_n_when_power_does_not_increase_or_the_target_is_off_the_grid():
    reps = np.full(GRID.size, 1000)
    # effect 0: the rejection rate stays at alpha
    flat = PW.solve_simulated_n(GRID, np.random.default_rng(1).binomial(reps, 0.05), reps, 0.8)
    assert flat.status == "not increasing" and math.isnan(flat.n) and math.isnan(flat.low)
    assert "does not increase" in flat.reason
    # power falling with n
    down = PW.solve_simulated_n(GRID, np.round(reps * np.linspace(0.9, 0.3, GRID.size)), reps, 0.5)
    assert down.status == "not increasing" and math.isnan(down.n)
    # the curve reaches 80 % only beyond the largest n: flagged, the extrapolated n kept aside
    far = PW.solve_simulated_n(GRID, np.round(reps * _probit_curve(1200.0)(GRID)), reps, 0.8)
    assert far.status == "beyond the grid" and math.isnan(far.n) and math.isnan(far.high)
    assert far.n_curve == pytest.approx(1200.0, rel=0.01)
    assert "extrapolation" in far.reason and "650" in far.reason
    # already reached below the smallest n
    near = PW.solve_simulated_n(GRID, np.round(reps * _probit_curve(12.0)(GRID)), reps, 0.8)
    assert near.status == "below the grid" and math.isnan(near.n) and near.n_curve < 20
    # too few points to fit, or too few with power strictly between 0 and 1
    assert PW.solve_simulated_n([20, 40], [100, 500], [1000, 1000], 0.8).status == "too few points"
    assert PW.solve_simulated_n(GRID, np.r_[880, [1000] * 9], reps, 0.9).status == "too few points"
    assert PW.solve_simulated_n(GRID, reps, reps, 0.8).status == "below the grid"
    assert PW.solve_simulated_n(GRID, 0 * reps, reps, 0.8).status == "beyond the grid"
    with pytest.raises(ValueError):
        PW.solve_simulated_n(GRID, reps + 1, reps, 0.8)
    with pytest.raises(ValueError):
        PW.solve_simulated_n(GRID, reps, reps, 1.2)


def test_log_scale_is_available_but_misfits_a_normal_theory_curve():
    """x = log n (the issue's example) on an exact t-test power curve over the grid: the Pearson
    dispersion flags the lack of fit that sqrt(n) does not have."""
    reps = np.full(GRID.size, 1000)
    k = np.round(reps * PW.power_ttest(GRID, 0.3, 1.0, exact=True))
    sq = PW.solve_simulated_n(GRID, k, reps, 0.8)
    lg = PW.solve_simulated_n(GRID, k, reps, 0.8, x="log")
    assert sq.dispersion < 1 < 5 < lg.dispersion
    assert "lack of fit" in lg.reason


# ----------------------------------------------------------------------------- Noether
def test_noether_formula():
    p, alpha, power = 0.6, 0.05, 0.9
    k = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) ** 2
    assert PW.n_per_arm_noether(p, alpha, power) == pytest.approx(k / (12 * 0.25 * 0.01) / 2, rel=1e-12)
    assert PW.n_per_arm_noether(1 - p, alpha, power) == pytest.approx(PW.n_per_arm_noether(p, alpha, power))
    assert PW.n_per_arm_noether(p, survival=0.8, tie_factor=0.9) == pytest.approx(
        PW.n_per_arm_noether(p) * 0.9 / 0.8)
    # normal shift, small effect: the t answer divided by the ARE 3/pi
    d = 0.1
    assert PW.n_per_arm_noether(stats.norm.cdf(d / math.sqrt(2))) == pytest.approx(
        PW.n_per_arm_ttest(d, 1.0) * math.pi / 3, rel=0.01)
    for bad in (0.5, 1.2, -0.1):
        with pytest.raises(ValueError):
            PW.n_per_arm_noether(bad)


def test_noether_agrees_with_statsmodels_and_a_simulated_wilcoxon_test():
    """Normal shift d = 0.3 (continuous, P = Phi(d / sqrt 2)): statsmodels' rank-compare sample
    size (Happ et al. 2019, which also uses the variance under the alternative) within 3 %, and
    the simulated power of the Wilcoxon test at Noether's n within 3 MCSE of 80 %."""
    from statsmodels.stats.nonparametric import samplesize_rank_compare_onetail

    d = 0.3
    n = PW.n_per_arm_noether(stats.norm.cdf(d / math.sqrt(2)), 0.05, 0.8)
    rng = np.random.default_rng(11)
    ref = rng.normal(size=20_000)
    happ = samplesize_rank_compare_onetail(ref + d, ref, 0.05, 0.8)
    assert n == pytest.approx(happ.nobs_total / 2, rel=0.03)
    reps, m = 4000, math.ceil(n)
    p = stats.mannwhitneyu(rng.normal(d, 1, (reps, m)), rng.normal(0, 1, (reps, m)), axis=1,
                           method="asymptotic").pvalue
    sim = float(np.mean(p < 0.05))
    assert abs(sim - 0.8) < 3 * math.sqrt(0.8 * 0.2 / reps), sim


def test_superiority_and_the_tie_factor_on_a_three_point_scale():
    """P(T > C) + P(T = C)/2 and 1 - sum pi^3 of a stepped scale match their exact values, and the
    tie-corrected Wilcoxon test reaches 80 % at Noether x tie factor (plain Noether overshoots)."""
    p0, p1 = np.array([0.3, 0.4, 0.3]), np.array([0.22, 0.4, 0.38])
    exact_p = float(sum(p1[i] * p0[:i].sum() for i in range(3)) + (p1 @ p0) / 2)
    exact_tf = float(1 - np.sum(((p0 + p1) / 2) ** 3))
    rng = np.random.default_rng(3)
    big1, big0 = rng.choice(3, 200_000, p=p1).astype(float), rng.choice(3, 200_000, p=p0).astype(float)
    p, tie, tf = PW.superiority(big1, big0)
    assert p == pytest.approx(exact_p, abs=0.003) and tf == pytest.approx(exact_tf, abs=0.002)
    assert tie == pytest.approx(float(p1 @ p0), abs=0.003)
    # against the Mann-Whitney U on a small sample (ties included), and -inf as a value
    a, b = np.array([1.0, 2, 2, 3, -np.inf]), np.array([2.0, 0, 2, -np.inf])
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    assert PW.superiority(a, b)[0] == pytest.approx(u / (a.size * b.size))
    n_plain = math.ceil(PW.n_per_arm_noether(exact_p))
    n_ties = math.ceil(PW.n_per_arm_noether(exact_p, tie_factor=exact_tf))
    reps = 4000
    mcse = math.sqrt(0.8 * 0.2 / reps)
    power = [float(np.mean(stats.mannwhitneyu(rng.choice(3, (reps, m), p=p1), rng.choice(3, (reps, m), p=p0),
                                              axis=1, method="asymptotic").pvalue < 0.05)) for m in (n_ties, n_plain)]
    assert abs(power[0] - 0.8) < 3 * mcse, power
    assert power[1] > 0.8 + 3 * mcse, power


# ----------------------------------------------------------------------------- the table
ANALYSES = ("ttest", "ancova", "wilcoxon", "composite")


def _ref(**over):
    row = dict(outcome="vas", timepoint="m6", delta=10.0, ate_reference=10.0, survival=0.8, sd_change=33.0,
               sd_post=22.0, rho=0.2, seen=0.7, sd_change_seen=30.0, effect_seen=9.0, p_superiority=0.58,
               p_tie=0.01, tie_factor=0.999, p_superiority_worst_rank=0.56, tie_factor_worst_rank=0.93, dead=0.2)
    row.update(over)
    return pd.DataFrame([row])


def _summary(ref: pd.DataFrame, reps: int = 1000) -> pd.DataFrame:
    """Tidy rejection rows whose rates are exact closed-form powers (no Monte Carlo noise) for the
    t-test and ANCOVA, a weak curve for the Wilcoxon test, and no composite."""
    r = ref.iloc[0]
    curves = {"ttest": PW.power_ttest(GRID, r.delta, r.sd_change, survival=r.seen),  # analysable: seen
              "ancova": PW.power_ancova(GRID, r.delta, r.sd_post, r.rho, survival=r.seen),
              "wilcoxon": _probit_curve(2000.0)(GRID)}
    rows = [{"n_per_arm": n, "effect_mcid": 1.0, "outcome": r.outcome, "timepoint": r.timepoint, "analysis": an,
             "measure": "rejection_benefit", "value": round(float(p) * reps) / reps, "mcse": NAN_, "n": reps}
            for an, ps in curves.items() for n, p in zip(GRID, ps)]
    return pd.DataFrame(rows)


def test_sample_size_table_columns_and_values():
    ref = _ref()
    ss = PW.sample_size_table(_summary(ref), {1.0: ref}, ANALYSES, [0.8, 0.9], 0.05, {})
    assert len(ss) == 2
    for an in ANALYSES:
        for suffix in ("", "_low", "_high", "_status"):
            assert f"sim_{an}{suffix}" in ss.columns
    for col in ("closed_ttest", "closed_ttest_nct", "closed_ancova", "closed_ancova_nct", "closed_wilcoxon",
                "closed_wilcoxon_ties", "closed_composite", "closed_ttest_informative", "closed_ttest_table2sd",
                "p_superiority", "tie_factor", "q_composite", "alpha", "notes"):
        assert col in ss.columns, col
    for r in ss.itertuples():
        # the exact noncentral-t answers lie inside the fitted intervals (rounded up, all three)
        assert r.sim_ttest_status == "fitted" and r.sim_ttest_low <= r.closed_ttest_nct <= r.sim_ttest_high
        assert r.sim_ancova_low <= r.closed_ancova_nct <= r.sim_ancova_high
        assert r.sim_ttest == float(math.ceil(r.sim_ttest)) and r.sim_ttest_low <= r.sim_ttest <= r.sim_ttest_high
        assert r.closed_wilcoxon == math.ceil(PW.n_per_arm_noether(0.58, power=r.power, survival=0.7))
        assert r.closed_wilcoxon_ties == math.ceil(PW.n_per_arm_noether(0.58, power=r.power, survival=0.7,
                                                                         tie_factor=0.999))
        assert r.sim_wilcoxon_status == "beyond the grid" and math.isnan(r.sim_wilcoxon)
        assert r.sim_composite_status == "not run" and math.isnan(r.sim_composite_low)
        assert "wilcoxon: beyond the grid (the fitted curve reaches" in r.notes and "composite: not run" in r.notes
        assert math.isnan(r.closed_ttest_table2sd)
    # worst rank: the Wilcoxon closed form on the worst-rank P and ties, every patient analysed
    wr = PW.sample_size_table(_summary(ref), {1.0: ref}, ANALYSES, [0.8], 0.05, {}, death_strategy="worst_rank")
    assert wr["closed_wilcoxon"].iloc[0] == math.ceil(PW.n_per_arm_noether(0.56))
    assert wr["p_superiority"].iloc[0] == 0.56 and wr["tie_factor"].iloc[0] == 0.93


def test_largest_gap_is_read_off_the_comparison_table():
    cmp = pd.DataFrame([[1.0, "vas", "m1", 0.8, "ttest", "closed_ttest_nct", 100.2, 90.1, 110.3, 96.4],
                        [1.0, "face", "m6", 0.9, "ttest", "closed_ttest_nct", 50.0, 45.0, 55.9, 60.2],
                        [1.0, "vas", "m1", 0.8, "ancova", "closed_ancova_nct", 40.0, 36.0, 44.0, 35.1],
                        [1.0, "vas", "m1", 0.8, "wilcoxon", "closed_wilcoxon_ties", 99.0, 98.0, 100.0, 10.0]],
                       columns=PW.COMPARISON_COLUMNS[:-2])
    cmp["gap"] = cmp["sim_n"] / cmp["closed_n"] - 1
    cmp["inside"] = (cmp["sim_low"] <= cmp["closed_n"]) & (cmp["closed_n"] <= cmp["sim_high"])
    assert len(PW.gaps(cmp)) == 3  # the tie-corrected Wilcoxon form is not a gap pair
    top = PW.largest_gap(cmp)
    assert (top.analysis, top.outcome, top.timepoint, top.power) == ("ttest", "face", "m6", 0.9)
    assert top.gap == pytest.approx(50 / 60.2 - 1)  # -17 %, beyond the ANCOVA's +14 %
    assert list(PW.largest_gap(cmp, k=2)["analysis"]) == ["ttest", "ancova"]
    assert PW.largest_gap(cmp.iloc[3:]) is None


def test_comparison_is_unrounded_and_solved_on_the_benefit_direction():
    """comparison_table: the simulated n is the fit's unrounded solution on `rejection_benefit`,
    the closed form unrounded, so a gap is not moved by rounding; sample_size_table rounds both up
    for planning. A summary whose two-sided rejections differ (harm-direction rejections added) gives
    the same n: power is counted in favour of treatment."""
    ref = _ref()
    summary = _summary(ref)
    harm = summary.assign(measure="rejection", value=np.minimum(summary["value"] + 0.05, 1.0))
    both = pd.concat([summary, harm], ignore_index=True)
    cmp = PW.comparison_table(both, {1.0: ref}, [0.8], 0.05, {})
    r = ref.iloc[0]
    t = cmp[cmp["analysis"] == "ttest"].iloc[0]
    c = summary[summary["analysis"] == "ttest"]
    fit = PW.solve_simulated_n(c["n_per_arm"], np.round(c["value"] * c["n"]), c["n"].astype(float), 0.8)
    assert t.sim_n == fit.n and (t.sim_low, t.sim_high) == (fit.low, fit.high)
    exact = PW.n_per_arm_ttest(r.delta, r.sd_change, 0.05, 0.8, exact=True, survival=r.seen)
    assert t.closed_n == exact and exact != math.ceil(exact)
    assert t.gap == pytest.approx(fit.n / exact - 1, rel=1e-12)
    ss = PW.sample_size_table(both, {1.0: ref}, ANALYSES, [0.8], 0.05, {})
    assert ss["sim_ttest"].iloc[0] == math.ceil(fit.n) and ss["closed_ttest_nct"].iloc[0] == math.ceil(exact)
    with pytest.raises(ValueError, match="'rejection_benefit'"):
        PW.comparison_table(harm, {1.0: ref}, [0.8], 0.05, {})


def test_informative_loss_is_planned_with_the_noncentral_t():
    """closed_ttest_informative uses the noncentral t like the other t closed forms: statsmodels'
    TTestIndPower on the patients seen, divided by the share seen."""
    from statsmodels.stats.power import TTestIndPower

    ref = _ref()
    r = ref.iloc[0]
    ss = PW.sample_size_table(_summary(ref), {1.0: ref}, ANALYSES, [0.8, 0.9], 0.05, {})
    for row in ss.itertuples():
        sm = TTestIndPower().solve_power(r.effect_seen / r.sd_change_seen, nobs1=None, alpha=0.05, power=row.power)
        assert row.closed_ttest_informative == math.ceil(sm / r.seen - 1e-9)
        assert row.closed_ttest_informative >= math.ceil(PW.n_per_arm_ttest(r.effect_seen, r.sd_change_seen, 0.05,
                                                                            row.power, survival=r.seen))


def test_composite_closed_form_is_noether_at_the_diluted_p():
    """closed_composite: Noether at 1/2 + (1 - q)^2 (P_seen - 1/2), q = dead / (dead + seen), divided by
    the share ranked (dead + seen); per patient randomised (1 - q)^-3 times the complete-case
    Noether n."""
    ref = _ref()
    r = ref.iloc[0]
    q = r.dead / (r.dead + r.seen)
    cf = PW.closed_forms(r, 0.8, 0.05, {})
    assert cf["closed_composite"] == pytest.approx(
        PW.n_per_arm_noether(PW.composite_superiority(r.p_superiority, q), survival=r.dead + r.seen), rel=1e-12)
    assert cf["closed_composite"] / cf["closed_wilcoxon"] == pytest.approx((1 - q) ** -3, rel=1e-12)
    ss = PW.sample_size_table(_summary(ref), {1.0: ref}, ANALYSES, [0.8], 0.05, {})
    assert ss["closed_composite"].iloc[0] == math.ceil(cf["closed_composite"])
    assert ss["q_composite"].iloc[0] == pytest.approx(q)

"""What the rct_planning job plans beyond the sample-size table: the composite's diluted power,
the Bonferroni factor, the direct simulation that settles a gap between a simulated and a
closed-form n, what each endpoint estimates (ICH E9(R1)), and how the report and the curated answer
quote them. Statistical checks use fixed seeds and tolerances of 3 Monte Carlo SEs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim import power as PW
from sim.jobs.rct import rct_replicate
from sim.methods.outcomes import TestResult, wilcoxon_ranksum
from sim.methods.trial import TrialSpec, favours


@pytest.fixture(scope="module")
def model(study, cohort_settings):
    from sim.cohort.calibrate import calibrated

    return calibrated(study, cohort_settings)


def _design(model, n_per_arm, effect_mcid):
    from sim.cohort.generate import make_design

    return make_design(model, 2 * n_per_arm, confounding=0.0, effect_mcid=effect_mcid)


def trial_spec(n=10, outcome="vas", time="m1", analysis="ttest") -> TrialSpec:
    return TrialSpec(n_per_arm=n, outcomes=(outcome,), times=(time,), analyses=(analysis,))


@dataclasses.dataclass(frozen=True)
class FakeDesign:
    n: int = 0


# ----------------------------------------------------------------------------- composite, multiplicity
def test_composite_superiority_is_the_diluted_p_of_an_exact_enumeration():
    """P(T > C) + P(T = C)/2 of the death-ranks-worst composite, enumerated exactly over a discrete
    change, a share q dead in each arm (death days uniform, independent of the change): equal to
    1/2 + (1 - q)^2 (P_seen - 1/2)."""
    vals = np.arange(4.0)
    p1, p0 = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.3, 0.3, 0.2, 0.2])
    q, days = 0.3, 5  # deaths on days 0..4, uniform
    p_seen = float(sum(p1[i] * (p0[:i].sum() + p0[i] / 2) for i in range(4)))
    # composite values: deaths -days..., changes above them; arms T, C as (value, probability)
    arm = lambda p: [(d - days - 10.0, q / days) for d in range(days)] + [(v, (1 - q) * w) for v, w in zip(vals, p)]
    t, c = arm(p1), arm(p0)
    exact = sum(pt * pc * ((vt > vc) + 0.5 * (vt == vc)) for vt, pt in t for vc, pc in c)
    assert PW.composite_superiority(p_seen, q) == pytest.approx(exact, abs=1e-12)
    assert PW.composite_superiority(p_seen, 0.0) == p_seen
    for bad in ((0.6, 1.0), (1.2, 0.1), (0.6, -0.1)):
        with pytest.raises(ValueError):
            PW.composite_superiority(*bad)


def test_bonferroni_factor_is_the_ratio_of_the_closed_forms():
    """alpha / k for k = 8 comparisons: ((z_{1-a/16} + z_b) / (z_{1-a/2} + z_b))^2, about 1.63 at 80 %
    power, the ratio of the normal-theory n (and of statsmodels' within 0.2 %), the same for any effect."""
    from statsmodels.stats.power import NormalIndPower

    f = PW.bonferroni_factor(8, 0.05, 0.8)
    assert f == pytest.approx(((stats.norm.ppf(1 - 0.05 / 16) + stats.norm.ppf(0.8))
                               / (stats.norm.ppf(0.975) + stats.norm.ppf(0.8))) ** 2, rel=1e-12)
    assert round(f, 2) == 1.63 and round(PW.bonferroni_factor(8, 0.05, 0.9), 2) == 1.53
    for d in (0.2, 0.6):
        assert PW.n_per_arm_ttest(d, 1.0, 0.05 / 8, 0.8) / PW.n_per_arm_ttest(d, 1.0, 0.05, 0.8) == pytest.approx(f)
        sm = [NormalIndPower().solve_power(d, nobs1=None, alpha=a, power=0.8) for a in (0.05 / 8, 0.05)]
        assert sm[0] / sm[1] == pytest.approx(f, rel=2e-3)
    assert PW.bonferroni_factor(1) == 1.0
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match="k must be"):
            PW.bonferroni_factor(bad)


# ----------------------------------------------------------------------------- direct checks
def test_direct_checks_walk_to_the_n_that_reaches_the_target(monkeypatch):
    """direct_checks: the closed-form n rounded down and up, then one patient at a time towards the
    target while the power's 2-MCSE band misses it (at most `walk` steps); the largest gap first."""
    from sim.power import check as PC

    power = lambda n: 0.80 + 0.01 * (n - 30)  # reaches 0.90 at n = 40
    calls = []

    def fake(design, spec, reps, rng):
        calls.append(spec.n_per_arm)
        return power(spec.n_per_arm), 0.002, reps

    monkeypatch.setattr(PC, "direct_power", fake)
    cmp = pd.DataFrame([[1.0, "face", "m6", 0.9, "ancova", "closed_ancova_nct", 41.0, 40.0, 42.0, 37.4, 0.096, False],
                        [1.0, "vas", "m1", 0.8, "ttest", "closed_ttest_nct", 30.0, 29.0, 31.0, 33.6, -0.107, False],
                        [1.0, "vas", "m6", 0.8, "ttest", "closed_ttest_nct", 30.0, 29.0, 31.0, 30.5, -0.016, True]],
                       columns=PW.COMPARISON_COLUMNS)
    plan = lambda eff: (FakeDesign(), trial_spec())
    out = PC.direct_checks(cmp, plan, lambda key: None, top=2, reps=1000, walk=2)
    assert list(out.columns) == PC.CHECK_COLUMNS
    a = out[out["analysis"] == "ancova"]
    assert list(zip(a["n_per_arm"], a["role"])) == [(37, "floor"), (38, "ceil"), (39, "walk"), (40, "walk")]
    t = out[out["analysis"] == "ttest"]  # 0.83 at 33 and 0.84 at 34 pass 0.80: walk down, two steps at most
    assert list(zip(t["n_per_arm"], t["role"])) == [(33, "floor"), (34, "ceil"), (32, "walk"), (31, "walk")]
    assert (t["outcome"] == "vas").all() and (t["timepoint"] == "m1").all()  # the third row: not in the top 2
    assert out["power_direct"].tolist() == [power(n) for n in out["n_per_arm"]]
    assert calls == out["n_per_arm"].tolist()


@pytest.mark.slow  # ~5 s: 3000 trials of 80 patients, 2000 of ~260, two reference cohorts
def test_direct_power_is_the_jobs_power_and_the_composite_closed_form_reaches_its_target(model):
    """direct_power runs the job's own analysis on trials cut from large cohorts (here in several
    blocks): the complete-case t-test's power matches the noncentral t on the patients seen (effect
    and SD among them, expected number seen); and the composite's closed form (Noether at the
    diluted P) gives 80 % power when simulated directly at its n."""
    from sim.power.check import direct_power

    design = _design(model, 40, 1.0)
    rate, mcse, used = direct_power(design, trial_spec(40, "face", "m1"), 3000, np.random.default_rng(5),
                                    block=40_000)
    ref = PW.reference_quantities(design, 100_000, np.random.default_rng(6), ["face", "vas"], ["m1"])
    r = ref[ref["outcome"] == "face"].iloc[0]
    closed = PW.power_ttest(40, r.effect_seen, r.sd_change_seen, survival=r.seen)
    assert used == 3000 and 0.5 < closed < 0.95
    assert abs(rate - closed) < 3 * mcse, (rate, closed, mcse)
    v = ref[ref["outcome"] == "vas"].iloc[0]
    n = math.ceil(PW.closed_forms(v, 0.8, 0.05, {})["closed_composite"])
    rate, mcse, _ = direct_power(_design(model, n, 1.0), trial_spec(n, "vas", "m1", "composite"), 2000,
                                 np.random.default_rng(8))
    assert abs(rate - 0.8) < 3 * mcse, (n, rate, mcse)
    with pytest.raises(ValueError, match="one outcome"):
        direct_power(design, TrialSpec(n_per_arm=40), 10, np.random.default_rng(0))


def test_rows_say_which_arm_the_result_favours(model):
    """favours: the sign of the estimate (t-tests, ANCOVA) or of P(T > C) - 1/2 (rank tests, as
    scipy's Mann-Whitney U / n1 n0); the rank tests' rows keep their p only."""
    spec = TrialSpec(n_per_arm=40, analyses=("ttest", "ancova", "wilcoxon", "composite"))
    out = rct_replicate((_design(model, 40, 1.0), spec), np.random.default_rng(4))
    est = out[out["analysis"].isin(["ttest", "ancova"])]
    assert (est["favours"] == np.sign(est["estimate"])).all()
    rank = out[out["analysis"].isin(["wilcoxon", "composite"])]
    assert rank["estimate"].isna().all() and rank["favours"].isin([1.0, -1.0]).all()
    rng = np.random.default_rng(5)
    for shift in (-0.5, 0.5):
        a, b = rng.normal(shift, 1, 30).round(), rng.normal(0, 1, 25).round()
        u = stats.mannwhitneyu(a, b).statistic / (a.size * b.size)
        assert favours("wilcoxon", wilcoxon_ranksum(a, b)) == np.sign(u - 0.5)
    assert np.isnan(favours("ttest", TestResult("ttest", estimate=0.0)))


# ----------------------------------------------------------------------------- estimands
def test_complete_case_bias_is_pooled_over_n_by_inverse_variance():
    from sim.power.estimand import largest_bias, pooled_bias

    rows = [dict(n_per_arm=n, effect_mcid=e, outcome=o, timepoint="m6", analysis="ttest", measure="bias", value=v,
                 mcse=m, n=1000)
            for e in (0.5, 1.0) for o, vs in (("barthel", (-0.6, -0.7)), ("vas", (0.05, -0.05)))
            for n, v, m in zip((20, 200), vs, (0.3, 0.1))]
    s = pd.DataFrame(rows)
    b, m = pooled_bias(s, "ttest", "barthel", "m6", 1.0)
    w = np.array([1 / 0.09, 1 / 0.01])
    assert b == pytest.approx((w @ [-0.6, -0.7]) / w.sum()) and m == pytest.approx(1 / math.sqrt(w.sum()))
    assert largest_bias(s)[:3] == ("barthel", "m6", 1.0)
    assert largest_bias(s.assign(measure="coverage")) is None


def test_estimands_and_multiplicity_are_in_the_report_lines():
    from sim.report import rct as R

    s = pd.DataFrame([dict(n_per_arm=50, effect_mcid=1.0, outcome="barthel", timepoint="m6", analysis="ttest",
                           measure="bias", value=-0.63, mcse=0.03, n=1000)])
    lines = R.estimand_lines(s, TrialSpec(n_per_arm=10, analyses=("ttest", "ancova", "wilcoxon", "composite")))
    assert lines[0].startswith("- `ttest`, `ancova`, `wilcoxon`: 'while alive and seen'")
    assert "bias -0.63 (0.03)" in lines[0] and lines[1].startswith("- `composite`: composite")
    ss = pd.DataFrame({"outcome": ["vas", "vas", "face", "face"], "timepoint": ["m1", "m6"] * 2, "power": 0.8})
    assert "4 outcome x visit comparisons" in R.multiplicity_text(ss, 0.05, [0.8])
    assert f"by {PW.bonferroni_factor(4, 0.05, 0.8):.3g} at 80 % power" in R.multiplicity_text(ss, 0.05, [0.8])


# ----------------------------------------------------------------------------- report and answer
def _ss_for_report():
    """A two-row sample-size table as sim.power.sample_size_table writes it, its reference row and
    summary."""
    ref = pd.DataFrame([dict(outcome="vas", timepoint="m6", delta=10.0, survival=0.8, sd_change=33.0, sd_post=22.0,
                             rho=0.2, seen=0.7, sd_change_seen=30.0, effect_seen=9.0, p_superiority=0.58,
                             p_tie=0.01, tie_factor=0.999, p_superiority_worst_rank=0.56,
                             tie_factor_worst_rank=0.93, dead=0.2)])
    grid = np.array([20, 40, 60, 80, 100, 150, 200, 300, 450, 650], dtype=float)
    curves = {"ttest": PW.power_ttest(grid, 10.0, 33.0, survival=0.8),
              "ancova": PW.power_ancova(grid, 10.0, 22.0, 0.2, survival=0.8),
              "wilcoxon": PW.power_ttest(grid, 10.0, 50.0, survival=0.7)}
    summary = pd.DataFrame([{"n_per_arm": n, "effect_mcid": 1.0, "outcome": "vas", "timepoint": "m6", "analysis": an,
                             "measure": "rejection_benefit", "value": round(float(p) * 1000) / 1000, "n": 1000}
                            for an, ps in curves.items() for n, p in zip(grid, ps)])
    analyses = ("ttest", "ancova", "wilcoxon")
    ss = PW.sample_size_table(summary, {1.0: ref}, analyses, [0.8, 0.9], 0.05, {})
    cmp = PW.comparison_table(summary, {1.0: ref}, [0.8, 0.9], 0.05, {}, pairs=PW.GAP_PAIRS[:3])
    return ss, cmp


def _checks(cmp):
    """direct_checks.csv of the largest gap: the power below the target at the n rounded down and
    up, then reaching it one patient further."""
    g = PW.largest_gap(cmp)
    lo = math.floor(g.closed_n)
    rows = [[*g[["effect_mcid", "outcome", "timepoint", "power", "analysis", "closed", "closed_n", "sim_n",
                 "sim_low", "sim_high", "gap"]], n, role, 20000, g.power + dp, 0.002]
            for n, role, dp in ((lo, "floor", -0.02), (lo + 1, "ceil", -0.01), (lo + 2, "walk", 0.001))]
    from sim.power.check import CHECK_COLUMNS

    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def test_report_shows_n_with_its_interval_and_quotes_the_largest_unrounded_gap():
    from sim.report import rct as R

    ss, cmp = _ss_for_report()
    md = R._sample_size_md(ss, ("ttest", "ancova", "wilcoxon"))
    r = ss.iloc[0]
    assert md["simulated ttest"].iloc[0] == f"{r.sim_ttest:g} [{r.sim_ttest_low:g}, {r.sim_ttest_high:g}]"
    assert md["simulated wilcoxon"].iloc[1] == "beyond grid"  # 90 % with the weaker curve: past n = 650
    assert "closed form Wilcoxon (Noether)" in md.columns and "closed form t (normal)" in md.columns
    note = R.gap_note(cmp, _checks(cmp))
    top = PW.largest_gap(cmp)
    assert f"{100 * top.gap:+.1f} %" in note and f"{top.analysis} at {top.outcome} {top.timepoint}" in note
    assert f"simulated {top.sim_n:.1f} [{top.sim_low:.1f}, {top.sim_high:.1f}] against {top.closed_n:.2f}" in note
    lo = math.floor(top.closed_n)
    assert f"at {lo}: {top.power - 0.02:.3f} (0.002); at {lo + 1}: {top.power - 0.01:.3f} (0.002)" in note
    assert "No simulated N" in R.gap_note(cmp.iloc[:0])


def test_report_text_states_what_each_closed_form_plans():
    """The informative-loss closed form differs from the others by the patients it plans on, not by
    the inflation (every closed form divides by the share seen)."""
    import inspect

    from sim.report import rct as R

    src = inspect.getsource(R.report_text)
    assert "rather than the share alive" not in src
    assert "divided by the share seen as it is, but with" in src and "## Estimands (ICH E9(R1))" in src


def test_curated_answer_quotes_the_fitted_n_the_unrounded_gap_and_its_direct_check(tmp_path):
    from sim.report.curate import load_answer
    from sim.report.phrasing import recording

    ss, cmp = _ss_for_report()
    ss.to_csv(tmp_path / "sample_size.csv", index=False)
    cmp.to_csv(tmp_path / "closed_vs_simulated.csv", index=False)
    _checks(cmp).to_csv(tmp_path / "direct_checks.csv", index=False)
    ref = pd.DataFrame([dict(outcome="vas", timepoint="m6", sd_change=33.0, sd_post=22.0, rho=0.2, seen=0.7)])
    units = pd.DataFrame([dict(outcome="vas", timepoint="m6", mcid=10.0, sd_change=33.0, mcid_in_sd=10 / 33)])
    PW.standardised_n_table({1.0: ref}, units, [0.8, 0.9], 0.05).to_csv(tmp_path / "effect_units.csv", index=False)
    summary = pd.DataFrame([dict(n_per_arm=n, effect_mcid=1.0, outcome="vas", timepoint="m6", analysis="ttest",
                                 measure="bias", value=-0.6, mcse=0.1, n=1000) for n in (20, 200)])
    with recording() as claims:
        text = load_answer("rct_planning").answer(summary, tmp_path)
    r = ss[ss["power"] == 0.8].iloc[0]
    assert f"{int(r.sim_ancova)} [{int(r.sim_ancova_low)}, {int(r.sim_ancova_high)}] (vas m6, 1 MCID = 0.30 SD)" in text
    top = PW.largest_gap(cmp)
    assert f"largest relative gap is {100 * top.gap:+.1f} % ({top.analysis} vas m6" in text
    assert f"closed form {top.closed_n:.2f}, simulated {top.sim_n:.1f}" in text
    assert "falls short of the target there" in text  # the ceil row's power is 0.01 (5 MCSE) below target
    assert "1 outcome x visit comparisons" in text and "-0.60 (0.07) points" in text
    words = [c.words for c in claims]
    # floor, ceil and the verdict on ceil below the target, the walk's n indistinguishable, the bias below 0
    assert words.count("below") == 4 and words.count("indistinguishable (within 2 MCSE) from") == 1
    assert {c.relation for c in claims} <= {"gt", "lt", "agrees"}

"""Analyses under truncation by death (sim.methods.sensitivity.truncation): Lee bounds against brute-force
trimming and against principal strata with a known truth (containment, sharpness, SE, coverage),
and the composite rank test against scipy on an explicitly built composite score."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.methods.sensitivity.truncation import (
    TRUNCATION_ANALYSES,
    composite_rank,
    lee_bounds,
    matched_seen_shares,
    truncation_fields,
)

Q75 = float(stats.norm.ppf(0.75))
ALPHA = 0.05


def stepped_groups(rng, n_t, n_c, p_t, p_c, step=0.5):
    """Outcomes on a stepped scale (many ties), NaN with probability 1 - p."""
    yt = np.round(rng.normal(0.3, 1.5, n_t) / step) * step
    yc = np.round(rng.normal(0.0, 1.5, n_c) / step) * step
    yt[rng.random(n_t) > p_t] = np.nan
    yc[rng.random(n_c) > p_c] = np.nan
    return yt, yc


def brute_bounds(yt, yc):
    """Lee bounds by explicit sorting of units with an integer trim count (requires it whole)."""
    ot, oc = np.sort(yt[~np.isnan(yt)]), np.sort(yc[~np.isnan(yc)])
    if ot.size * yc.size == oc.size * yt.size:
        return ot.mean() - oc.mean(), ot.mean() - oc.mean()
    treated_big = ot.size * yc.size > oc.size * yt.size
    big, small, n_big, n_small = (ot, oc, yt.size, yc.size) if treated_big else (oc, ot, yc.size, yt.size)
    assert (small.size * n_big) % n_small == 0, "trim count not whole"
    k = small.size * n_big // n_small  # units kept = p_small * n_big
    bottom, top = big[:k].mean(), big[-k:].mean()
    if treated_big:
        return bottom - small.mean(), top - small.mean()
    return small.mean() - top, small.mean() - bottom


def quantile_function_mean(v, keep, top):
    """(1/keep) ∫ F^{-1}(u) du over the lowest (or highest) `keep` share of u, F the empirical
    distribution of v: computed on distinct values and their probabilities, not on units."""
    vals, counts = np.unique(v, return_counts=True)
    if top:
        vals, counts = vals[::-1], counts[::-1]
    prob = counts / v.size
    cum = np.cumsum(prob)
    mass = np.clip(np.minimum(cum, keep) - (cum - prob), 0.0, None)
    return float(mass @ vals / keep)


def test_bounds_equal_brute_force_sorting_with_whole_trim_counts():
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(5, 60))
        yt, yc = stepped_groups(rng, n, n, rng.uniform(0.3, 1), rng.uniform(0.3, 1))  # equal n: whole
        b = lee_bounds(yt, yc)
        if b.reason:
            continue
        assert (b.bound_low, b.bound_high) == pytest.approx(brute_bounds(yt, yc), abs=1e-12)
        assert b.bound_low <= b.bound_high


def test_fractional_trimming_equals_expanded_population_and_quantile_function():
    """Unequal group sizes make q·m fractional. Replicating every treated unit n_c times and every
    control n_t times leaves shares and distributions unchanged but makes the trim count whole, so
    brute-force sorting there must equal the fractional-weight bounds; the bounds must also equal
    the integral of the empirical quantile function (the definition, computed on tied values)."""
    rng = np.random.default_rng(12)
    fractional = 0
    for _ in range(150):
        n_t, n_c = (int(k) for k in rng.integers(4, 40, 2))
        yt, yc = stepped_groups(rng, n_t, n_c, rng.uniform(0.3, 1), rng.uniform(0.3, 1))
        b = lee_bounds(yt, yc)
        if b.reason:
            continue
        m_big = (~np.isnan(yt if b.trimmed == "treated" else yc)).sum()
        fractional += b.trimmed != "none" and abs(b.trim_share * m_big - round(b.trim_share * m_big)) > 1e-9
        big_t, big_c = np.repeat(yt, n_c), np.repeat(yc, n_t)
        assert (b.bound_low, b.bound_high) == pytest.approx(brute_bounds(big_t, big_c), abs=1e-12)
        e = lee_bounds(big_t, big_c)
        assert (e.bound_low, e.bound_high, e.trim_share) == pytest.approx(
            (b.bound_low, b.bound_high, b.trim_share), abs=1e-12)
        ot, oc = yt[~np.isnan(yt)], yc[~np.isnan(yc)]
        keep = 1 - b.trim_share
        if b.trimmed == "treated":
            ref = tuple(quantile_function_mean(ot, keep, top) - oc.mean() for top in (False, True))
        elif b.trimmed == "control":
            ref = tuple(ot.mean() - quantile_function_mean(oc, keep, top) for top in (True, False))
        else:
            ref = (ot.mean() - oc.mean(),) * 2
        assert (b.bound_low, b.bound_high) == pytest.approx(ref, abs=1e-12)
    assert fractional > 50  # the fractional case was exercised


def test_equal_observed_shares_collapse_to_the_difference_in_means():
    rng = np.random.default_rng(13)
    yt, yc = stepped_groups(rng, 80, 120, 1, 1)
    yt[:20] = np.nan  # 60/80 = 0.75
    yc[:30] = np.nan  # 90/120 = 0.75
    b = lee_bounds(yt, yc)
    assert b.trimmed == "none" and b.trim_share == 0.0
    assert b.bound_low == b.bound_high == pytest.approx(np.nanmean(yt) - np.nanmean(yc), abs=1e-12)
    z = stats.norm.ppf(0.975)  # Δ = 0: the Imbens-Manski CI is the two-sided Wald interval
    assert (b.ci_low, b.ci_high) == pytest.approx((b.bound_low - z * b.se_low, b.bound_high + z * b.se_high))


@pytest.mark.parametrize("seed", range(5))
def test_swapping_groups_negates_and_swaps_the_bounds(seed):
    rng = np.random.default_rng(seed)
    yt, yc = stepped_groups(rng, 50 + seed, 60, 0.9, 0.6 + 0.1 * seed)
    b, s = lee_bounds(yt, yc), lee_bounds(yc, yt)
    assert (s.bound_low, s.bound_high) == pytest.approx((-b.bound_high, -b.bound_low), abs=1e-12)
    assert (s.se_low, s.se_high) == pytest.approx((b.se_high, b.se_low), rel=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((-b.ci_high, -b.ci_low), abs=1e-12)
    assert s.trimmed == {"treated": "control", "control": "treated", "none": "none"}[b.trimmed]


def test_imbens_manski_critical_value_solves_its_equation():
    rng = np.random.default_rng(1)
    yt, yc = stepped_groups(rng, 60, 60, 0.9, 0.8)
    yt = np.exp(yt / 2)  # skewed: the two bounds' SEs differ, so max(se) matters
    b = lee_bounds(yt, yc, alpha=0.1)
    assert b.se_high > 1.1 * b.se_low and b.bound_high - b.bound_low < 2 * b.se_high  # C not at its limits
    c = (b.bound_low - b.ci_low) / b.se_low
    assert (b.ci_high - b.bound_high) / b.se_high == pytest.approx(c, rel=1e-9)
    d = b.bound_high - b.bound_low
    cover = stats.norm.cdf(c + d / max(b.se_low, b.se_high)) - stats.norm.cdf(-c)
    assert cover == pytest.approx(0.9, abs=1e-8)
    assert stats.norm.ppf(0.9) - 1e-6 < c < stats.norm.ppf(0.95)  # between one- and two-sided


# --------------------------------------------------------------- principal strata, known truth

def strata_sample(rng, n, effect=0.5, sharp=True, stepped=False, harm=False):
    """Treated and control groups (n each, random assignment) with principal strata. A latent z
    (standard normal) per unit; 20 % never observed; among the rest, the units observed under one
    arm only ("protected") are the top quarter of z (sharp: selection by outcome rank) or a random
    quarter. Always-observed units have Y(1) = Y(0) + effect. Monotone selection: treatment adds
    the protected (harm=False: trims the treated; truth at the lower bound when sharp) or removes
    them (harm=True: trims the control; truth at the upper bound when sharp)."""
    z = rng.standard_normal((2, n))
    never = rng.random((2, n)) < 0.2
    prot = z > Q75 if sharp else rng.random((2, n)) < 0.25
    y0 = np.round(2 * z) / 2 if stepped else z
    y1 = y0 + effect
    if not sharp:
        y1 = np.where(prot, 3.0 + z, y1)  # the protected are anything under treatment
    if harm:  # protected = observed only under control
        yt = np.where(never[0] | prot[0], np.nan, y1[0])
        yc = np.where(never[1], np.nan, y0[1])
    else:
        yt = np.where(never[0], np.nan, y1[0])
        yc = np.where(never[1] | prot[1], np.nan, y0[1])
    return yt, yc


@pytest.mark.parametrize("harm", [False, True])
@pytest.mark.parametrize("stepped", [False, True])
def test_bounds_contain_the_always_observed_effect(harm, stepped):
    rng = np.random.default_rng(21 + 2 * harm + stepped)
    yt, yc = strata_sample(rng, 100_000, sharp=False, stepped=stepped, harm=harm)
    b = lee_bounds(yt, yc)
    assert b.trimmed == ("control" if harm else "treated")
    assert b.trim_share == pytest.approx(0.25, abs=0.01)
    assert b.bound_low < 0.5 < b.bound_high
    assert b.ci_low < b.bound_low and b.ci_high > b.bound_high


@pytest.mark.parametrize("harm", [False, True])
@pytest.mark.parametrize("stepped", [False, True])
def test_bound_is_sharp_under_selection_by_outcome_rank(harm, stepped):
    """The protected are the top quarter of the outcome: trimming the largest (treated trimmed)
    removes exactly them, so the lower bound is the truth; harm mirrors it to the upper bound.
    Tolerance: 4 SE of the bound (about 0.025 at 100 000 per group); the other bound is ~1.3 away."""
    rng = np.random.default_rng(31 + 2 * harm + stepped)
    yt, yc = strata_sample(rng, 100_000, sharp=True, stepped=stepped, harm=harm)
    b = lee_bounds(yt, yc)
    sharp, se, other = (b.bound_high, b.se_high, b.bound_low) if harm else (b.bound_low, b.se_low, b.bound_high)
    assert se < 0.01
    assert sharp == pytest.approx(0.5, abs=4 * se)
    assert abs(other - 0.5) > 0.5


def _replicates(R, n, stepped, seed):
    rng = np.random.default_rng(seed)
    res = [lee_bounds(*strata_sample(rng, n, stepped=stepped)) for _ in range(R)]
    return {k: np.array([getattr(r, k) for r in res])
            for k in ("bound_low", "bound_high", "se_low", "se_high", "ci_low", "ci_high")}


@pytest.mark.parametrize("stepped", [False, True])
def test_analytic_se_matches_the_replicate_sd(stepped):
    """R = 2000 replicates of n = 200 per group (sharp design, q = 0.25). The root mean square of
    the analytic SE must equal the SD of the bound within 3 MC SEs of an SD (sd·sqrt(1/(2(R-1))),
    4.7 %) plus 2 % for the O(1/m) terms the first-order (delta-method) variance leaves out, m ≈
    120 observed controls (at R = 20 000 the ratio was within 1.3 %, continuous and stepped).
    Without the term for the estimation of q the SE would be ~18 % too small: checked to fail."""
    R, n = 2000, 200
    r = _replicates(R, n, stepped, seed=41 + stepped)
    tol_rel = 3 * math.sqrt(1 / (2 * (R - 1))) + 0.02
    # Lee's q term at the design's values: (ξ - μ)² (1/m_big - 1/n + 1/m_small - 1/n), the same
    # for both bounds (normal latent, trimmed at its 0.75 / 0.25 quantile)
    q_term = (Q75 + stats.norm.pdf(Q75) / 0.75) ** 2 * (1 / (0.8 * n) - 1 / n + 1 / (0.6 * n) - 1 / n)
    for side in ("low", "high"):
        sd = r[f"bound_{side}"].std(ddof=1)
        rms = math.sqrt(np.mean(r[f"se_{side}"] ** 2))
        assert rms == pytest.approx(sd, rel=tol_rel), side
        assert abs(math.sqrt(rms**2 - q_term) - sd) > 2 * tol_rel * sd  # the check can fail


@pytest.mark.parametrize("stepped", [False, True])
def test_imbens_manski_ci_covers_the_truth_at_a_sharp_bound(stepped):
    """Truth at the lower bound (the hardest case: the CI is one-sided there). n = 400 per group:
    at n = 200 the bound's O(1/n) bias leaves coverage ~0.943 (measured, R = 20 000)."""
    R = 3000
    r = _replicates(R, 400, stepped, seed=51 + stepped)
    cover = np.mean((r["ci_low"] <= 0.5) & (0.5 <= r["ci_high"]))
    assert cover >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / R)
    assert abs(np.mean(r["bound_low"]) - 0.5) < 3 * r["bound_low"].std() / math.sqrt(R) + 0.01


def test_too_few_observed_gives_nan_and_a_reason():
    for yt, yc in ((np.full(5, np.nan), np.arange(5.0)), (np.array([1.0, np.nan]), np.arange(5.0)),
                   (np.array([]), np.array([])), (np.arange(5.0), np.array([np.nan, 2.0, np.nan]))):
        b = lee_bounds(yt, yc)
        assert "too few observed" in b.reason
        assert all(math.isnan(v) for v in (b.bound_low, b.bound_high, b.se_low, b.se_high, b.ci_low, b.ci_high))
        assert (b.n_treated, b.n_control) == (yt.size, yc.size)


# --------------------------------------------------------------------------- composite rank

def explicit_composite(y, death):
    """Survivors score their change; the dead -1e6 + death day (below any change); missed dropped."""
    dead = np.isfinite(death)
    score = np.where(dead, -1e6 + death, y)
    return score[dead | ~np.isnan(y)]


def composite_sample(rng, n, delay=0.0, p_dead=0.3, p_missed=0.1, visit=90):
    y = np.round(rng.normal(0, 1.5, n))
    death = np.where(rng.random(n) < p_dead, rng.integers(1, visit, n).astype(float), np.inf)
    death = np.where(np.isfinite(death), np.minimum(death + delay, visit - 1), death)
    y[np.isfinite(death) | (rng.random(n) < p_missed)] = np.nan
    return y, death


def test_composite_rank_equals_mannwhitneyu_on_the_explicit_composite():
    rng = np.random.default_rng(61)
    for _ in range(100):
        n_t, n_c = (int(k) for k in rng.integers(3, 60, 2))
        yt, dt = composite_sample(rng, n_t, delay=float(rng.integers(0, 20)))
        yc, dc = composite_sample(rng, n_c)
        st, sc = explicit_composite(yt, dt), explicit_composite(yc, dc)
        if not (st.size and sc.size):
            continue
        r = composite_rank(yt, dt, yc, dc)
        ref = stats.mannwhitneyu(st, sc, alternative="two-sided", method="asymptotic", use_continuity=True)
        assert (r.n_treated, r.n_control) == (st.size, sc.size)
        assert r.estimate == pytest.approx(ref.statistic / (st.size * sc.size), abs=1e-12)
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-14)


def test_composite_orders_deaths_below_survivors_and_by_day():
    inf = np.inf
    worst = np.full(4, -100.0)  # survivors with the worst possible change still beat any death
    assert composite_rank([np.nan] * 3, [5.0, 60, 89], worst, [inf] * 4).estimate == 0.0
    assert composite_rank([np.nan] * 3, [50.0, 60, 70], [np.nan] * 2, [10.0, 49]).estimate == 1.0
    assert composite_rank([np.nan] * 3, [30.0] * 3, [np.nan] * 2, [30.0] * 2).estimate == 0.5  # tied days


def test_composite_excludes_alive_patients_who_missed_the_visit():
    rng = np.random.default_rng(62)
    yt, dt = composite_sample(rng, 40, p_missed=0)
    yc, dc = composite_sample(rng, 50, p_missed=0)
    r = composite_rank(yt, dt, yc, dc)
    missed = np.full(7, np.nan), np.full(7, np.inf)
    r2 = composite_rank(np.r_[yt, missed[0]], np.r_[dt, missed[1]], np.r_[missed[0], yc], np.r_[missed[1], dc])
    assert (r2.estimate, r2.p_value, r2.n_treated, r2.n_control) == (r.estimate, r.p_value, 40, 50)


def test_a_treatment_that_only_delays_death_is_detected_by_the_composite_only():
    """Same deaths before the visit (half the patients) and the same changes among survivors;
    treated deaths come 45 days later (capped before the visit). The complete-case rank-sum test
    keeps its level; the composite has power (~0.7 here)."""
    R, n = 400, 100
    rng = np.random.default_rng(63)
    rej_comp = rej_cc = 0
    for _ in range(R):
        yt, dt = composite_sample(rng, n, delay=45, p_dead=0.5)
        yc, dc = composite_sample(rng, n, p_dead=0.5)
        rej_comp += composite_rank(yt, dt, yc, dc).p_value < ALPHA
        rej_cc += stats.mannwhitneyu(yt[~np.isnan(yt)], yc[~np.isnan(yc)]).pvalue < ALPHA
    mcse = math.sqrt(ALPHA * (1 - ALPHA) / R)
    assert rej_cc / R <= ALPHA + 3 * mcse
    assert rej_comp / R > 0.5


# ------------------------------------------------------------------------------ row fields

STANDARD = {"estimate", "se", "ci_low", "ci_high", "p_value", "favours",
            "n_used_treated", "n_used_control", "note"}


def test_truncation_fields_keys_and_values():
    rng = np.random.default_rng(71)
    yt, dt = composite_sample(rng, 120, delay=30)
    yc, dc = composite_sample(rng, 120, p_dead=0.45)
    for name, extra in TRUNCATION_ANALYSES.items():
        row = truncation_fields(name, yt, dt, yc, dc, ALPHA)
        assert set(row) == STANDARD | set(extra), name
        assert math.isnan(row["estimate"]) and math.isnan(row["se"])
    lee = truncation_fields("lee_bounds", yt, dt, yc, dc, ALPHA)
    b = lee_bounds(yt, yc, ALPHA)
    assert (lee["bound_low"], lee["bound_high"], lee["trim_share"], lee["ci_low"], lee["ci_high"]) == (
        b.bound_low, b.bound_high, b.trim_share, b.ci_low, b.ci_high)
    assert math.isnan(lee["p_value"]) and lee["note"] == "" and lee["n_used_treated"] == 120
    assert b.bound_low < 0 < b.bound_high and math.isnan(lee["favours"])  # the sign is not identified
    for shift, sign in ((10.0, 1.0), (-10.0, -1.0)):  # the whole identified interval on one side of 0
        assert truncation_fields("lee_bounds", yt + shift, dt, yc, dc, ALPHA)["favours"] == sign
    comp = truncation_fields("composite_rank", yt, dt, yc, dc, ALPHA)
    r = composite_rank(yt, dt, yc, dc)
    assert comp["p_value"] == r.p_value and comp["favours"] == 1.0  # fewer, later deaths
    assert math.isnan(comp["ci_low"])
    assert (comp["n_used_treated"], comp["n_used_control"]) == (r.n_treated, r.n_control)


def test_truncation_fields_with_all_dead_groups():
    yt, dt = np.full(10, np.nan), np.arange(1.0, 11.0)
    yc, dc = np.r_[np.arange(8.0), np.nan, np.nan], np.r_[np.full(8, np.inf), 3.0, 4.0]
    lee = truncation_fields("lee_bounds", yt, dt, yc, dc, ALPHA)
    assert "too few observed" in lee["note"]
    assert all(math.isnan(lee[k]) for k in ("estimate", "ci_low", "ci_high", "p_value", "favours",
                                             "bound_low", "bound_high", "trim_share"))
    comp = truncation_fields("composite_rank", yt, dt, yc, dc, ALPHA)
    assert comp["favours"] == -1.0 and comp["p_value"] < ALPHA and comp["note"] == ""
    both = truncation_fields("composite_rank", yt, np.full(10, 5.0), np.full(6, np.nan), np.full(6, 5.0), ALPHA)
    assert both["p_value"] == 1.0 and both["favours"] == 0.0 and both["note"] == "all values tied"


def test_lee_fields_say_which_group_was_trimmed_and_whether_the_ci_excludes_0():
    """trimmed_treated follows LeeBounds.trimmed (1 treated, 0 control, NaN none); ci_excludes_0 is
    1 exactly when the Imbens-Manski CI lies on one side of 0; the widths are the intervals'."""
    rng = np.random.default_rng(72)
    seen = {"treated": (0.9, 0.6), "control": (0.6, 0.9)}
    for trimmed, (p_t, p_c) in seen.items():
        for shift, excludes in ((0.0, 0.0), (5.0, 1.0), (-5.0, 1.0)):
            yt, yc = stepped_groups(rng, 200, 200, p_t, p_c)
            yt = yt + shift
            b = lee_bounds(yt, yc, ALPHA)
            row = truncation_fields("lee_bounds", yt, np.full(200, np.inf), yc, np.full(200, np.inf), ALPHA)
            assert b.trimmed == trimmed
            assert row["trimmed_treated"] == {"treated": 1.0, "control": 0.0}[trimmed]
            assert row["ci_excludes_0"] == float(b.ci_low > 0 or b.ci_high < 0) == excludes
            assert row["bound_width"] == b.bound_high - b.bound_low > 0
            assert row["ci_width"] == b.ci_high - b.ci_low > row["bound_width"]
    yt, yc = stepped_groups(rng, 80, 80, 1, 1)  # equal observed shares: nothing trimmed
    row = truncation_fields("lee_bounds", yt, np.full(80, np.inf), yc, np.full(80, np.inf), ALPHA)
    assert row["trim_share"] == 0.0 and math.isnan(row["trimmed_treated"])
    fail = truncation_fields("lee_bounds", np.full(5, np.nan), np.full(5, 1.0), yc, np.full(80, np.inf), ALPHA)
    assert math.isnan(fail["ci_excludes_0"]) and math.isnan(fail["trimmed_treated"])


def test_matched_seen_shares_against_explicit_counts():
    """The shares of one matched sample counted by hand: 4 pairs; the treated are seen under
    control in pairs 0 and 1, under treatment in 0, 1, 2 (monotone: decompression only adds), their
    controls in 0, 1, 2, 3 (as-if-random fails: the controls are seen more often)."""
    s0 = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0], bool)  # seen under control; units 0-3 treated, 4-7 controls
    s1 = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1], bool)  # seen under treatment (unit 8 unmatched)
    got = matched_seen_shares(s0, s1, [0, 1, 2, 3], [4, 5, 6, 7])
    assert got == pytest.approx({"treated_seen_control": 0.5, "treated_seen_treated": 0.75, "control_seen": 1.0,
                                 "gap": 0.5, "true_trim_share": 0.25 / 0.75, "true_trimmed_treated": 1.0,
                                 "non_monotone": 0.0})
    s1[0] = False  # treated unit 0 now seen under control only: a monotonicity violation
    got = matched_seen_shares(s0, s1, [0, 1, 2, 3], [4, 5, 6, 7])
    assert got["treated_seen_treated"] == got["treated_seen_control"] == 0.5
    assert got["true_trim_share"] == 0.0 and math.isnan(got["true_trimmed_treated"])
    assert got["non_monotone"] == 0.25
    assert all(math.isnan(v) for v in matched_seen_shares(s0, s1, [], []).values())


def test_unknown_analysis_lists_the_allowed_names():
    with pytest.raises(ValueError, match="lee_bounds.*composite_rank"):
        truncation_fields("bogus", np.ones(3), np.full(3, np.inf), np.ones(3), np.full(3, np.inf), ALPHA)

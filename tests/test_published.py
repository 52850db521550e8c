"""sim.report.published: E-values and TOST from the paper's Table 5, against independent computations.

TOST, Welch CI and p: statsmodels on synthetic samples standardised to exactly the published means,
SDs and sizes. E-values: the closed form (VanderWeele & Ding 2017) written out here. Signs: Table 5
prints improvements (VAS and face scale as pre - post), so ``diff`` is decompression minus no
decompression in improvement whatever the direction, and ``diff_raw`` (follow-up - baseline)
follows the direction flag. Sizes: the number analysed at each visit from the study file
(`analysed`), and every decision over its plausible range, against brute force over n.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind, ttost_ind

from scipy import stats

from sim.report.published import READINGS, published_sensitivity, published_sensitivity_markdown
from sim.report.published_n import DECISIONS, decisions_by_n, paper_bounds, subset_bound
from sim.cohort.study import StudySpecError, load_study

STUDY_PATH = Path(__file__).resolve().parents[1] / "conf" / "study" / "tominaga2025.yaml"
with STUDY_PATH.open() as _fh:
    _RAW = yaml.safe_load(_fh)
ROWS = [(o, t) for o, out in _RAW["outcomes"].items() for t in out["table5"]["treated"]]  # Table 5 as transcribed


@pytest.fixture(scope="module")
def table(study):
    return published_sensitivity(study)


def _row(table, outcome, time):
    r = table[(table["outcome"] == outcome) & (table["time"] == time)]
    assert len(r) == 1
    return r.iloc[0]


def _exact_sample(mean, sd, n, seed):
    x = np.random.default_rng(seed).standard_normal(n)
    return mean + sd * (x - x.mean()) / x.std(ddof=1)


def _e(rr):
    """Closed-form E-value of a risk ratio (VanderWeele & Ding 2017)."""
    rr = rr if rr >= 1 else 1 / rr
    return rr + math.sqrt(rr * (rr - 1))


def test_every_table5_row_present_with_published_numbers(table, study_raw):
    assert sorted(zip(table["outcome"], table["time"])) == sorted(ROWS)
    assert len(table) == 8 == len(ROWS)   # 4 outcomes x (1 month, 6 months)
    for o, t in ROWS:
        r, pub = _row(table, o, t), study_raw["outcomes"][o]["table5"]
        n = study_raw["analysed"][t]
        assert (r["mean_treated"], r["sd_treated"]) == tuple(pub["treated"][t])
        assert (r["mean_control"], r["sd_control"]) == tuple(pub["control"][t])
        assert (r["n_treated"], r["n_control"]) == (n["treated"]["n"], n["control"]["n"])
        assert r["p_published"] == pub["p"][t]
        assert r["mcid"] == study_raw["outcomes"][o]["mcid"]["value"]


@pytest.mark.parametrize("outcome,time", ROWS)
def test_tost_welch_match_statsmodels_on_exact_moment_samples(table, outcome, time):
    r = _row(table, outcome, time)
    a = _exact_sample(r["mean_treated"], r["sd_treated"], int(r["n_treated"]), 1)
    b = _exact_sample(r["mean_control"], r["sd_control"], int(r["n_control"]), 2)
    m = r["mcid"]
    p, _, _ = ttost_ind(a, b, -m, m, usevar="unequal")
    assert r["tost_p"] == pytest.approx(p, abs=1e-9)
    assert r["equivalent"] == (p <= 0.05)
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    assert (r["ci90_low"], r["ci90_high"]) == pytest.approx(cm.tconfint_diff(alpha=0.10, usevar="unequal"), abs=1e-9)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(cm.tconfint_diff(alpha=0.05, usevar="unequal"), abs=1e-9)
    _, p_welch, df = ttest_ind(a, b, usevar="unequal")
    assert r["p_welch"] == pytest.approx(p_welch, abs=1e-9)
    assert r["df"] == pytest.approx(df, rel=1e-9)
    assert r["diff"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert r["se"] == pytest.approx(cm.std_meandiff_separatevar, rel=1e-9)


@pytest.mark.parametrize("n", [None, 400])
@pytest.mark.parametrize("outcome,time", ROWS)
def test_evalues_match_closed_form(study, outcome, time, n):
    """n = 400 per arm: CIs that exclude 0 (VAS at 6 months), so the CI E-values are not all 1."""
    r = _row(published_sensitivity(study, n=None if n is None else {"treated": n, "control": n}, ranges=False),
             outcome, time)
    a = _exact_sample(r["mean_treated"], r["sd_treated"], int(r["n_treated"]), 1)
    b = _exact_sample(r["mean_control"], r["sd_control"], int(r["n_control"]), 2)
    lo, hi = CompareMeans(DescrStatsW(a), DescrStatsW(b)).tconfint_diff(alpha=0.05, usevar="unequal")
    sd = math.sqrt((r["sd_treated"] ** 2 + r["sd_control"] ** 2) / 2)
    diff = r["mean_treated"] - r["mean_control"]
    assert r["sd_pooled"] == pytest.approx(sd) and r["d"] == pytest.approx(diff / sd)

    def evalues(true):
        rr = math.exp(0.91 * (diff - true) / sd)
        rr_lo, rr_hi = math.exp(0.91 * (lo - true) / sd), math.exp(0.91 * (hi - true) / sd)
        ci = 1.0 if rr_lo <= 1 <= rr_hi else _e(rr_lo if rr > 1 else rr_hi)
        return _e(rr), ci

    assert (r["evalue_estimate"], r["evalue_ci"]) == pytest.approx(evalues(0.0), rel=1e-9)
    assert (r["evalue_mcid"], r["evalue_mcid_ci"]) == pytest.approx(evalues(r["mcid"]), rel=1e-9)
    if n == 400 and (outcome, time) == ("vas", "m6"):
        assert r["evalue_ci"] > 1.2   # the case that tells the CI limit apart


def test_real_values_spot_check(table):
    # VAS at 6 months: 45.4 - 32.8 = +12.6 mm more pain relief with decompression
    vas = _row(table, "vas", "m6")
    assert vas["diff"] == pytest.approx(12.6) and vas["diff_raw"] == pytest.approx(-12.6)
    assert vas["d"] == pytest.approx(12.6 / math.sqrt((27.2**2 + 37.2**2) / 2))
    # face scale: both visits shown equivalent within 2 points; VAS at 1 month (28.0 vs 28.0, SE
    # sqrt(29.5^2/51 + 38.6^2/51) = 6.8, 90 % CI +-11.3) within 15 mm; nothing else
    eq = table[table["equivalent"]]
    assert sorted(zip(eq["outcome"], eq["time"])) == [("face", "m1"), ("face", "m6"), ("vas", "m1")]


def test_signs_follow_improvement_direction(table, study_raw):
    for o, t in ROWS:
        r, out = _row(table, o, t), study_raw["outcomes"][o]
        direction = 1 if out["higher_is_better"] else -1
        pub = out["table5"]
        assert r["diff"] == pytest.approx(pub["treated"][t][0] - pub["control"][t][0])
        assert r["diff_raw"] == pytest.approx(direction * r["diff"])
    # Fig. 2 (same matched sample) agrees on the clearest case: VAS falls 41.0 mm with
    # decompression vs 30.2 without, i.e. more improvement with decompression
    f = study_raw["outcomes"]["vas"]["fig2"]
    fig_diff = -((f["treated"]["m6"][0] - f["treated"]["pre"][0]) - (f["control"]["m6"][0] - f["control"]["pre"][0]))
    assert fig_diff > 5 and _row(table, "vas", "m6")["diff"] > 5


def test_flipping_direction_alone_is_refused(study_raw):
    raw = copy.deepcopy(study_raw)
    raw["outcomes"]["vas"]["higher_is_better"] = True
    with pytest.raises(ValueError, match=r"outcomes\.vas.*higher_is_better"):
        published_sensitivity(load_study(raw))


def test_flipped_direction_on_mirrored_scale_flips_raw_sign_only(table, study_raw):
    """VAS re-expressed as pain relief (100 - VAS, higher is better): the improvements of Table 5
    are unchanged, so diff, E-values and TOST are too, while the follow-up - baseline difference
    changes sign."""
    raw = copy.deepcopy(study_raw)
    vas = raw["outcomes"]["vas"]
    vas["higher_is_better"] = True
    lo, hi = vas["scale"]["lower"], vas["scale"]["upper"]
    for fig in ("fig1", "fig2"):
        for g in ("treated", "control"):
            vas[fig][g] = {t: [lo + hi - m, s] for t, (m, s) in vas[fig][g].items()}
    flipped = published_sensitivity(load_study(raw))
    for t in ("m1", "m6"):
        a, b = _row(table, "vas", t), _row(flipped, "vas", t)
        cols = ["diff", "ci_low", "ci_high", "d", "evalue_estimate", "evalue_mcid", "tost_p"]
        assert b[cols].astype(float).values == pytest.approx(a[cols].astype(float).values)
    a, b = _row(table, "vas", "m6"), _row(flipped, "vas", "m6")
    assert a["diff_raw"] == pytest.approx(-12.6) and b["diff_raw"] == pytest.approx(+12.6)
    # the other outcomes are untouched
    assert _row(flipped, "face", "m1")["diff_raw"] == pytest.approx(-0.6)


def test_readings(table, study):
    for _, r in table.iterrows():
        sig = not (r["ci_low"] <= 0 <= r["ci_high"])
        assert not sig
        assert r["reading"] == (READINGS["equivalent"] if r["equivalent"] else READINGS["inconclusive"])
    # with 2000 per arm the Barthel 1-month difference (-2.3, MCID 9.25) is significant and equivalent
    big = published_sensitivity(study, n={"treated": 2000, "control": 2000}, ranges=False)
    assert _row(big, "barthel", "m1")["reading"] == READINGS["sig_equivalent"]
    assert _row(big, "vas", "m6")["reading"] == READINGS["sig_equivalent"]   # 12.6 < MCID 15: within it


def test_sizes_and_errors(study_raw):
    raw = copy.deepcopy(study_raw)
    raw["outcomes"]["barthel"]["table5"]["treated"]["m1"] = [-40.0, 20.0]   # far worse with decompression
    r = _row(published_sensitivity(load_study(raw)), "barthel", "m1")
    assert r["reading"] == READINGS["sig_c"].format(control="no decompression") and r["diff"] < 0  # the study's words
    assert r["reading"] == "significant difference favouring no decompression; not shown equivalent"
    del raw["analysed"]
    with pytest.raises(StudySpecError, match=r"analysed: .*no number analysed"):
        published_sensitivity(load_study(raw))
    with pytest.raises(ValueError, match="integer >= 2"):
        published_sensitivity(load_study(raw), n={"treated": 51, "control": 1})
    per_visit = published_sensitivity(load_study(raw), n={"m1": {"treated": 40, "control": 41},
                                                          "m6": {"treated": 20, "control": 21}})
    assert tuple(_row(per_visit, "face", "m6")[["n_treated", "n_control", "n_treated_low", "n_control_high"]]) \
        == (20, 21, 20, 21)


# ----------------------------------------------------------------------------- the number analysed

def test_n_per_visit_comes_from_the_study_file(table, study):
    """6 months: 51 minus Table 4's deaths among the matched (18, 21), not Table 5's header 51."""
    deaths = study.report["analysed"]["deaths"]
    for o, t in ROWS:
        r = _row(table, o, t)
        got = {g: (r[f"n_{g}"], r[f"n_{g}_low"], r[f"n_{g}_high"]) for g in ("treated", "control")}
        assert got == {g: tuple(study.analysed_sizes()[t][g][k] for k in ("n", "low", "high"))
                       for g in ("treated", "control")}
        assert r["n_basis"] == study.analysed_basis(t)["n"]
    m6 = _row(table, "face", "m6")
    assert (m6["n_treated"], m6["n_control"]) == (51 - deaths["treated"], 51 - deaths["control"]) == (33, 30)
    assert "Table 4" in m6["n_basis"]


def _welch_decisions(m1, s1, n1, m0, s0, n0, mcid, alpha=0.05):
    """The three decisions by hand (scipy's t quantiles): TOST's 90 % CI inside ±MCID; the 95 % CI
    excludes 0; it excludes +MCID."""
    a, b = s1 * s1 / n1, s0 * s0 / n0
    se, diff = math.sqrt(a + b), m1 - m0
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1))
    q90, q95 = stats.t.ppf(1 - alpha, df), stats.t.ppf(1 - alpha / 2, df)
    lo, hi = diff - q95 * se, diff + q95 * se
    return {"equivalent": -mcid < diff - q90 * se and diff + q90 * se < mcid,
            "ci_excludes_zero": not lo <= 0 <= hi, "ci_excludes_mcid": not lo <= mcid <= hi}


def _decide(r, n1, n0):
    return _welch_decisions(r["mean_treated"], r["sd_treated"], n1, r["mean_control"], r["sd_control"], n0, r["mcid"])


def test_face_6_months_equivalent_at_the_study_n_but_not_at_26(table, study):
    """Shown equivalent at 33/30 (the study file's n) and over its plausible range, not at 26 per arm:
    statsmodels' TOST on samples with exactly the published moments agrees at both."""
    r = _row(table, "face", "m6")
    assert r["equivalent"] and r["equivalent_over_range"] == "yes throughout" and r["equivalent_flip_n"] == 27
    at26 = _row(published_sensitivity(study, n={"treated": 26, "control": 26}, ranges=False), "face", "m6")
    assert not at26["equivalent"]
    for n1, n0, expect in ((33, 30, True), (26, 26, False), (27, 27, True)):
        a = _exact_sample(r["mean_treated"], r["sd_treated"], n1, 1)
        b = _exact_sample(r["mean_control"], r["sd_control"], n0, 2)
        p, _, _ = ttost_ind(a, b, -r["mcid"], r["mcid"], usevar="unequal")
        assert (p <= 0.05) == expect, (n1, n0, p)


def test_flip_points_by_brute_force_over_n(table):
    """For every comparison and decision, recompute it at every n per arm from 2 to the largest
    plausible n (independent Welch code): the last n at which it changes is the table's flip_n."""
    for _, r in table.iterrows():
        n_max = max(r["n_treated_high"], r["n_control_high"])
        held = {n: _decide(r, n, n) for n in range(2, n_max + 1)}
        for d in DECISIONS:
            changes = [n for n in range(3, n_max + 1) if held[n][d] != held[n - 1][d]]
            expect = float(changes[-1]) if changes else float("nan")
            got = r[f"{d}_flip_n"]
            assert got == expect or (math.isnan(got) and math.isnan(expect)), (r["outcome"], r["time"], d, got, changes)
            assert r[f"{d}_by_n"].startswith("yes" if held[n_max][d] else "no")


def test_decisions_over_the_plausible_range_by_brute_force(table):
    """Every (n_treated, n_control) of the plausible range: how many hold, and the two corners."""
    for _, r in table.iterrows():
        box = [(a, b) for a in range(r["n_treated_low"], r["n_treated_high"] + 1)
               for b in range(r["n_control_low"], r["n_control_high"] + 1)]
        for d in DECISIONS:
            k = sum(_decide(r, a, b)[d] for a, b in box)
            assert r[f"{d}_over_range"] == ("yes throughout" if k == len(box) else "no throughout" if k == 0 else
                                            f"depends on n: yes at {k} of {len(box)} (n_treated, n_control)")
            assert r[f"{d}_holds_at_low"] == _decide(r, r["n_treated_low"], r["n_control_low"])[d]
            assert r[f"{d}_holds_at_high"] == _decide(r, r["n_treated_high"], r["n_control_high"])[d]
            assert r[d] == _decide(r, r["n_treated"], r["n_control"])[d]
    # the E-value decisions are the CI's E-values exceeding 1
    assert (table["ci_excludes_zero"] == (table["evalue_ci"] > 1)).all()
    assert (table["ci_excludes_mcid"] == (table["evalue_mcid_ci"] > 1)).all()


def test_decisions_by_n_table(table):
    by_n = decisions_by_n(table)
    assert {"decision", "sidedness", "alpha", "path", "n_treated", "n_control", "in_range", "holds"} <= set(by_n.columns)
    face = by_n[(by_n["outcome"] == "face") & (by_n["time"] == "m6") & (by_n["decision"] == "equivalent")]
    per_arm = face[face["path"] == "per arm"]
    assert per_arm["n_treated"].tolist() == list(range(27, 50)) == per_arm["n_control"].tolist()
    assert per_arm["holds"].all()   # 27 .. 49 per arm: the flip (26) lies just below
    assert per_arm.set_index("n_treated")["in_range"].to_dict() == {n: 29 <= n <= 46 for n in range(27, 50)}
    study_n = face[face["path"] == "study n"].iloc[0]
    assert (study_n["n_treated"], study_n["n_control"], study_n["holds"]) == (33, 30, True)
    assert set(by_n["sidedness"]) == {how for _, how in DECISIONS.values()}


def test_high_bounds_are_what_fig2_and_table5_imply(study):
    """`high` of the study file = the most patients that can share the completers' baseline."""
    bounds = paper_bounds(study)
    assert bounds == {"m1": {"treated": 50, "control": 50}, "m6": {"treated": 49, "control": 46}}
    for t, by_group in study.analysed_sizes().items():
        assert {g: v["high"] for g, v in by_group.items()} == bounds[t]


@pytest.mark.parametrize("n, sd, d", [(51, 31.8, 9.55), (51, 32.9, 5.25), (10, 1.0, 0.3), (7, 2.0, 1.5)])
def test_subset_bound_is_the_largest_feasible_subset(n, sd, d):
    """k of n values with mean d away from the overall mean need a between-subset sum of squares
    k n d² / (n - k) within the total (n - 1) sd²: feasible at the bound, not at one more."""
    k = subset_bound(n, sd, d)

    def between(j):
        return j * n * d * d / (n - j)

    assert between(k) <= (n - 1) * sd * sd + 1e-9
    assert k == n - 1 or between(k + 1) > (n - 1) * sd * sd
    assert subset_bound(n, sd, 0.0) == n


def _with(raw, path, value):
    raw = copy.deepcopy(raw)
    node = raw
    *parents, leaf = path
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize("path, value, field", [
    (("analysed", "m6", "treated", "low"), 34, r"analysed\.m6\.treated\.n: must lie in \[low, high\]"),
    (("analysed", "m6", "control", "high"), 52, r"analysed\.m6\.control\.high: count 52 is outside 0\.\.51"),
    (("analysed", "m1", "treated", "n"), 40.5, r"analysed\.m1\.treated\.n: must be a whole count"),
    (("analysed", "m6", "treated", "low"), 1, r"analysed\.m6\.treated\.low: must be >= 2"),
    (("analysed", "m6", "treated", "mean"), 3, r"analysed\.m6\.treated\.mean: unknown key"),
    (("analysed", "m1", "basis", "low"), _DELETE, r"analysed\.m1\.basis\.low: missing"),
    (("analysed", "m1", "basis", "high"), "", r"analysed\.m1\.basis\.high: must be a non-empty text"),
    (("analysed", "deaths", "control"), 60, r"analysed\.deaths\.control: count 60 is outside"),
    (("analysed", "deaths", "source"), _DELETE, r"analysed\.deaths\.source: missing"),
    (("analysed", "m6", "control"), [30, 27, 46], r"analysed\.m6\.control: must be a mapping"),
])
def test_bad_analysed_counts_name_the_field(study_raw, path, value, field):
    with pytest.raises(StudySpecError, match=field):
        load_study(_with(study_raw, path, value))


def test_analysed_visits_are_checked_where_used(study_raw):
    """A study may rename or drop visits for the generator; the counts are checked when read."""
    no_m6 = load_study(_with(study_raw, ("analysed", "m6"), _DELETE))
    with pytest.raises(StudySpecError, match=r"analysed\.m6: missing"):
        published_sensitivity(no_m6)
    extra = load_study(_with(study_raw, ("analysed", "m12"), study_raw["analysed"]["m6"]))
    with pytest.raises(StudySpecError, match=r"analysed\.m12: not a follow-up visit"):
        published_sensitivity(extra)


def test_analysed_counts_do_not_key_the_calibrated_model(study_raw, cohort_settings):
    """Only the report reads them: adding, changing or removing them keeps the model's cache key
    (and with it the shipped snapshot)."""
    from sim.cohort.calibrate import cache_key

    key = cache_key(load_study(copy.deepcopy(study_raw)), cohort_settings)
    assert cache_key(load_study(_with(study_raw, ("analysed",), _DELETE)), cohort_settings) == key
    assert cache_key(load_study(_with(study_raw, ("analysed", "m6", "treated", "n"), 30)), cohort_settings) == key
    assert "analysed" not in load_study(copy.deepcopy(study_raw)).raw


def test_markdown_sentences_computed_from_table(table, study):
    md = published_sensitivity_markdown(table, study)
    k = int(table["equivalent"].sum())
    assert f"{k} of 8 comparisons are shown equivalent within one MCID" in md and k == 3
    inconclusive = int((table["reading"] == READINGS["inconclusive"]).sum())
    assert f"{inconclusive} of 8 show no significant difference without being shown equivalent" in md
    top = table.loc[table["evalue_mcid"].idxmax()]
    assert f"one MCID is {top['evalue_mcid']:.2f} ({top['label']}, 6 months" in md
    assert "python -m sim.sensitivity" in md and "matched.csv" in md
    main = md.split("## ")[0]
    lines = [ln for ln in main.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 8 and lines[1].startswith("|---|")
    assert "| 33/30 |" in main and "| 50/50 |" in main   # the n used per visit
    # where each visit's n comes from, and the decisions over the plausible n
    assert "**6 months**: n used 33/30; plausible range 29-49 / 27-46" in md
    assert study.analysed_basis("m6")["low"] in md
    face = _row(table, "face", "m6")
    assert f"| {face['label']} | 6 months | {DECISIONS['equivalent'][0]} | yes (33/30) | yes (29/27) | yes (49/46) " \
           "| yes throughout | yes at n >= 27 per arm, no at 26 |" in md
    never = sum(1 for _, r in table.iterrows() for d in DECISIONS
                if not r[d] and r[f"{d}_over_range"] == "no throughout" and math.isnan(r[f"{d}_flip_n"]))
    assert f"The other {never} decisions are 'no' at every n." in md
    # change the table: the sentences follow it
    t2 = table.copy()
    t2["equivalent"] = True
    t2.loc[t2.index[3], "evalue_mcid"] = 7.77
    md2 = published_sensitivity_markdown(t2, study)
    assert "8 of 8 comparisons are shown equivalent within one MCID" in md2
    assert "one MCID is 7.77 (EQ-5D-5L index (Japanese value set), 6 months" in md2

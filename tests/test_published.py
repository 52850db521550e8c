"""sim.report.published: E-values and TOST from the paper's Table 5, against independent computations.

TOST, Welch CI and p: statsmodels on synthetic samples standardised to exactly the published means,
SDs and sizes. E-values: the closed form (VanderWeele & Ding 2017) written out here. Signs: Table 5
prints improvements (VAS and face scale as pre - post), so ``diff`` is decompression minus no
decompression in improvement whatever the direction, and ``diff_raw`` (follow-up - baseline)
follows the direction flag.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind, ttost_ind

from sim.report.published import READINGS, published_sensitivity, published_sensitivity_markdown
from sim.study import load_study

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
    n = study_raw["matched"]["n"]
    for o, t in ROWS:
        r, pub = _row(table, o, t), study_raw["outcomes"][o]["table5"]
        assert (r["mean_treated"], r["sd_treated"]) == tuple(pub["treated"][t])
        assert (r["mean_control"], r["sd_control"]) == tuple(pub["control"][t])
        assert (r["n_treated"], r["n_control"]) == (n["treated"], n["control"]) == (51, 51)
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
    r = _row(published_sensitivity(study, n=None if n is None else {"treated": n, "control": n}), outcome, time)
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
    big = published_sensitivity(study, n={"treated": 2000, "control": 2000})
    assert _row(big, "barthel", "m1")["reading"] == READINGS["sig_equivalent"]
    assert _row(big, "vas", "m6")["reading"] == READINGS["sig_equivalent"]   # 12.6 < MCID 15: within it


def test_sizes_and_errors(study_raw):
    raw = copy.deepcopy(study_raw)
    raw["outcomes"]["barthel"]["table5"]["treated"]["m1"] = [-40.0, 20.0]   # far worse with decompression
    r = _row(published_sensitivity(load_study(raw)), "barthel", "m1")
    assert r["reading"] == READINGS["sig_c"] and r["diff"] < 0
    del raw["matched"]
    with pytest.raises(ValueError, match="matched.n"):
        published_sensitivity(load_study(raw))
    with pytest.raises(ValueError, match="integer >= 2"):
        published_sensitivity(load_study(raw), n={"treated": 51, "control": 1})


def test_markdown_sentences_computed_from_table(table):
    md = published_sensitivity_markdown(table)
    k = int(table["equivalent"].sum())
    assert f"{k} of 8 comparisons are shown equivalent within one MCID" in md and k == 3
    inconclusive = int((table["reading"] == READINGS["inconclusive"]).sum())
    assert f"{inconclusive} of 8 show no significant difference without being shown equivalent" in md
    top = table.loc[table["evalue_mcid"].idxmax()]
    assert f"one MCID is {top['evalue_mcid']:.2f} ({top['label']}, 6 months" in md
    assert "python -m sim.sensitivity" in md and "matched.csv" in md
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 2 + 8 and lines[1].startswith("|---|")
    # change the table: the sentences follow it
    t2 = table.copy()
    t2["equivalent"] = True
    t2.loc[t2.index[3], "evalue_mcid"] = 7.77
    md2 = published_sensitivity_markdown(t2)
    assert "8 of 8 comparisons are shown equivalent within one MCID" in md2
    assert "one MCID is 7.77 (EQ-5D-5L index (Japanese value set), 6 months" in md2

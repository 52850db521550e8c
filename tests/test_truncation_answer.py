"""The curated answer of truncation_by_death (experiments/truncation_by_death/answer.py): its derived
tables (the paired shift over every attrition strength, the matched samples' seen shares), and its
text re-derived from the curated summary and tables: every number it quotes is the table's, with
its MCSE, and every comparative word was produced, and holds, by sim.report.phrasing."""

from __future__ import annotations

import gzip
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.api import compose
from sim.report import curate as C
from sim.report import phrasing as P
from sim.report.phrasing import Est, fmt

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "experiments" / "truncation_by_death"
A = C.load_answer("truncation_by_death")


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """The answer computed on a run rebuilt from the curated files, under a claims ledger."""
    run = tmp_path_factory.mktemp("run")
    for f in (*A.EXTRA_FILES, A.KEY_FIGURE):
        shutil.copy2(SRC / f, run / f)
    summary = pd.read_csv(SRC / C.SUMMARY)
    with P.recording() as ledger:
        text = A.answer(summary, run)
    return text, list(ledger), summary[summary["timepoint"] == A.TIME], run


def _one(s: pd.DataFrame, **eq) -> Est:
    d = A._cells(s, **eq)
    assert len(d) == 1, eq
    return Est.of(d.iloc[0])


# -- derived tables -------------------------------------------------------------------------------

def test_paired_shift_is_the_same_cohorts_difference_for_every_attrition_strength():
    """A replicates table built by hand: the shift of each (attrition, visit, outcome, ratio) is the
    mean over replicates of estimate(ratio) - estimate(1) of the same replicate, its MCSE the SD of
    those differences / sqrt(n); the effect is the mean truth at one MCID and ratio 1."""
    rng = np.random.default_rng(3)
    rows = []
    for hs in (0.0, 1.0, 2.0):
        for rep in range(7):
            base = rng.normal()
            for hr in (0.7, 1.0, 1.4):
                for e in (0.0, 1.0):
                    rows.append({"analysis": "diff_means", "effect_mcid": e, "health_scale": hs, "survival_effect": hr,
                                 "timepoint": "m6", "outcome": "barthel", "rep": rep,
                                 "estimate": base + 10 * hs + hr * rep + e, "truth_matched": 5.0 * e + hs + 0.1 * rep})
    table = A.paired_shift(pd.DataFrame(rows))
    assert set(table["health_scale"]) == {0.0, 1.0, 2.0} and set(table["hazard_ratio"]) == {0.7, 1.4}
    diffs = {hr: (hr - 1.0) * np.arange(7) for hr in (0.7, 1.4)}
    for r in table.itertuples():
        assert r.shift == pytest.approx(diffs[r.hazard_ratio].mean(), abs=1e-12)
        assert r.mcse == pytest.approx(diffs[r.hazard_ratio].std(ddof=1) / math.sqrt(7), rel=1e-9)
        assert r.n == 7 and r.effect == pytest.approx(5.0 + r.health_scale + 0.3, abs=1e-12)


def test_curated_paired_shift_covers_the_grid():
    t = pd.read_csv(SRC / A.SHIFT_FILE)
    assert len(t) == 3 * 2 * 4 * 2 and (t["n"] == 600).all() and (t["mcse"] > 0).all()


def test_seen_table_checks_the_bounds_assumptions_on_the_run_cohorts():
    """Cohorts of the design (a reduced grid, 12 cohorts): at ratio 1 no one's being seen depends on
    decompression (true trimming share 0 in every cohort), at 0.7 the treated are seen more often
    with it in every cohort (the group to trim), selection is monotone, and each share equals
    matched_seen_shares of the same cohort, drawn and matched again here."""
    from sim.cohort.generate import generate
    from sim.jobs.conditions import conditions, matched_plan
    from sim.methods.pipeline import fit_and_match
    from sim.methods.sensitivity.truncation import matched_seen_shares

    cfg = compose("truncation_by_death", ["experiment.grid={cohort.survival_effect: [0.7, 1.0], "
                                          "cohort.attrition.health_scale: [1.0], cohort.effect_mcid: [0.0, 1.0]}"])
    t = A.seen_table(cfg, cohorts=12, seed=5)
    assert len(t) == 2 * 2 and (t["cohorts"] == 12).all()  # effect_mcid 1 left out: it changes no one's being seen
    hr1, hr07 = (t[np.isclose(t["survival_effect"], hr)] for hr in (1.0, 0.7))
    assert (hr1["true_trim_share"] == 0).all() and (hr1["true_trim_share_mcse"] == 0).all()
    assert hr1["true_trimmed_treated"].isna().all()
    assert (hr07["true_trimmed_treated"] == 1).all() and (hr07["true_trim_share"] > 0).all()
    assert (t["non_monotone"] == 0).all()
    np.testing.assert_allclose(t["gap"], t["control_seen"] - t["treated_seen_control"], atol=1e-12)
    cond = next(c for c in conditions(cfg) if c.cfg["cohort"]["survival_effect"] == 0.7
                and c.cfg["cohort"]["effect_mcid"] == 0.0)
    design, spec = matched_plan(cond)
    per = []
    for child in np.random.SeedSequence(5).spawn(12):
        rng = np.random.default_rng(child)
        cohort = generate(design, rng)
        _, res = fit_and_match(cohort.columns, spec, rng)
        per.append(matched_seen_shares(*cohort.seen["m6"], res.treated_idx, res.control_idx))
    want = pd.DataFrame(per).mean()
    got = hr07[hr07["timepoint"] == "m6"].iloc[0]
    for k in ("treated_seen_control", "treated_seen_treated", "control_seen", "gap", "true_trim_share"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


# -- the text ---------------------------------------------------------------------------------------

def _holds(c: P.Claim) -> bool:
    """A claim re-checked by its rule (sim.report.phrasing's docstring)."""
    a, b = c.a, c.b
    if c.relation == "ge":
        return a.low >= b.value
    if c.relation == "le":
        return a.high <= b.value
    if c.relation in ("gt", "lt"):
        d = a.minus(b)
        return abs(d.value) > P.Z * d.mcse and (d.value > 0) == (c.relation == "gt")
    if c.relation == "agrees":
        return not P.differs(a, b)
    if c.relation == "within":
        return abs(a.value - b.value) + P.Z * a.mcse <= c.tol
    raise AssertionError(c.relation)


def test_every_comparative_word_was_produced_by_a_claim_that_holds(curated):
    text, ledger, _, _ = curated
    assert ledger and all(_holds(c) for c in ledger)
    claimed = " | ".join(c.words.lower() for c in ledger)
    for word in P.COMPARATIVES:
        for m in re.finditer(rf"\b{re.escape(word)}\b", text.lower()):
            assert word in claimed, f"{word!r} unclaimed: ...{text[max(0, m.start() - 60):m.end() + 60]}..."


def test_shift_relative_to_the_empirical_se_is_given_per_hazard_ratio(curated):
    """Not one 'at most' over both ratios: per ratio, |shift| / empirical SE of the outcome with the
    largest one, recomputed from paired_shift.csv and the summary."""
    text, _, s, run = curated
    t = pd.read_csv(run / A.SHIFT_FILE)
    t = t[np.isclose(t["health_scale"], 1.0) & (t["timepoint"] == A.TIME)]
    for hr in A.HR:
        ratios = {}
        for r in t[np.isclose(t["hazard_ratio"], hr)].itertuples():
            empse = _one(s, analysis="diff_means", measure="empse", outcome=r.outcome, effect_mcid=0.0,
                         survival_effect=hr, health_scale=1.0)
            ratios[r.outcome] = Est(abs(r.shift), r.mcse).ratio(empse)
        top = max(ratios, key=lambda o: ratios[o].value)
        assert f"{fmt(ratios[top])} of it at ratio {hr:g} ({top}" in text
    assert "at most" not in text


def test_shift_is_quoted_against_the_realised_effect_among_the_matched_treated(curated):
    text, _, s, run = curated
    t = pd.read_csv(run / A.SHIFT_FILE)
    for o in ("barthel", "eq5d", "face", "vas"):
        eff = _one(s, analysis="diff_means", measure="true_matched", outcome=o, effect_mcid=1.0, survival_effect=1.0,
                   health_scale=1.0)
        sh = t[(t["outcome"] == o) & np.isclose(t["health_scale"], 1.0) & (t["timepoint"] == A.TIME)
               & np.isclose(t["hazard_ratio"], 0.7)].iloc[0]
        assert f"of the realised effect among the matched treated ({fmt(eff)} {A.SHORT[o]})" in text
        assert A._signed(Est(sh["shift"], sh["mcse"]).ratio(eff)) in text
        assert eff.value == pytest.approx(sh["effect"], rel=1e-9)  # the figure's unit is the answer's
    assert "one-MCID effect (" not in text


def test_bounds_coverage_width_and_how_often_their_ci_excludes_0(curated):
    """Coverage through at_least (the lowest cell quoted with its MCSE), the CI's width beside the
    bounds' width, and the share of studies whose CI excludes 0 with no effect and with one MCID."""
    text, ledger, s, _ = curated
    lee = C.pick(pd.read_csv(SRC / C.SUMMARY), analysis="lee_bounds", measure="coverage")
    low = Est.of(lee.sort_values("value").iloc[0])
    assert f"(lowest {fmt(low)})" in text
    assert any(c.relation == "ge" and c.a == low for c in ledger)
    at1 = dict(survival_effect=1.0, health_scale=1.0)
    for o in ("barthel", "eq5d", "face", "vas"):
        ci = _one(s, analysis="lee_bounds", measure="mean_ci_width", outcome=o, effect_mcid=0.0, **at1)
        bw = _one(s, analysis="lee_bounds", measure="mean_bound_width", outcome=o, effect_mcid=0.0, **at1)
        assert f"{o} {fmt(ci)}" in text and f"{o} {fmt(bw)}" in text
        for e in (0.0, 1.0):
            x = _one(s, analysis="lee_bounds", measure="mean_ci_excludes_0", outcome=o, effect_mcid=e, **at1)
            assert f"{o} {fmt(x)}" in text


def test_trimming_share_and_wrong_group_against_the_truth(curated):
    text, _, s, run = curated
    seen = pd.read_csv(run / A.SEEN_FILE)
    for hr in (0.7, 1.0, 1.4):
        est = _one(s, analysis="lee_bounds", measure="mean_trim_share", outcome="barthel", effect_mcid=0.0,
                   survival_effect=hr, health_scale=1.0)
        true = A._seen(seen, "true_trim_share", survival_effect=hr, health_scale=1.0, timepoint=A.TIME)
        assert fmt(est) in text and fmt(true) in text
    assert "0 in every cohort at ratio 1" in text
    for hr, group in ((0.7, "treated"), (1.4, "control")):
        t = _one(s, analysis="lee_bounds", measure="mean_trimmed_treated", outcome="barthel", effect_mcid=0.0,
                 survival_effect=hr, health_scale=1.0)
        wrong = Est(1 - t.value, t.mcse) if group == "treated" else t
        assert fmt(wrong) in text and f"{group} group at ratio {hr:g}" in text
    p0 = A._seen(seen, "treated_seen_control", survival_effect=1.0, health_scale=1.0, timepoint=A.TIME)
    pc = A._seen(seen, "control_seen", survival_effect=1.0, health_scale=1.0, timepoint=A.TIME)
    assert f"{fmt(pc)} against {fmt(p0)}" in text


def test_power_is_quoted_beside_the_realised_effect(curated):
    text, _, s, _ = curated
    for o in ("barthel", "eq5d", "face", "vas"):
        pw = _one(s, analysis="wilcoxon", measure="rejection_benefit", outcome=o, effect_mcid=1.0, survival_effect=1.0,
                  health_scale=1.0)
        eff = _one(s, analysis="diff_means", measure="true_matched", outcome=o, effect_mcid=1.0, survival_effect=1.0,
                   health_scale=1.0)
        assert f"{o} {fmt(pw)} for {fmt(eff)}" in text
    real = [_one(s, analysis="diff_means", measure="true_matched", outcome="barthel", effect_mcid=1.0,
                 survival_effect=1.0, health_scale=h) for h in (0.0, 1.0, 2.0)]
    assert A._and([fmt(x) for x in real]) in text


def test_key_figure_is_the_paired_shift_and_the_readme_is_this_answer(curated):
    text = curated[0]
    assert A.KEY_FIGURE == "paired_shift.png" and (SRC / A.KEY_FIGURE).is_file()
    readme = (SRC / "README.md").read_text()
    assert "![paired_shift.png](paired_shift.png)" in readme
    assert text in readme
    assert gzip.decompress((SRC / C.SUMMARY).read_bytes())  # the curated summary is the one read

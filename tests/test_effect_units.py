"""Effects on one footing (sim.report.units): one MCID of each outcome in SD units of its change,
recomputed independently; the curated answers quote it, and the trial planning sets the closed-form
n for one MCID beside that for 0.5 SD (checked against statsmodels' power solver)."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from statsmodels.stats.power import TTestIndPower

from sim import power as PW
from sim.report import curate as C
from sim.report import units as U

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    import sim

    return sim.cohort_model(sim.compose("caliper_sweep"))


def test_units_are_the_mcid_over_the_sd_of_the_change(model, study_raw):
    """The table's MCIDs are the study file's; its SD is that of the change from baseline without
    treatment among the patients alive at the visit, which a large cohort drawn from the model
    reproduces (an independent sample: its untreated potential change, alive patients only)."""
    import sim
    from sim.cohort.generate import generate, reference_change_sd
    from sim.jobs.conditions import design_of, study_of

    table = U.effect_units(model)
    assert list(table.columns) == U.COLUMNS
    assert len(table) == len(model.outcomes) * len(model.follow_up) == 8
    sds = reference_change_sd(model)
    cfg = sim.compose("caliper_sweep", ["cohort.n=60000"])
    plain = sim.api._plain(cfg)
    cohort = generate(design_of(study_of(plain), plain["cohort"]), np.random.default_rng(11))
    for r in table.itertuples():
        mcid = float(study_raw["outcomes"][r.outcome]["mcid"]["value"])
        assert r.mcid == mcid
        assert r.sd_change == sds[(r.outcome, r.timepoint)]
        assert r.mcid_in_sd == pytest.approx(mcid / sds[(r.outcome, r.timepoint)], rel=1e-12)
        d0 = cohort.potential_deltas[(r.outcome, r.timepoint)][0]
        d0 = d0[~np.isnan(d0)]
        # SE of an SD is about sd / sqrt(2n) times a kurtosis factor; 4 % is > 4 such SEs here
        assert np.std(d0) == pytest.approx(r.sd_change, rel=0.04), (r.outcome, r.timepoint)
    # the example of the answers: one face (2 points) is about 0.6 SD of the face scale's change
    assert 0.5 < U.mcid_in_sd(table, "face", "m1") < 0.8
    assert U.in_sd(table, "face", "m1") == f"1 MCID = {2 / sds[('face', 'm1')]:.2f} SD"


def test_units_follow_the_analysed_outcomes(model):
    t = U.effect_units(model, ["vas"], ["m6"])
    assert list(zip(t["outcome"], t["timepoint"])) == [("vas", "m6")]
    assert U.at_visit(U.effect_units(model), "m6", ["face", "barthel"]).startswith("one MCID = face 0.")


@pytest.mark.parametrize("name", ["caliper_sweep", "sample_size", "unmeasured_confounding", "truncation_by_death",
                                  "rct_planning"])
def test_answers_that_speak_of_one_mcid_show_the_units(name):
    m = C.load_answer(name)
    assert U.UNITS_FILE in m.EXTRA_FILES
    assert U.UNITS_FILE in [f for _, f, _ in m.README_TABLES]


@pytest.mark.parametrize("name", ["sample_size", "unmeasured_confounding", "truncation_by_death", "rct_planning"])
def test_curated_units_are_the_models(name, model):
    """The curated effect_units.csv is the calibrated model's table (not typed by hand), and the
    README shows it."""
    path = ROOT / "experiments" / name / U.UNITS_FILE
    committed = pd.read_csv(path)
    fresh = U.effect_units(model)
    pd.testing.assert_frame_equal(committed[U.COLUMNS].drop_duplicates().reset_index(drop=True), fresh,
                                  check_exact=False, rtol=1e-9)
    readme = (ROOT / "experiments" / name / "README.md").read_text()
    assert f"## {U.UNITS_TITLE}\n\n{U.UNITS_CAPTION}" in readme
    assert "| outcome | timepoint | mcid | sd_change | mcid_in_sd |" in readme


# ----------------------------------------------------------------------------- the answers quote the units

def _run_from_curated(name: str, run: Path) -> Path:
    src = ROOT / "experiments" / name
    run.mkdir(parents=True)
    for p in src.iterdir():
        if p.suffix in (".csv", ".md", ".png"):
            shutil.copy2(p, run / p.name)
    (run / "summary.csv").write_bytes(gzip.decompress((src / C.SUMMARY).read_bytes()))
    return run


def test_sample_size_answer_follows_the_summary_and_the_units(tmp_path):
    run = _run_from_curated("sample_size", tmp_path / "run")
    m = C.load_answer("sample_size")
    summary = pd.read_csv(run / "summary.csv")
    before = m.answer(summary, run)
    power = summary[(summary["analysis"] == "wilcoxon") & (summary["measure"] == "rejection_benefit")
                    & (summary["effect_mcid"] == 1.0) & (summary["cohort.n"] == 263)]
    top = power.loc[power["value"].idxmax()]
    u = pd.read_csv(run / U.UNITS_FILE)
    sd = U.mcid_in_sd(u, top.outcome, top.timepoint)
    quoted = f"{top.value:.2f} ({top.mcse:.2f}; {top.outcome} {top.timepoint}, 1 MCID = {sd:.2f} SD)"
    assert quoted in before
    # edit the summary: the sentence follows
    edited = summary.copy()
    edited.loc[top.name, "value"] = 0.97
    after = m.answer(edited, run)
    assert quoted not in after and f"0.97 ({top.mcse:.2f}; {top.outcome} {top.timepoint}, 1 MCID = " in after
    # edit the units: the SD part follows
    u.loc[u["outcome"] == top.outcome, "mcid_in_sd"] = 9.87
    u.to_csv(run / U.UNITS_FILE, index=False)
    assert f"; {top.outcome} {top.timepoint}, 1 MCID = 9.87 SD)" in m.answer(summary, run)


def test_caliper_sweep_answer_quotes_each_power_with_its_units(tmp_path):
    """On a made-up summary (the committed caliper_sweep files may predate the units)."""
    run = tmp_path / "run"
    run.mkdir()
    units = pd.DataFrame({"outcome": ["face", "vas"], "timepoint": ["m1", "m1"], "mcid": [2.0, 15.0],
                          "sd_change": [3.2, 30.0]})
    units["mcid_in_sd"] = units["mcid"] / units["sd_change"]
    units.to_csv(run / U.UNITS_FILE, index=False)
    rows = []
    for cal in (0.2, None):
        for eff in (0.0, 1.0):
            for o, v in (("face", 0.83), ("vas", 0.52)):
                for analysis, measure, value in (("wilcoxon", "rejection", 0.05), ("wilcoxon", "rejection_benefit", v),
                                                 ("diff_means", "bias", 0.1 if cal else 2.0)):
                    rows.append({"caliper": cal, "effect_mcid": eff, "outcome": o, "timepoint": "m1",
                                 "analysis": analysis, "measure": measure, "value": value, "mcse": 0.01})
    summary = pd.DataFrame(rows)
    text = C.load_answer("caliper_sweep").answer(summary, run)
    assert "face m1 0.83 (0.01; 1 MCID = 0.62 SD), vas m1 0.52 (0.01; 1 MCID = 0.50 SD)" in text
    assert "power is below 80 % beyond 2 MCSE for 1 of these 2; above 80 % beyond 2 MCSE for face m1 0.83 (0.01" in text
    assert "one MCID is 0.50 SD (vas m1) to 0.62 SD (face m1) of the change" in text
    summary.loc[(summary["outcome"] == "vas") & (summary["measure"] == "rejection_benefit"), "value"] = 0.91
    text = C.load_answer("caliper_sweep").answer(summary, run)
    assert "above 80 % beyond 2 MCSE for face m1 0.83 (0.01), vas m1 0.91 (0.01)" in text
    assert "below 80 %" not in text and "cannot rule out" not in text
    assert "indistinguishable (within 2 MCSE) from 5 % in 2 of the 2 outcome x time comparisons" in text
    # a test that does not keep its size (type-I error 0.09, 4 MCSE above 5 %) has no power to quote
    summary.loc[(summary["outcome"] == "vas") & (summary["measure"] == "rejection")
                & (summary["caliper"] == 0.2), "value"] = 0.09
    text = C.load_answer("caliper_sweep").answer(summary, run)
    assert "in 1 of the 2 outcome x time comparisons (0.05 (0.01) to 0.09 (0.01); not vas m1 (above 5 %))" in text
    assert "vas m1 0.91" not in text and "above 80 % beyond 2 MCSE for face m1 0.83 (0.01" in text


def test_units_are_computed_from_the_run_config_when_the_run_has_none(tmp_path, model):
    """An older run directory without effect_units.csv: computed from .hydra/config.yaml."""
    import sim
    from omegaconf import OmegaConf

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    cfg = sim.compose("sample_size", ["method.outcomes.names=[eq5d,face]"])
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    table = C.units(run)
    assert (run / U.UNITS_FILE).is_file()
    pd.testing.assert_frame_equal(table, U.effect_units(model, ["eq5d", "face"]), check_exact=False, rtol=1e-9)


# ----------------------------------------------------------------------------- one MCID against 0.5 SD in a trial

def _refs() -> dict[float, pd.DataFrame]:
    ref = pd.DataFrame({"outcome": ["a", "a", "b"], "timepoint": ["m1", "m6", "m1"], "sd_change": [25.0, 30.0, 0.25],
                        "sd_post": [27.0, 21.0, 0.24], "rho": [0.64, 0.36, 0.57], "seen": [0.86, 0.68, 0.86]})
    return {0.5: ref.assign(sd_change=ref["sd_change"] * 1.01), 1.0: ref}


def _units() -> pd.DataFrame:
    u = pd.DataFrame({"outcome": ["a", "a", "b"], "timepoint": ["m1", "m6", "m1"], "mcid": [9.25, 9.25, 0.063],
                      "sd_change": [25.1, 30.7, 0.243]})
    return u.assign(mcid_in_sd=u["mcid"] / u["sd_change"])


def _sm_n(effect_size: float, alpha: float, power: float, df_lost: int = 0) -> float:
    """statsmodels' per-arm n at which the two-sided two-sample t-test (df = 2n - 2 - df_lost) reaches
    `power`: its solver for the t-test, a root of its power function for ANCOVA's one df less."""
    if df_lost == 0:
        return float(TTestIndPower().solve_power(effect_size=effect_size, alpha=alpha, power=power, ratio=1.0))
    f = lambda n: TTestIndPower().power(effect_size, n, alpha, ratio=1.0, df=2 * n - 2 - df_lost) - power  # noqa: E731
    hi = 4.0
    while f(hi) < 0:  # bracket the root from below (statsmodels' power is NaN far beyond it)
        hi *= 1.5
    return float(optimize.brentq(f, 3.0, hi))


@pytest.mark.parametrize("targets", [(0.8,), (0.8, 0.9)])
def test_standardised_n_matches_statsmodels(targets):
    alpha = 0.05
    t = PW.standardised_n_table(_refs(), _units(), targets, alpha)
    assert list(t.columns) == [*U.COLUMNS, "power", "n_ttest_one_mcid", "n_ttest_0.5sd", "n_ancova_one_mcid",
                               "n_ancova_0.5sd"]
    assert len(t) == 3 * len(targets)
    ref = _refs()[1.0].set_index(["outcome", "timepoint"])  # the one-MCID planning inputs
    for _, r in t.iterrows():
        p = ref.loc[(r.outcome, r.timepoint)]
        sd_res = p.sd_post * math.sqrt(1 - p.rho ** 2)
        for delta, tag in ((r.mcid, "one_mcid"), (0.5 * r.sd_change, "0.5sd")):
            assert r[f"n_ttest_{tag}"] == math.ceil(_sm_n(delta / p.sd_change, alpha, r.power) / p.seen)
            assert r[f"n_ancova_{tag}"] == math.ceil(_sm_n(delta / sd_res, alpha, r.power, df_lost=1) / p.seen)
    # at 0.5 SD the t-test n depends on the outcome only through the share seen and sd_unit / sd_planning
    half = t[t["power"] == 0.8]
    analysable = half["n_ttest_0.5sd"] * [0.86, 0.68, 0.86]
    assert analysable.between(60, 70).all()  # Cohen: 64 per group for d = 0.5


def test_standardised_n_uses_the_largest_effect_without_one_mcid():
    refs = {0.5: _refs()[1.0]}
    t = PW.standardised_n_table(refs, _units(), [0.8], 0.05)
    assert (t["n_ttest_one_mcid"] == PW.standardised_n_table(_refs(), _units(), [0.8], 0.05)["n_ttest_one_mcid"]).all()
    with pytest.raises(ValueError, match="no reference quantities"):
        PW.standardised_n_table({}, _units(), [0.8], 0.05)


def test_curated_trial_sets_one_mcid_beside_half_an_sd():
    """experiments/rct_planning: the one-MCID n of the units table is the sample-size table's
    closed_ttest_nct / closed_ancova_nct at one MCID, and the answer quotes both."""
    src = ROOT / "experiments" / "rct_planning"
    units = pd.read_csv(src / U.UNITS_FILE)
    ss = pd.read_csv(src / "sample_size.csv")
    one = ss[ss["effect_mcid"] == 1.0].merge(units, on=["outcome", "timepoint", "power"])
    assert len(one) == len(units)
    assert (one["n_ttest_one_mcid"] == one["closed_ttest_nct"]).all()
    assert (one["n_ancova_one_mcid"] == one["closed_ancova_nct"]).all()
    answer = C.load_answer("rct_planning").answer(pd.read_csv(src / C.SUMMARY), src)
    u80 = units[units["power"] == 0.8]
    lo = u80.loc[u80["n_ttest_0.5sd"].idxmin()]
    assert f"but {int(lo['n_ttest_0.5sd'])} ({lo.outcome} {lo.timepoint}) to " in answer
    assert "for an effect of 0.5 SD on every outcome" in answer
    readme = (src / "README.md").read_text()
    assert answer in readme

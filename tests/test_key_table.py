"""The key table's layout (experiment.key_table.pivot): a grid factor's levels as columns, one block
of rows per measure, every cell the long table's; its settings are checked before the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf

from sim.jobs.config import ConfigError
from sim.report.montecarlo import key_columns, key_table, layout_key_table, pivot_key_table
from sim.report.settings import check_report_settings
from sim.report.tables import key_table_markdown

ROOT = Path(__file__).resolve().parents[1]
FACTORS = ["caliper", "effect_mcid"]
CALIPERS = [None, 0.05, 0.2, 1.0]
COLUMNS = [("wilcoxon", "rejection"), ("diff_means", "bias"), ("wilcoxon", "rejection_benefit")]


def _summary() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    for cal in CALIPERS:
        for eff in (0.0, 1.0):
            for o in ("barthel", "face", "vas"):
                for analysis, measure in COLUMNS:
                    rows.append({"caliper": cal, "effect_mcid": eff, "outcome": o, "timepoint": "m6",
                                 "analysis": analysis, "measure": measure, "value": rng.uniform(),
                                 "mcse": rng.uniform(0, 0.02)})
    return pd.DataFrame(rows)


def test_pivot_has_one_column_per_level_and_the_long_tables_cells():
    long = key_table(_summary(), FACTORS, COLUMNS, "matched")
    assert len(long) == len(CALIPERS) * 2 * 3  # one row per condition x outcome
    wide = pivot_key_table(long, "caliper", FACTORS)
    measures = [c for c in long.columns if "[" in c]
    assert len(measures) == 3
    assert list(wide.columns) == ["measure", "effect_mcid", "outcome", "timepoint",
                                  "caliper = none", "caliper = 0.05", "caliper = 0.2", "caliper = 1"]
    assert wide.shape == (3 * 2 * 3, 4 + len(CALIPERS))
    assert list(dict.fromkeys(wide["measure"])) == measures  # one block per measure, in the long table's order
    for _, r in wide.iterrows():
        for cal in ("none", 0.05, 0.2, 1.0):
            cell = long[(long["caliper"] == cal) & (long["effect_mcid"] == r.effect_mcid)
                        & (long["outcome"] == r.outcome)][r.measure]
            assert len(cell) == 1 and r[f"caliper = {cal:g}" if cal != "none" else "caliper = none"] == cell.iloc[0]


def test_pivot_over_the_other_factor_and_a_missing_cell():
    long = key_table(_summary(), FACTORS, COLUMNS, "")
    long = long[~((long["caliper"] == 0.2) & (long["effect_mcid"] == 1.0) & (long["outcome"] == "vas"))]
    wide = pivot_key_table(long, "effect_mcid", FACTORS)
    assert list(wide.columns)[-2:] == ["effect_mcid = 0", "effect_mcid = 1"]
    assert wide.shape == (3 * len(CALIPERS) * 3, 4 + 2)
    gap = wide[(wide["caliper"] == 0.2) & (wide["outcome"] == "vas")]
    assert (gap["effect_mcid = 1"] == "").all() and (gap["effect_mcid = 0"] != "").all()


def test_pivot_labels_exp_factors():
    s = _summary()
    s["caliper"] = s["caliper"].fillna(0.0)
    s = s.rename(columns={"caliper": "log_or"})
    long = key_table(s, ["log_or", "effect_mcid"], COLUMNS, "")
    wide = layout_key_table(long, ["log_or", "effect_mcid"], {"pivot": "log_or", "exp_factors": {"log_or": "ratio"}})
    assert "log_or = 0.2 (ratio = 1.221)" in wide.columns and "ratio" not in wide.columns
    rows = layout_key_table(long, ["log_or", "effect_mcid"],
                            {"pivot": "effect_mcid", "exp_factors": {"log_or": "ratio"}})
    assert list(rows.columns[:4]) == ["measure", "log_or", "ratio", "outcome"]


def test_markdown_shows_one_table_per_measure():
    wide = pivot_key_table(key_table(_summary(), FACTORS, COLUMNS, "matched"), "caliper", FACTORS)
    text = key_table_markdown(wide)
    assert text.count("| effect_mcid | outcome | timepoint | caliper = none |") == 3
    assert "**rejection [wilcoxon]**" in text and "**bias [diff_means] vs matched**" in text
    assert "| measure |" not in text
    long = key_table(_summary(), FACTORS, COLUMNS, "matched")
    assert key_table_markdown(long).count("| caliper |") == 1  # the long layout as it was


# ----------------------------------------------------------------------------- settings

def _cfg(key_table_cfg) -> OmegaConf:
    return OmegaConf.create({"experiment": {"key_table": key_table_cfg}})


@pytest.mark.parametrize("setting, needle", [
    ({"pivot": "calipr"}, "experiment.key_table.pivot: got 'calipr'; allowed: a grid factor of this run "
                          "['caliper', 'effect_mcid']"),
    ({"pivot": "outcome"}, "experiment.key_table.pivot: got 'outcome'"),
    ({"pivot": ["caliper"]}, "experiment.key_table.pivot: got ['caliper']"),
    ({"pivott": "caliper"}, "experiment.key_table.pivott: unknown key; allowed: ['where', 'columns', 'exp_factors', "
                            "'pivot', 'defaults']"),
    (["caliper"], "experiment.key_table: must be a mapping with keys ['where', 'columns', 'exp_factors', 'pivot', "
                  "'defaults']"),
    ({"defaults": "no"}, "experiment.key_table.defaults: got 'no'; allowed: true"),
])
def test_bad_settings_are_refused_naming_the_key(setting, needle):
    with pytest.raises(ConfigError) as e:
        check_report_settings(_cfg(setting), FACTORS)
    assert str(e.value).startswith(needle), str(e.value)


def test_key_columns_defaults_first_each_once_or_only_the_listed():
    """A column listed twice, or listed and also a default, appears once; `defaults: false` keeps
    only the listed columns (a small table of the measures an answer cites)."""
    listed = {"columns": [["wilcoxon", "rejection_benefit"], ["wilcoxon", "rejection"], ["wilcoxon", "rejection_benefit"]]}
    assert key_columns(["wilcoxon"], ["diff_means"], listed) == [
        ("wilcoxon", "rejection"), ("diff_means", "bias"), ("wilcoxon", "rejection_benefit")]
    assert key_columns(["wilcoxon"], ["diff_means"], {**listed, "defaults": False}) == [
        ("wilcoxon", "rejection_benefit"), ("wilcoxon", "rejection")]


def test_good_settings_pass():
    check_report_settings(_cfg({"pivot": "caliper", "where": {"timepoint": "m6"}}), FACTORS)
    check_report_settings(_cfg({"pivot": None}), FACTORS)


@pytest.mark.parametrize("name, factor", [("caliper_sweep", "caliper"), ("confounding_sweep", "confounding"),
                                          ("sample_size", "cohort.n")])
def test_sweeps_pivot_their_swept_factor(name, factor):
    exp = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())["experiment"]
    assert exp["key_table"]["pivot"] == factor


def test_a_bad_pivot_is_one_error_line_before_the_run(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sim", "experiment=caliper_sweep", "reps=2",
                        "experiment.key_table.pivot=calipr", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: experiment.key_table.pivot: got 'calipr'"), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run" / "chunks").exists()


# ----------------------------------------------------------------------------- a run

def test_a_run_writes_the_pivoted_table_and_the_units(tmp_path):
    import sim

    grid = "experiment.grid={method.matching.caliper:[0.2,null],cohort.effect_mcid:[0.0,1.0]}"
    res = sim.run("caliper_sweep", ["reps=6", "n_jobs=1", "method.outcomes.names=[barthel,face]", grid],
                  out_dir=tmp_path)
    wide = pd.read_csv(tmp_path / "key_table.csv")
    long = key_table(res.summary[res.summary["timepoint"] == "m6"], res.factors,
                     [("wilcoxon", "rejection"), ("diff_means", "bias"), ("wilcoxon", "rejection_benefit")],
                     "matched")
    assert list(wide.columns) == ["measure", "effect_mcid", "outcome", "timepoint", "caliper = 0.2",
                                  "caliper = none"]
    assert len(wide) == 3 * 2 * 2 and len(long) == 2 * 2 * 2
    for _, r in wide.iterrows():
        for cal in (0.2, "none"):
            cell = long[(long["caliper"] == cal) & (long["effect_mcid"] == r.effect_mcid)
                        & (long["outcome"] == r.outcome)][r.measure].iloc[0]
            assert r[f"caliper = {cal}"] == cell
    report = (tmp_path / "report.md").read_text()
    assert "**rejection_benefit [wilcoxon]**" in report and "## Effect sizes in SD units" in report
    units = pd.read_csv(tmp_path / "effect_units.csv")
    assert list(zip(units["outcome"], units["timepoint"])) == [("barthel", "m1"), ("barthel", "m6"),
                                                              ("face", "m1"), ("face", "m6")]

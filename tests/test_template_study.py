"""The README's new-study recipe, end to end, on the shipped template (conf/{study,cohort,method}/
template.yaml: two outcomes, one follow-up visit), and the load-time checks that made it need six
tries: every field sim reads is validated with one error naming its path and what needs it."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cli_helpers import run_sim_lines
from sim.cohort.study import StudySpecError, load_study
from sim.jobs.config import ConfigError, check_cohort

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "conf" / "study" / "template.yaml"
#: the README's command ("Extending sim", a study), run here as written plus a run directory
RECIPE = ("python -m sim experiment=caliper_sweep study=template cohort=template method=template "
          "reps=10 cohort.calibration_n=20000")


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def _drop(raw: dict, path: str) -> dict:
    node = raw
    *parents, last = path.split(".")
    for k in parents:
        node = node[k]
    del node[last]
    return raw


@pytest.mark.parametrize("path, need", [
    ("survival.died", "calibration"),
    ("survival.survival_days", "calibration"),
    ("propensity_model.matching", "reproduce_paper"),
    ("propensity_model.odds_ratios.severity", "calibration"),
    ("groups.control.label", "the reports"),
    ("outcomes.pain.fig1.source", "the calibration report"),
])
def test_a_missing_field_names_its_path_and_what_needs_it(raw, path, need):
    with pytest.raises(StudySpecError, match=rf"^study template: {re.escape(path)}: missing \(needed by {need}"):
        load_study(_drop(raw, path))


def test_optional_sections_may_be_left_out(raw):
    study = load_study(raw)  # the template has no surgery, matched or analysed section, no fig p-values
    assert "surgery" not in study.raw and "matched" not in study.raw and "analysed" not in study.report
    assert study.words == {"treated": "surgery", "control": "no surgery"}
    assert study.visit_labels == {"pre": "at baseline", "m3": "3 months"}
    no_words = load_study(_drop(copy.deepcopy(raw), "groups"))
    assert no_words.words == {"treated": "treatment", "control": "control"}


def test_a_continuous_driver_of_treatment_is_refused(raw):
    raw["propensity_model"]["odds_ratios"]["age"] = {"or": 1.03, "ci": [1.0, 1.06]}
    with pytest.raises(StudySpecError, match=r"propensity_model\.odds_ratios\.age\.or: age is continuous, and "
                                             r"continuous covariates cannot drive treatment"):
        load_study(raw)


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["survival"].update(extra={"kind": "binary"}), "survival.extra: unknown entry"),
    (lambda r: r["survival"]["died"].update(kind="continuous"), "survival.died.kind"),
    (lambda r: r["propensity_model"]["covariates"].append("weight"), "propensity_model.covariates: 'weight'"),
    (lambda r: r["outcomes"]["pain"]["table5"]["p"].update(m6=0.5), "outcomes.pain.table5.p.m6: not a visit"),
    (lambda r: r["visits"].update(labels={"m6": "6 months"}), "visits.labels.m6: not a visit"),
    (lambda r: r["covariates"]["severity"].update(categories=["mild", "moderate", "severe"]),
     "propensity_model.odds_ratios.severity.or: severity has categories ['mild', 'moderate', 'severe'], not numbers"),
])
def test_malformed_sections_name_the_field(raw, mutate, field):
    mutate(raw)
    with pytest.raises(StudySpecError, match=re.escape(field)):
        load_study(raw)


def test_the_old_partial_correlation_key_is_refused_with_its_new_name():
    cohort = yaml.safe_load((ROOT / "conf" / "cohort" / "template.yaml").read_text())
    check_cohort(cohort)
    cohort["outcome_partial_corr_m1_m6"] = cohort.pop("outcome_partial_corr")
    with pytest.raises(ConfigError, match=r"cohort\.outcome_partial_corr_m1_m6: renamed cohort\.outcome_partial_corr"):
        check_cohort(cohort)


def test_the_readme_recipe_is_the_one_tested():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Extending sim", 1)[1].split("\n## ", 1)[0]
    assert RECIPE in section


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> tuple[Path, dict]:
    """The recipe's command line, and two it refuses, run as `python -m sim` runs them, in one
    process (tests/cli_helpers.py): the template's model is calibrated once."""
    root = tmp_path_factory.mktemp("template")
    recipe = RECIPE.split()[3:] + ["n_jobs=1"]
    lines = {"recipe": [*recipe, f"hydra.run.dir={root / 'recipe'}"],
             "visit": [*recipe, "experiment.key_table.where.timepoint=m6", f"hydra.run.dir={root / 'visit'}"],
             "optional": ["experiment=reproduce_paper", "study=template", "cohort=template", "method=template",
                          f"hydra.run.dir={root / 'optional'}"]}
    return root, run_sim_lines(lines, ROOT, os.environ.copy())


def test_the_recipe_runs_end_to_end(commands):
    root, got = commands
    assert got["recipe"].returncode == 0, got["recipe"].stderr
    run = root / "recipe"
    table = pd.read_csv(run / "key_table.csv")
    # the study's last (only) follow-up visit, both outcomes, both effects
    assert len(table) > 0 and set(table["timepoint"]) == {"m3"} and set(table["outcome"]) == {"function", "pain"}
    assert set(table["effect_mcid"]) == {0.0, 1.0}
    report = (run / "report.md").read_text()
    assert "counts only the rejections in favour of surgery (the power" in report
    assert "decompression" not in report.split("## Configuration")[0]


def test_a_key_table_visit_the_study_lacks_is_refused(commands):
    root, got = commands
    assert got["visit"].returncode == 2
    assert "experiment.key_table.where.timepoint: 'm6' is not a visit this run analyses" in got["visit"].stderr
    assert "['m3']" in got["visit"].stderr and not (root / "visit").exists()


def test_a_continuous_omitted_confounder_is_refused_naming_the_key(raw):
    from sim.jobs.conditions import design_of

    cohort = yaml.safe_load((ROOT / "conf" / "cohort" / "template.yaml").read_text())
    cohort.update(omitted_confounders={"age": 0.5}, calibration_n=1000)
    with pytest.raises(ConfigError, match=r"^cohort\.omitted_confounders\.age: age is continuous"):
        design_of(load_study(raw), cohort)


def test_an_experiment_needing_an_optional_section_says_so_before_it_runs(commands):
    root, got = commands
    assert got["optional"].returncode == 2
    assert ("error: study template: matched: missing (needed by experiment reproduce_paper: the published matched "
            "sample, Table 4)") in got["optional"].stderr
    assert not (root / "optional").exists()

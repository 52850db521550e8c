"""sim.cohort.study: the real spec loads; every kind of broken spec is rejected naming the field path.

Each bad spec is the parsed real YAML, deep-copied, with exactly one field changed, so a test can
only pass if that one change is what the validator objects to.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from sim.cohort.study import Study, StudySpecError, load_study, validate

from pathlib import Path

STUDY_PATH = Path(__file__).resolve().parents[1] / "conf" / "study" / "tominaga2025.yaml"


# ------------------------------------------------------------------ the real file
def test_real_spec_loads_from_path():
    study = load_study(STUDY_PATH)
    assert isinstance(study, Study)
    assert study.name == "tominaga2025"
    assert study.n == {"total": 263, "treated": 189, "control": 74}
    assert study.treated_share == pytest.approx(189 / 263)


def test_real_spec_loads_from_mapping_and_str_path(study_raw):
    a = load_study(copy.deepcopy(study_raw))
    b = load_study(str(STUDY_PATH))
    assert a.raw == b.raw
    validate(copy.deepcopy(study_raw))  # no exception


def test_real_spec_accessors(study):
    # Table 1: 124 of 189 treated are male; ESCC counts normalised by their own sum
    assert study.proportions("male", "treated") == pytest.approx([124 / 189])
    assert study.proportions("escc", "control") == pytest.approx(np.array([8, 33, 23, 10]) / 74)
    # level's treated counts add to 190 (a published typo); proportions still sum to 1
    assert study.proportions("level", "treated").sum() == pytest.approx(1.0)
    assert study.variable("op_time")["kind"] == "continuous"      # surgery section
    assert study.variable("died")["kind"] == "binary"             # survival section
    with pytest.raises(KeyError, match="no_such_variable"):
        study.variable("no_such_variable")
    lor = study.log_odds_ratios()
    assert set(lor) == {"age", "male", "escc", "frankel_abc", "emergency"}
    assert lor["escc"] == pytest.approx(np.log(2.9))


def test_real_spec_visits(study):
    """The visit schedule is study data (Methods: preoperatively and at 1 and 6 months)."""
    assert study.baseline == "pre"
    assert study.follow_up == ("m1", "m6")
    assert study.times == ("pre", "m1", "m6")
    assert study.visit_days == {"m1": 30.0, "m6": 182.0}


def test_visits_name_the_outcome_tables(study_raw):
    """Renamed visits are accepted when the outcome tables use the new names, and only then."""
    raw = copy.deepcopy(study_raw)
    raw["visits"].update(baseline="base", follow_up=["w4"], days={"w4": 28}, labels={"w4": "4 weeks"})
    with pytest.raises(StudySpecError, match=re.escape("outcomes.barthel.fig1.treated.base: missing")):
        load_study(copy.deepcopy(raw))
    for out in raw["outcomes"].values():
        for table in ("fig1", "fig2", "table2", "table5"):
            for group in ("treated", "control", "p"):
                if group not in out[table]:
                    continue
                block = out[table][group]
                out[table][group] = {"base": block.get("pre"), "w4": block["m1"]} if "pre" in block \
                    else {"w4": block["m1"]}
    study = load_study(raw)
    assert study.times == ("base", "w4") and study.visit_days == {"w4": 28.0}
    assert study.visit_labels == {"base": "base", "w4": "4 weeks"}  # a visit without a label: its name


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(StudySpecError, match="file not found"):
        load_study(tmp_path / "nope.yaml")


def test_spec_error_is_a_value_error():
    assert issubclass(StudySpecError, ValueError)


# ------------------------------------------------------------------ bad specs
def _set(path: tuple, value):
    def mutate(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return mutate


def _delete(path: tuple):
    def mutate(raw):
        node = raw
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


# (id, mutation, the field path the message must name, another fragment the message must contain)
BAD_SPECS = [
    # a count above the group's N
    ("count_above_n", _set(("covariates", "male", "treated", "n"), 300),
     "covariates.male.treated.n", "outside 0..189"),
    ("count_above_n_surgery", _set(("surgery", "reoperation", "control", "n"), 75),
     "surgery.reoperation.control.n", "outside 0..74"),
    ("category_count_above_n", _set(("covariates", "frankel", "control", "n"), [2, 2, 7, 16, 100]),
     "covariates.frankel.control.n[4]", "outside 0..74"),
    # a negative count
    ("negative_count", _set(("covariates", "male", "control", "n"), -1),
     "covariates.male.control.n", "outside 0..74"),
    ("negative_category_count", _set(("covariates", "escc", "treated", "n"), [3, 19, -1, 168]),
     "covariates.escc.treated.n[2]", "outside"),
    # a categorical whose counts do not add to N
    ("categories_not_adding_to_n", _set(("covariates", "escc", "treated", "n"), [3, 19, 63, 50]),
     "covariates.escc.treated.n", "add to 135"),
    ("categories_wrong_length", _set(("covariates", "escc", "treated", "n"), [3, 19, 167]),
     "covariates.escc.treated.n", "one count per category"),
    # a non-positive SD
    ("zero_sd_covariate", _set(("covariates", "age", "treated", "sd"), 0),
     "covariates.age.treated.sd", "> 0"),
    ("negative_sd_covariate", _set(("surgery", "op_time", "control", "sd"), -67.8),
     "surgery.op_time.control.sd", "> 0"),
    ("negative_sd_outcome", _set(("outcomes", "vas", "fig1", "treated", "m1"), [31.3, -1.0]),
     "outcomes.vas.fig1.treated.m1[1]", "> 0"),
    ("zero_sd_delta", _set(("outcomes", "face", "table2", "control", "m6"), [3.1, 0]),
     "outcomes.face.table2.control.m6[1]", "> 0"),
    # a mean outside its scale
    ("covariate_mean_above_scale", _set(("covariates", "age", "control", "mean"), 150.0),
     "covariates.age.control.mean", "outside the scale"),
    ("covariate_mean_below_scale", _set(("covariates", "charlson", "total", "mean"), 5.0),
     "covariates.charlson.total.mean", "outside the scale"),
    ("outcome_mean_above_scale", _set(("outcomes", "barthel", "fig1", "control", "pre"), [105.0, 10.0]),
     "outcomes.barthel.fig1.control.pre", "outside the scale"),
    ("outcome_mean_below_scale", _set(("outcomes", "eq5d", "fig1", "treated", "m6"), [-0.1, 0.2]),
     "outcomes.eq5d.fig1.treated.m6", "outside the scale"),
    # a missing required key
    ("missing_name", _delete(("name",)), "study spec: name:", "missing"),
    ("missing_n_control", _delete(("n", "control")), "n.control", "missing"),
    ("missing_kind", _delete(("covariates", "age", "kind")), "covariates.age.kind", "missing"),
    ("missing_source", _delete(("covariates", "male", "source")), "covariates.male.source", "missing"),
    ("missing_group", _delete(("covariates", "male", "control")), "covariates.male.control", "missing"),
    ("missing_sd", _delete(("covariates", "age", "treated", "sd")), "covariates.age.treated.sd", "missing"),
    ("missing_scale_lower", _delete(("covariates", "age", "scale", "lower")), "covariates.age.scale.lower", "missing"),
    ("missing_mcid", _delete(("outcomes", "eq5d", "mcid")), "outcomes.eq5d.mcid", "missing"),
    ("missing_fig1_time", _delete(("outcomes", "vas", "fig1", "control", "m6")),
     "outcomes.vas.fig1.control.m6", "missing"),
    ("missing_table5", _delete(("outcomes", "face", "table5")), "outcomes.face.table5", "missing"),
    ("missing_odds_ratio", _delete(("propensity_model", "odds_ratios", "male")),
     "propensity_model.odds_ratios.male", "missing"),
    ("missing_outcomes", _delete(("outcomes",)), "study tominaga2025: outcomes:", "missing"),
    # an odds ratio outside its CI
    ("odds_ratio_above_ci", _set(("propensity_model", "odds_ratios", "escc", "or"), 5.0),
     "propensity_model.odds_ratios.escc", "not inside its CI"),
    ("odds_ratio_below_ci", _set(("propensity_model", "odds_ratios", "frankel_abc", "or"), 1.1),
     "propensity_model.odds_ratios.frankel_abc", "not inside its CI"),
    ("odds_ratio_nonpositive", _set(("propensity_model", "odds_ratios", "male", "or"), 0.0),
     "propensity_model.odds_ratios.male.or", "> 0"),
    # an unknown kind
    ("unknown_kind", _set(("covariates", "age", "kind"), "ordinal"), "covariates.age.kind", "'ordinal'"),
    ("unknown_kind_survival", _set(("survival", "died", "kind"), "boolean"), "survival.died.kind", "'boolean'"),
    ("unknown_scale_type", _set(("covariates", "weight", "scale", "type"), "gamma"),
     "covariates.weight.scale.type", "'gamma'"),
    # n.total != treated + control
    ("n_total_mismatch", _set(("n", "total"), 264), "n.total", "264 != treated 189 + control 74"),
    ("n_treated_mismatch", _set(("n", "treated"), 190), "n.total", "263 != treated 190 + control 74"),
    # a non-numeric value
    ("non_numeric_mean", _set(("covariates", "age", "treated", "mean"), "67.1"),
     "covariates.age.treated.mean", "finite number"),
    ("non_numeric_count", _set(("covariates", "male", "treated", "n"), "124"),
     "covariates.male.treated.n", "whole count"),
    ("bool_count", _set(("covariates", "male", "total", "n"), True), "covariates.male.total.n", "whole count"),
    ("float_count", _set(("covariates", "male", "total", "n"), 170.5), "covariates.male.total.n", "whole count"),
    ("non_numeric_n", _set(("n", "treated"), "189"), "n.treated", "whole count"),
    ("nan_mean", _set(("covariates", "height", "total", "mean"), float("nan")),
     "covariates.height.total.mean", "finite number"),
    ("non_numeric_outcome", _set(("outcomes", "barthel", "fig1", "treated", "pre"), ["52.3", 31.1]),
     "outcomes.barthel.fig1.treated.pre[0]", "finite number"),
    ("non_numeric_ci", _set(("propensity_model", "odds_ratios", "age", "ci"), [0.98, "1.0"]),
     "propensity_model.odds_ratios.age.ci", "finite number"),
    ("non_numeric_mcid", _set(("outcomes", "vas", "mcid", "value"), "10 mm"),
     "outcomes.vas.mcid.value", "finite number"),
    ("non_bool_direction", _set(("outcomes", "face", "higher_is_better"), "no"),
     "outcomes.face.higher_is_better", "true or false"),
    # other shapes
    ("scale_upper_below_lower", _set(("outcomes", "face", "scale", "upper"), -1),
     "outcomes.face.scale.upper", "must be > lower"),
    ("mean_sd_not_a_pair", _set(("outcomes", "vas", "table5", "treated", "m1"), [28.0]),
     "outcomes.vas.table5.treated.m1", "[mean, sd]"),
    ("ci_not_a_pair", _set(("propensity_model", "odds_ratios", "escc", "ci"), [2.0]),
     "propensity_model.odds_ratios.escc.ci", "[lower, upper]"),
    ("empty_spec", lambda raw: raw.clear(), "study spec: name:", "missing"),
    # the visit schedule
    ("missing_visits", _delete(("visits",)), "study tominaga2025: visits:", "missing"),
    ("visits_not_a_mapping", _set(("visits",), ["pre", "m1", "m6"]), "study tominaga2025: visits:", "must be a mapping"),
    ("missing_baseline", _delete(("visits", "baseline")), "visits.baseline", "missing"),
    ("missing_follow_up", _delete(("visits", "follow_up")), "visits.follow_up", "missing"),
    ("missing_days", _delete(("visits", "days")), "visits.days", "missing"),
    ("empty_follow_up", _set(("visits", "follow_up"), []), "visits.follow_up", "non-empty list"),
    ("follow_up_not_a_list", _set(("visits", "follow_up"), "m1"), "visits.follow_up", "non-empty list"),
    ("visit_name_with_space", _set(("visits", "follow_up"), ["m1", "6 months"]),
     "visits.follow_up[1]", "letters and digits"),
    ("visit_name_with_underscore", _set(("visits", "baseline"), "pre_op"), "visits.baseline", "letters and digits"),
    ("visit_name_not_a_string", _set(("visits", "follow_up"), ["m1", 6]), "visits.follow_up[1]", "visit name"),
    ("duplicate_follow_up", _set(("visits", "follow_up"), ["m1", "m1"]), "visits.follow_up[1]", "listed twice"),
    ("follow_up_is_the_baseline", _set(("visits", "follow_up"), ["pre", "m6"]), "visits.follow_up[0]",
     "listed twice"),
    ("days_not_a_mapping", _set(("visits", "days"), [30, 182]), "visits.days", "must map each follow-up"),
    ("missing_day", _delete(("visits", "days", "m6")), "visits.days.m6", "missing"),
    ("day_of_an_unknown_visit", _set(("visits", "days", "m12"), 365), "visits.days.m12", "not a follow-up visit"),
    ("zero_day", _set(("visits", "days", "m1"), 0), "visits.days.m1", "> 0"),
    ("non_numeric_day", _set(("visits", "days", "m1"), "30"), "visits.days.m1", "finite number"),
    ("days_out_of_order", _set(("visits", "days", "m6"), 30), "visits.days.m6", "later than the visit before"),
    ("follow_up_without_data", _set(("visits", "follow_up"), ["m1", "m6", "m12"]), "visits.days.m12", "missing"),
    ("outcome_table_without_a_visit",
     lambda raw: (raw["visits"]["follow_up"].append("m12"), raw["visits"]["days"].update(m12=365)),
     "outcomes.barthel.fig1.treated.m12", "missing"),
]


@pytest.mark.parametrize("mutate, field, fragment",
                         [pytest.param(m, f, frag, id=i) for i, m, f, frag in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(study_raw, mutate, field, fragment):
    raw = copy.deepcopy(study_raw)
    mutate(raw)
    with pytest.raises(StudySpecError) as info:
        load_study(raw)
    msg = str(info.value)
    assert msg.startswith(("study tominaga2025: ", "study spec: "))  # the study's name, once it has one
    assert field in msg, msg
    assert fragment in msg, msg


def test_the_field_path_is_the_first_thing_named(study_raw):
    """The path is the message's subject ("study <name>: <path>: ..."), not buried in prose."""
    raw = copy.deepcopy(study_raw)
    raw["covariates"]["male"]["treated"]["n"] = 300
    with pytest.raises(StudySpecError,
                       match=re.escape("study tominaga2025: covariates.male.treated.n: count 300 is outside 0..189")):
        load_study(raw)


def test_validate_rejects_a_non_mapping_root():
    with pytest.raises(StudySpecError, match="<root>"):
        validate([1, 2, 3])


def test_bad_spec_does_not_mutate_the_input(study_raw):
    raw = copy.deepcopy(study_raw)
    raw["n"]["total"] = 264
    snapshot = copy.deepcopy(raw)
    with pytest.raises(StudySpecError):
        load_study(raw)
    assert raw == snapshot


def test_rounding_tolerance_of_category_sums(study_raw):
    """Counts off by rounding (Table 1 level: 190 of 189) pass; off by more than 1 % they do not."""
    raw = copy.deepcopy(study_raw)
    raw["covariates"]["level"]["treated"]["n"] = [23, 126, 41]      # 190 / 189 - 1 = 0.53 %
    load_study(raw)
    raw["covariates"]["level"]["treated"]["n"] = [23, 126, 43]      # 192 / 189 - 1 = 1.6 %
    with pytest.raises(StudySpecError, match=re.escape("covariates.level.treated.n")):
        load_study(raw)


# ------------------------------------------------------------------ regressions (bugs found in review)
@pytest.mark.parametrize("group, value", [("total", 263.5), ("treated", 189.7)])
def test_non_whole_group_size_is_rejected(study_raw, group, value):
    raw = copy.deepcopy(study_raw)
    raw["n"][group] = value
    with pytest.raises(StudySpecError, match=re.escape(f"n.{group}")):
        load_study(raw)


@pytest.mark.parametrize("section", ["covariates", "outcomes"])
def test_non_mapping_section_is_a_spec_error(study_raw, section):
    raw = copy.deepcopy(study_raw)
    raw[section] = [raw[section]]
    with pytest.raises(StudySpecError, match=section):
        load_study(raw)

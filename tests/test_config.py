"""Config validation: each bad value is rejected with its key and the allowed values."""

from __future__ import annotations

import copy

import pytest
import yaml

from sim.jobs.config import ConfigError, check_cohort, check_method, check_run_keys, experiments_available
from sim.jobs.conditions import short_names

METHOD = yaml.safe_load(open("conf/method/paper.yaml"))
COHORT = yaml.safe_load(open("conf/cohort/tominaga2025.yaml"))


def _set(d, path, value):
    d = copy.deepcopy(d)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


def test_defaults_are_valid():
    check_method(METHOD)
    check_cohort(COHORT)
    check_run_keys({"experiment": {"name": "x"}, "reps": 1, "seed": 0, "n_jobs": -1, "chunk_size": None})


@pytest.mark.parametrize("path,value,needle", [
    (("matching", "caliper"), -1, "method.matching.caliper"),
    (("matching", "caliper"), 0, "method.matching.caliper"),
    (("matching", "caliper_scale"), "probit", "['logit', 'ps']"),
    (("matching", "caliper_sd"), "median", "['pooled', 'whole', 'treated']"),
    (("matching", "order"), "sideways", "method.matching.order"),
    (("matching", "algorithm"), "genetic", "['greedy', 'optimal']"),
    (("matching", "ratio"), 0, "method.matching.ratio"),
    (("matching", "replace"), "yes", "method.matching.replace"),
    (("balance", "denominator"), "whole", "['pooled', 'treated']"),
    (("outcomes", "analyses"), ["ttest"], "unknown analysis 'ttest'"),
    (("outcomes", "times"), "m6", "method.outcomes.times"),
    (("outcomes", "names"), [1], "method.outcomes.names"),
    (("outcomes", "crude"), "yes", "method.outcomes.crude"),
    (("matching", "exact"), "age", "method.matching.exact"),
    (("matching", "nosuch"), 1, "method.matching.nosuch: unknown key"),
    (("outcomes", "alpha"), 1.5, "method.outcomes.alpha"),
])
def test_bad_method_values(path, value, needle):
    with pytest.raises(ConfigError) as info:
        check_method(_set(METHOD, path, value))
    assert needle in str(info.value)


def test_optimal_with_replacement_is_rejected():
    bad = _set(_set(METHOD, ("matching", "algorithm"), "optimal"), ("matching", "replace"), True)
    with pytest.raises(ConfigError, match="optimal"):
        check_method(bad)


@pytest.mark.parametrize("key,value", [("n", 5), ("n", 2.5), ("confounding", -0.1), ("effect_mcid", "big")])
def test_bad_cohort_values(key, value):
    with pytest.raises(ConfigError, match=f"cohort.{key}"):
        check_cohort({**COHORT, key: value})


@pytest.mark.parametrize("key,value", [("reps", 0), ("reps", 1.5), ("seed", -1), ("n_jobs", 0), ("chunk_size", 0)])
def test_bad_run_keys(key, value):
    cfg = {"experiment": {"name": "x"}, "reps": 1, "seed": 0, "n_jobs": -1, "chunk_size": None, key: value}
    with pytest.raises(ConfigError, match=f"^{key}:"):
        check_run_keys(cfg)


def test_missing_experiment_lists_the_available_ones():
    with pytest.raises(ConfigError) as info:
        check_run_keys({"experiment": None, "reps": 1, "seed": 0, "n_jobs": 1})
    assert "caliper_sweep" in str(info.value) and "caliper_sweep" in experiments_available()


def test_grid_column_names_avoid_result_columns():
    names = short_names(["method.matching.caliper", "cohort.n", "cohort.effect_mcid"])
    assert names == {"method.matching.caliper": "caliper", "cohort.n": "cohort.n", "cohort.effect_mcid": "effect_mcid"}
    assert short_names(["a.x", "b.x"]) == {"a.x": "a.x", "b.x": "b.x"}


@pytest.mark.parametrize("field, value, needle", [
    ("times", ("m3",), "method.outcomes.times: unknown 'm3'"),
    ("outcomes", ("nosuch",), "method.outcomes.names: unknown 'nosuch'"),
    ("ps_covariates", ("age", "nosuch"), "method.propensity.covariates: unknown column 'nosuch'"),
    ("ps_covariates", ("age", "u"), "unmeasured confounder"),
    ("balance_covariates", ("nosuch",), "method.balance.covariates"),
    ("exact", ("nosuch",), "method.matching.exact"),
])
def test_names_checked_against_a_cohort(field, value, needle):
    """Names are checked against a cohort's columns when each condition is planned."""
    import dataclasses

    import numpy as np

    from sim.methods.pipeline import MethodSpec

    columns = {"age": np.zeros(3), "male": np.zeros(3), "barthel_pre": np.zeros(3)}
    potential = {("barthel", "m1"): None, ("barthel", "m6"): None}
    spec = MethodSpec(ps_covariates=("age", "male"), balance_covariates=("age",), outcomes=("barthel",),
                      times=("m1", "m6"))
    spec.check_columns(columns, potential)  # the good spec passes
    with pytest.raises(ValueError, match=needle):
        dataclasses.replace(spec, **{field: value}).check_columns(columns, potential)


def test_null_outcomes_and_times_mean_all_of_the_studys():
    """A new study is a data change: with method.outcomes.names/times null the analysis covers every
    outcome and follow-up visit the study file declares, for the matched and the randomised jobs."""
    import sim
    from sim.jobs.contract import prepare

    one = "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"
    _, _, plans = prepare(sim.compose("caliper_sweep", [one, "method.outcomes.names=null",
                                                         "method.outcomes.times=null"]))
    design, spec = plans[0]
    assert spec.outcomes == tuple(o.name for o in design.model.outcomes) == ("barthel", "eq5d", "vas", "face")
    assert spec.times == design.model.follow_up == ("m1", "m6")
    _, _, plans = prepare(sim.compose("rct_planning", ["method.outcomes.times=null",
                                                        "experiment.grid={experiment.n_per_arm:[20],cohort.effect_mcid:[0.0]}"]))
    assert plans[0][1].times == ("m1", "m6")
    with pytest.raises(ConfigError, match="method.outcomes.times: unknown 'm3'"):
        prepare(sim.compose("rct_planning", ["method.outcomes.times=[m3]",
                                             "experiment.grid={experiment.n_per_arm:[20],cohort.effect_mcid:[0.0]}"]))

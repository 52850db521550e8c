"""Statistical properties of the whole pipeline (generate -> match -> test -> summarise), with
fixed seeds and tolerances of 3 Monte Carlo SEs."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import open_dict

from sim.api import compose
from sim.engine import run_chunks
from sim.jobs.psm import PsmJob
from sim.jobs.conditions import conditions
from sim.jobs.performance import summarise

REPS = 600


@pytest.fixture(scope="module")
def null_unconfounded(tmp_path_factory):
    cfg = compose("caliper_sweep", ["cohort.confounding=0.0", "method.outcomes.times=[m6]"])
    with open_dict(cfg):
        cfg.experiment.grid = {}  # one condition: the paper's caliper, the null
    conds = conditions(cfg)
    assert len(conds) == 1
    res = run_chunks(PsmJob.simulate, [PsmJob(cfg).plan(conds[0])], [conds[0].factors],
                     reps=REPS, seed=11, out_dir=tmp_path_factory.mktemp("null"), n_jobs=1, progress=False)
    assert res.failures.empty
    return summarise(res.replicates, ["outcome", "timepoint", "analysis"], truth="truth_att")


@pytest.mark.slow
@pytest.mark.parametrize("analysis", ["wilcoxon", "signed_rank", "paired_t", "diff_means"])
def test_type_one_error_is_nominal_without_confounding(null_unconfounded, analysis):
    rej = null_unconfounded[(null_unconfounded["analysis"] == analysis) & (null_unconfounded["measure"] == "rejection")]
    assert len(rej) == 4  # four outcomes at 6 months
    mcse = np.sqrt(0.05 * 0.95 / rej["n"])  # MCSE at the nominal rate
    assert (np.abs(rej["value"] - 0.05) <= 3 * mcse).all(), rej


@pytest.mark.slow
def test_matched_difference_is_unbiased_and_covers_without_confounding(null_unconfounded):
    s = null_unconfounded[null_unconfounded["analysis"] == "diff_means"].set_index(["outcome", "measure"])
    for outcome in ("barthel", "eq5d", "vas", "face"):
        bias = s.loc[(outcome, "bias")]
        assert abs(bias["value"]) <= 3 * bias["mcse"], (outcome, bias)
        cov = s.loc[(outcome, "coverage")]
        assert abs(cov["value"] - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / cov["n"]), (outcome, cov)

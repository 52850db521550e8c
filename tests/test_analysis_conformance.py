"""Every registered analysis meets the rows' contract (as scikit-learn's estimator checks do): on a
paper-size cohort it gives one row per outcome x visit with the standard fields; an estimate sits
inside its own CI; a p-value is a probability; the patients it says it used exist; a failure is a
NaN with its reason, never an exception; and the same cohort gives the same row. A new analysis
added to any registry is checked here without writing a test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.cohort.calibrate import calibrated
from sim.cohort.design import make_design
from sim.cohort.generate import generate
from sim.jobs.config import ANALYSES
from sim.methods.pipeline import MethodSpec, analyse
from sim.methods.sensitivity import SENSITIVITY_ANALYSES
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES

#: the columns an analysis adds to the standard fields (what it computes when it has no estimate)
OWN = {**SENSITIVITY_ANALYSES, **TRUNCATION_ANALYSES}

PS = ("age", "male", "escc", "frankel_abc", "emergency")
FIELDS = ("estimate", "se", "ci_low", "ci_high", "p_value", "favours", "n_used_treated", "n_used_control", "note")


@pytest.fixture(scope="module")
def cohort(study, cohort_settings):
    model = calibrated(study, cohort_settings)
    c = generate(make_design(model, 263, effect_mcid=1.0), np.random.default_rng(2024))
    return model, c


@pytest.mark.parametrize("name", ANALYSES)
def test_every_registered_analysis_meets_the_rows_contract(cohort, name):
    model, c = cohort
    spec = MethodSpec(ps_covariates=PS, balance_covariates=PS, analyses=(name,)).for_model(model)
    rows = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    again = analyse(c.columns, c.potential_deltas, spec, np.random.default_rng(1), seen=c.seen)
    assert {(r["outcome"], r["timepoint"]) for r in rows} == set(c.potential_deltas)
    n_t = int(np.sum(c.columns["treated"] == 1))
    n_c = len(c.columns["treated"]) - n_t
    for r, r2 in zip(rows, again):
        assert r["analysis"] == name and all(f in r for f in FIELDS), sorted(set(FIELDS) - set(r))
        est, lo, hi, p = r["estimate"], r["ci_low"], r["ci_high"], r["p_value"]
        if np.isfinite(est) and np.isfinite(lo) and np.isfinite(hi):
            assert lo <= est <= hi, (name, lo, est, hi)
        if np.isfinite(p):
            assert 0.0 <= p <= 1.0
        own = [r[c] for c in OWN.get(name, ()) if c in r]
        if not (np.isfinite(est) or np.isfinite(p) or np.isfinite(lo) or any(np.isfinite(own))):
            assert r["note"], f"{name}: nothing computed and no reason given"
        assert 0 <= r["n_used_treated"] <= n_t and 0 <= r["n_used_control"] <= n_c
        assert r["favours"] in (-1.0, 0.0, 1.0) or math.isnan(r["favours"])
        assert all((x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                   for x, y in zip(r.values(), r2.values())), f"{name}: the same cohort gave another row"

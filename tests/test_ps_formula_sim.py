"""method.propensity.formula in the simulations (sim.methods.pipeline.ps_matrix): null is today's
main effects of method.propensity.covariates; the main effects written as a formula give the same
rows to the bit; a formula with a square runs replicate by replicate and batched with the same rows
(the batched path builds each replicate's design by patsy, as the reference does); a bad formula is
a ConfigError naming the key, before any replicate runs."""

from __future__ import annotations

import numpy as np
import pytest

from sim.api import compose
from sim.engine import per_replicate, replicate_rng
from sim.jobs.config import ConfigError
from sim.jobs.conditions import conditions, matched_plan
from sim.jobs.psm import psm_chunk, psm_replicate
from sim.methods import batched
from sim.methods.pipeline import MethodSpec

from tests.test_batched import assert_same_rows

MAIN = "method.propensity.formula='age + male + escc + frankel_abc + emergency'"
SQUARE = "method.propensity.formula='age + I(age**2) + male + escc + frankel_abc + emergency'"


def plan(experiment: str, *overrides: str):
    return matched_plan(conditions(compose(experiment, ["reps=4", *overrides]))[0])


def rngs(n: int):
    return [replicate_rng(20251206, (0,), r) for r in range(n)]


@pytest.mark.parametrize("experiment", ["estimator_comparison", "caliper_sweep"])
def test_main_effects_formula_gives_the_default_rows_to_the_bit(experiment):
    default, formula = plan(experiment), plan(experiment, MAIN)
    assert default[1].ps_formula is None and formula[1].ps_columns == default[1].ps_covariates
    a, b = psm_chunk(default, rngs(6)), psm_chunk(formula, rngs(6))
    assert a.failures == b.failures
    assert a.rows.equals(b.rows)


def test_a_square_runs_per_replicate_and_batched_with_the_same_rows():
    p = plan("caliper_sweep", SQUARE)
    assert batched.unsupported(p[1]) is None  # the batched path covers it
    fast = psm_chunk(p, rngs(8))
    ref = per_replicate(psm_replicate)(p, rngs(8))
    assert fast.failures == ref.failures
    assert_same_rows(fast.rows, ref.rows)
    default = psm_chunk(plan("caliper_sweep"), rngs(8)).rows
    assert not np.allclose(default["n_pairs"], fast.rows["n_pairs"]) or \
        not np.allclose(default["max_abs_smd"], fast.rows["max_abs_smd"])  # the square changes the PS


def test_a_square_reaches_the_weighting_estimators():
    rows = psm_replicate(plan("estimator_comparison", SQUARE), rngs(1)[0])
    base = psm_replicate(plan("estimator_comparison"), rngs(1)[0])
    w = rows["analysis"] == "ipw_att"
    assert np.isfinite(rows.loc[w, "estimate"]).all()
    assert not np.allclose(rows.loc[w, "estimate"], base.loc[w, "estimate"])


@pytest.mark.parametrize("formula, says", [
    ("'age + + '", "cannot be parsed"),
    ("'age ~ male ~ escc'", "more than one"),
    ("'agee + male'", "unknown column 'agee'"),
    ("'age + u'", "unmeasured"),
    ("'np.log(age - 200) + male'", "missing values"),
    ("'log(age) + male'", "not defined"),
])
def test_a_bad_formula_is_a_config_error_naming_the_key(formula, says):
    with pytest.raises(ConfigError, match=r"method\.propensity\.formula") as err:
        plan("caliper_sweep", f"method.propensity.formula={formula}")
    assert says in str(err.value)


def test_the_generator_is_asked_for_the_formula_columns():
    spec = MethodSpec.from_config({**compose("caliper_sweep").method,
                                   "propensity": {"covariates": ["age"], "formula": "bs(sins, df=3) + C(escc)"}})
    assert spec.ps_columns == ("sins", "escc")


def test_a_replicate_whose_formula_fails_is_left_to_the_reference():
    from sim.methods.pipeline import ps_matrices

    spec = MethodSpec(ps_covariates=("age",), ps_formula="np.log(age) + male")
    cols = {"treated": np.array([[1, 0, 1], [0, 1, 0]]), "age": np.array([[60.0, 70, 80], [60, -1, 80]]),
            "male": np.array([[1.0, 0, 1], [0, 0, 1]])}
    X, bad = ps_matrices(cols, spec)
    assert bad == [1] and X.shape == (2, 3, 2)
    assert np.array_equal(X[0], np.column_stack([np.log([60.0, 70, 80]), [1.0, 0, 1]]))
    assert not X[1].any()

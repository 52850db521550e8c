"""sim.cohort: scales, the generator (bounds, missingness, reproducibility, confounding, true effects,
parameter checks) and, marked slow, the full calibration against every published number.

Statistical tolerances are Monte Carlo standard errors computed from the data (z = 3.5 or 4 SEs),
with fixed seeds, so every test is deterministic and each assertion can fail.
"""

from __future__ import annotations

import copy
import re

from pathlib import Path

import numpy as np
import pytest

from sim.cohort.calibrate import calibrate, calibrated
from sim.cohort.checks import calibration_table, failed_required
from sim.cohort.generate import _REFERENCE_N, generate, make_design
from sim.cohort.scales import Continuous, Ordinal, fit_continuous, fit_ordinal, snap
from sim.cohort.skeleton import visit_days
from sim.cohort.study import load_study

FAST_CALIBRATION_N = 20_000
Z = 3.5  # two-sided ~5e-4 per comparison
OUTCOMES = ("barthel", "eq5d", "vas", "face")
TIMES = ("pre", "m1", "m6")  # conf/study/tominaga2025.yaml: visits (baseline, then follow_up)
POST = TIMES[1:]
MCID = {"barthel": 9.25, "eq5d": 0.063, "vas": 15.0, "face": 2.0}
SCALES = {  # lower, upper, step (conf/study/tominaga2025.yaml: outcomes.*.scale)
    "barthel": (0.0, 100.0, 5.0),
    "eq5d": (-0.025, 1.0, 0.001),
    "vas": (0.0, 100.0, 1.0),
    "face": (0.0, 10.0, 1.0),
}


# ------------------------------------------------------------------ helpers
def _on_grid(x: np.ndarray, lower: float, step: float, tol: float = 1e-6) -> bool:
    k = (x - lower) / step
    return bool(np.all(np.abs(k - np.round(k)) < tol))


def _group_diff(cohort, name: str) -> tuple[float, float]:
    """Treated-minus-control difference in means and its SE (unequal variances)."""
    x = cohort.columns[name].astype(float)
    t = cohort.columns["treated"] == 1
    a, b = x[t], x[~t]
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    return float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))


def _sd_se(x: np.ndarray) -> float:
    """Large-sample SE of the sample SD (delta method on the variance)."""
    s2 = x.var()
    m4 = np.mean((x - x.mean()) ** 4)
    return float(np.sqrt(max(m4 - s2**2, 0.0) / x.size) / (2 * np.sqrt(s2)))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(study, cohort_settings):
    """A quickly calibrated model (20 000 reference patients): enough for the generator's mechanics."""
    return calibrate(study, cohort_settings, n=FAST_CALIBRATION_N)


@pytest.fixture(scope="module")
def cohort(model):
    """A mid-sized cohort with a non-null effect, so y1 != y0 and both potential outcomes are exercised."""
    return generate(make_design(model, 20_000, effect_mcid=1.0), np.random.default_rng(20250101))


@pytest.fixture(scope="module")
def null_cohort(model):
    return generate(make_design(model, 100_000, confounding=0.0), np.random.default_rng(2025))


@pytest.fixture(scope="module")
def confounded_cohorts(model):
    return {c: generate(make_design(model, 100_000, confounding=c), np.random.default_rng(4242)) for c in (1.0, 2.0)}


# ------------------------------------------------------------------ scales
def test_snap_bounds_steps_and_anchor():
    x = np.array([-50.0, -0.1, 0.0, 2.4, 2.6, 7.4, 97.6, 100.0, 1e9])
    y = snap(x, 0.0, 100.0, 5.0)
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 5, 5, 100, 100, 100])
    # the grid is anchored at the lower bound, not at 0: 2, 5, 8, 11 on [2, 11] step 3
    np.testing.assert_array_equal(snap(np.array([1.0, 3.4, 3.6, 9.0, 12.0]), 2.0, 11.0, 3.0), [2, 2, 5, 8, 11])
    # a range that is not a whole number of steps never exceeds the upper bound
    assert snap(np.array([10.0]), 0.0, 9.5, 2.0)[0] <= 9.5


@pytest.mark.parametrize("mean, sd, lower, upper, step, lognormal", [
    (52.3, 31.1, 0.0, 100.0, 5.0, False),      # Barthel: floor and ceiling
    (6.7, 1.5, 6.0, 20.0, 1.0, False),         # Charlson: most mass at the floor
    (0.31, 0.26, -0.025, 1.0, 0.001, False),   # EQ-5D-5L: fine step
    (416.3, 388.6, 0.0, 5000.0, 1.0, True),    # blood loss: lognormal
])
def test_fit_continuous_reproduces_mean_and_sd(mean, sd, lower, upper, step, lognormal):
    c = fit_continuous(mean, sd, lower, upper, step, lognormal)
    assert isinstance(c, Continuous) and c.lognormal == lognormal
    x = c(np.random.default_rng(11).standard_normal(400_000))
    assert x.min() >= lower and x.max() <= upper
    assert _on_grid(x, lower, step)
    se_mean = x.std() / np.sqrt(x.size)
    assert abs(x.mean() - mean) < 4 * se_mean, (x.mean(), mean, se_mean)
    assert abs(x.std() - sd) < 4 * _sd_se(x), (x.std(), sd, _sd_se(x))


@pytest.mark.parametrize("order", [None, [2, 0, 3, 1]])
def test_fit_ordinal_reproduces_probabilities_and_order(order):
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    o = fit_ordinal(probs * 7.0, order)  # unnormalised input is normalised
    assert isinstance(o, Ordinal)
    z = np.random.default_rng(5).standard_normal(200_000)
    codes = o(z)
    got = np.bincount(codes, minlength=4) / z.size
    se = np.sqrt(probs * (1 - probs) / z.size)
    assert np.all(np.abs(got - probs) < 4 * se), (got, probs)
    # the lowest latents fall in order[0], the highest in order[-1]
    expected_order = np.arange(4) if order is None else np.asarray(order)
    assert codes[np.argmin(z)] == expected_order[0]
    assert codes[np.argmax(z)] == expected_order[-1]
    # category means of the latent increase along `order`
    means = [z[codes == k].mean() for k in expected_order]
    assert np.all(np.diff(means) > 0)


def test_nominal_values_are_the_row_wise_inverse_cdf_to_the_bit(model):
    """nominal_values (column by column) against the row-wise formula on nominal_probs: the first
    category whose cumulative probability reaches Phi(e), on a million draws with extreme L."""
    from scipy import special

    rng = np.random.default_rng(5)
    L = np.concatenate([rng.standard_normal(1_000_000), [-40.0, -8.0, 0.0, 8.0, 40.0]])
    e = np.concatenate([rng.standard_normal(1_000_000), [-9.0, 9.0, 0.0, -9.0, 9.0]])
    nominal = [c for c in model.others if c.kind == "nominal"]
    assert nominal
    for cov in nominal:
        cum = np.cumsum(cov.nominal_probs(L), axis=1)
        row_wise = np.minimum((special.ndtr(e)[:, None] > cum).sum(axis=1), len(cov.alpha) - 1)
        assert np.array_equal(cov.nominal_values(L, e), row_wise), cov.name


# ------------------------------------------------------------------ bounds and steps
def test_columns_present(cohort):
    cols = cohort.columns
    for name in ("treated", "age", "male", "escc", "frankel", "frankel_abc", "emergency", "ecog", "ecog34",
                 "cancer", "level", "sins", "tomita", "tokuhashi", "charlson", "op_time", "blood_loss",
                 "complication_intraop", "complication_periop", "reoperation", "died", "survival_days"):
        assert name in cols, name
    for o in OUTCOMES:
        for t in TIMES:
            assert f"{o}_{t}" in cols
        for t in POST:
            for suffix in ("", "_y0", "_y1"):
                assert f"{o}_{t}{suffix}" in cols
            assert f"{o}_delta_{t}" in cols
            assert (o, t) in cohort.potential_deltas
    assert all(v.shape == (cohort.n,) for v in cols.values())


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_outcome_bounds_and_steps(cohort, outcome):
    lower, upper, step = SCALES[outcome]
    cols = cohort.columns
    names = [f"{outcome}_{t}" for t in TIMES] + [f"{outcome}_{t}_{y}" for t in POST for y in ("y0", "y1")]
    for name in names:
        x = cols[name]
        x = x[~np.isnan(x)]
        assert x.size > 0.5 * cohort.n, name
        assert x.min() >= lower and x.max() <= upper, (name, x.min(), x.max())
        assert _on_grid(x, lower, step), name
    if outcome in ("vas", "face", "barthel"):  # whole numbers, exactly (Barthel: multiples of 5)
        for name in names:
            x = cols[name][~np.isnan(cols[name])]
            np.testing.assert_array_equal(x, np.round(x))
            if outcome == "barthel":
                np.testing.assert_array_equal(x % 5, 0)
    # deltas are (post - pre) in the improvement direction, so within +-(upper - lower)
    width = upper - lower
    for t in POST:
        d = cols[f"{outcome}_delta_{t}"]
        d = d[~np.isnan(d)]
        assert np.all(np.abs(d) <= width + 1e-9)


def test_eq5d_has_a_point_mass_at_full_health(cohort):
    """EQ-5D-5L: a ceiling at 1 (full health) carries a visible share of patients after surgery."""
    x = cohort.columns["eq5d_m6"]
    x = x[~np.isnan(x)]
    at_one = np.isclose(x, 1.0, rtol=0, atol=1e-9)
    assert at_one.mean() > 0.01
    # a point mass: far more patients exactly at the ceiling than at the neighbouring grid point
    below = np.isclose(x, 0.999, rtol=0, atol=1e-9)
    assert at_one.sum() > 10 * max(below.sum(), 1)


def test_eq5d_full_health_is_exactly_one(cohort):
    assert snap(np.array([1.0]), -0.025, 1.0, 0.001)[0] == 1.0
    x = cohort.columns["eq5d_m6"]
    assert np.any(x == 1.0)


def test_covariate_bounds_and_codes(cohort):
    c = cohort.columns
    assert set(np.unique(c["treated"])) <= {0, 1}
    assert c["age"].min() >= 20 and c["age"].max() <= 100
    np.testing.assert_array_equal(c["age"], np.round(c["age"]))
    assert set(np.unique(c["escc"])) == {0, 1, 2, 3}
    assert set(np.unique(c["frankel"])) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(c["frankel_abc"], np.isin(c["frankel"], [0, 1, 2]).astype(int))
    assert set(np.unique(c["ecog"])) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(c["ecog34"], (c["ecog"] >= 3).astype(int))
    assert set(np.unique(c["cancer"])) == {0, 1, 2, 3, 4}
    assert set(np.unique(c["level"])) == {0, 1, 2}
    for name in ("male", "emergency", "died", "complication_intraop", "complication_periop", "reoperation",
                 "pre_chemo", "post_chemo", "pre_opioid", "post_opioid"):
        assert set(np.unique(c[name])) <= {0, 1}, name
    for name, (lo, hi) in {"sins": (0, 18), "tomita": (2, 10), "tokuhashi": (0, 15), "charlson": (6, 20)}.items():
        assert c[name].min() >= lo and c[name].max() <= hi, name
        np.testing.assert_array_equal(c[name], np.round(c[name]))
    assert np.all((c["ps_true"] > 0) & (c["ps_true"] < 1))
    assert np.all(c["survival_days"] >= 0)


def test_nan_only_at_post_op_visits_not_seen(cohort, model):
    c = cohort.columns
    with_nan = {k for k, v in c.items() if np.issubdtype(v.dtype, np.floating) and np.isnan(v).any()}
    post_cols = {f"{o}_{t}{s}" for o in OUTCOMES for t in POST for s in ("", "_y0", "_y1")} | \
                {f"{o}_delta_{t}" for o in OUTCOMES for t in POST}
    assert with_nan, "someone should die before 6 months in 20 000 patients"
    assert with_nan <= post_cols, sorted(with_nan - post_cols)
    for o in OUTCOMES:
        assert not np.isnan(c[f"{o}_pre"]).any()
    died, days = c["died"] == 1, c["survival_days"]
    visit = model.visit_days
    for t in POST:
        missing = np.isnan(c[f"barthel_{t}"])
        dead = c[f"dead_{t}"] == 1
        # not seen = dead before the visit, or alive and missed it (both happen)
        np.testing.assert_array_equal(missing, c[f"seen_{t}"] == 0)
        assert dead.any() and (missing & ~dead).any()
        assert np.all(missing[dead])
        # every outcome column of the visit shares the same missingness: not item non-response
        for o in OUTCOMES:
            np.testing.assert_array_equal(np.isnan(c[f"{o}_{t}"]), missing)
            np.testing.assert_array_equal(np.isnan(c[f"{o}_delta_{t}"]), missing)
            # potential outcomes exist for the living (no treatment effect on survival here)
            for s in ("_y0", "_y1"):
                np.testing.assert_array_equal(np.isnan(c[f"{o}_{t}{s}"]), dead)
            d0, d1 = cohort.potential_deltas[(o, t)]
            np.testing.assert_array_equal(np.isnan(d0), dead)
            np.testing.assert_array_equal(np.isnan(d1), dead)
        # dead <=> died before the visit (survival_days is the death day rounded to whole days)
        assert np.all(died[dead]) and np.all(days[dead] <= visit[t])
        assert np.all(~died[~dead] | (days[~dead] >= visit[t]))
    # a patient dead at 1 month is dead at 6 months too
    assert np.all((c["dead_m6"] == 1)[c["dead_m1"] == 1])


def test_observed_columns_follow_treatment_and_potential_outcomes(cohort):
    c = cohort.columns
    t = c["treated"] == 1
    for o in OUTCOMES:
        direction = -1.0 if o in ("vas", "face") else 1.0
        for time in POST:
            seen = c[f"seen_{time}"] == 1
            np.testing.assert_array_equal(c[f"{o}_{time}"],
                                          np.where(seen, np.where(t, c[f"{o}_{time}_y1"], c[f"{o}_{time}_y0"]), np.nan))
            d0, d1 = cohort.potential_deltas[(o, time)]
            np.testing.assert_allclose(d0, (c[f"{o}_{time}_y0"] - c[f"{o}_pre"]) * direction)
            np.testing.assert_allclose(d1, (c[f"{o}_{time}_y1"] - c[f"{o}_pre"]) * direction)
            np.testing.assert_array_equal(c[f"{o}_delta_{time}"], np.where(seen, np.where(t, d1, d0), np.nan))


# ------------------------------------------------------------------ reproducibility
def _assert_same(a, b):
    assert a.columns.keys() == b.columns.keys()
    for k in a.columns:
        assert a.columns[k].dtype == b.columns[k].dtype, k
        assert np.array_equal(a.columns[k], b.columns[k], equal_nan=True), k
    assert a.potential_deltas.keys() == b.potential_deltas.keys()
    for k in a.potential_deltas:
        for x, y in zip(a.potential_deltas[k], b.potential_deltas[k]):
            assert np.array_equal(x, y, equal_nan=True), k


def test_same_seed_same_cohort(model):
    design = make_design(model, 2_000, effect_mcid=0.5)
    _assert_same(generate(design, np.random.default_rng(99)), generate(design, np.random.default_rng(99)))
    # a design solved twice is the same design (its solves use a fixed reference sample)
    _assert_same(generate(design, np.random.default_rng(99)),
                 generate(make_design(model, 2_000, effect_mcid=0.5), np.random.default_rng(99)))


def test_different_seeds_differ(model):
    design = make_design(model, 2_000, effect_mcid=0.5)
    a, b = generate(design, np.random.default_rng(1)), generate(design, np.random.default_rng(2))
    same = [k for k in a.columns if np.array_equal(a.columns[k], b.columns[k], equal_nan=True)]
    assert same == []


# ------------------------------------------------------------------ confounding
NULL_COLUMNS = ["age", "male", "escc", "frankel_abc", "emergency",          # the paper's PS covariates
                "frankel", "ecog34", "sins", "charlson", "pre_opioid", "cancer", "level",
                "barthel_pre", "eq5d_pre", "vas_pre", "face_pre", "died", "survival_days"]


@pytest.mark.parametrize("name", NULL_COLUMNS)
def test_no_confounding_means_no_association(null_cohort, name):
    d, se = _group_diff(null_cohort, name)
    assert abs(d) < Z * se, f"{name}: treated - control = {d:.4g} ({d / se:.2f} SE)"


def test_no_confounding_keeps_the_treated_share(null_cohort, study):
    p = study.treated_share
    share = null_cohort.columns["treated"].mean()
    assert abs(share - p) < 3 * np.sqrt(p * (1 - p) / null_cohort.n)
    # at confounding 0 the true PS is the same for everyone
    np.testing.assert_allclose(null_cohort.columns["ps_true"], p, rtol=1e-9)


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_confounding_keeps_the_treated_share(confounded_cohorts, study, strength):
    """The intercept is solved on a reference sample of _REFERENCE_N; allow both samples' noise."""
    p = study.treated_share
    c = confounded_cohorts[strength]
    assert abs(c.columns["treated"].mean() - p) < 3 * np.sqrt(p * (1 - p) * (1 / c.n + 1 / _REFERENCE_N))


def test_published_confounding_is_strong(confounded_cohorts):
    c = confounded_cohorts[1.0]
    d, se = _group_diff(c, "escc")
    assert d > 20 * se, (d, se)  # ESCC OR 2.9 per grade: the treated have much worse compression
    for name, sign in (("frankel_abc", 1), ("emergency", 1), ("frankel", -1), ("barthel_pre", -1)):
        d, se = _group_diff(c, name)
        assert sign * d > Z * se, (name, d, se)


def test_stronger_confounding_widens_the_group_difference(confounded_cohorts):
    for name, sign in (("escc", 1), ("frankel_abc", 1), ("emergency", 1)):
        d1, se1 = _group_diff(confounded_cohorts[1.0], name)
        d2, se2 = _group_diff(confounded_cohorts[2.0], name)
        assert sign * (d2 - d1) > Z * np.hypot(se1, se2), (name, d1, d2)


# ------------------------------------------------------------------ true effects
def test_null_effect_potential_outcomes_are_equal(model):
    c = generate(make_design(model, 5_000, effect_mcid=0.0), np.random.default_rng(3))
    for (o, t), (d0, d1) in c.potential_deltas.items():
        assert np.array_equal(d0, d1, equal_nan=True), (o, t)
        assert np.array_equal(c.columns[f"{o}_{t}_y0"], c.columns[f"{o}_{t}_y1"], equal_nan=True)
    assert all(v == 0.0 for v in c.true_effects().values())
    assert set(c.true_effects()) == {(o, t) for o in OUTCOMES for t in POST}


def _assert_ate(cohort, key, target, z=4.0):
    d0, d1 = cohort.potential_deltas[key]
    diff = (d1 - d0)[~np.isnan(d1)]
    ate = cohort.true_effects()[key]
    assert ate == pytest.approx(diff.mean())
    # the design's latent shift is solved on _REFERENCE_N patients (same survival share): its error adds
    se = diff.std(ddof=1) * np.sqrt(1 / diff.size + 1 / (_REFERENCE_N * diff.size / cohort.n))
    assert abs(ate - target) < z * se, f"{key}: ATE {ate:.5g} vs {target} (SE {se:.2g})"


def test_effect_mcid_one_gives_an_ate_of_one_mcid(model):
    design = make_design(model, 200_000, effect_mcid=1.0)
    assert dict(design.effect) == {(o, t): MCID[o] for o in OUTCOMES for t in POST}
    c = generate(design, np.random.default_rng(77))
    for o in OUTCOMES:
        for t in POST:
            _assert_ate(c, (o, t), MCID[o])
            # the effect is an improvement for (almost) everyone, never a worsening
            d0, d1 = c.potential_deltas[(o, t)]
            ok = ~np.isnan(d0)
            assert np.all(d1[ok] - d0[ok] >= -1e-12), (o, t)


def test_explicit_effect_changes_only_its_outcome_and_time(model):
    design = make_design(model, 200_000, effect={"barthel": {"m6": 5}})
    assert design.effect[("barthel", "m6")] == 5.0
    assert all(v == 0.0 for k, v in design.effect.items() if k != ("barthel", "m6"))
    c = generate(design, np.random.default_rng(78))
    for key, (d0, d1) in c.potential_deltas.items():
        if key == ("barthel", "m6"):
            assert not np.array_equal(d0, d1, equal_nan=True)
        else:
            assert np.array_equal(d0, d1, equal_nan=True), key
    _assert_ate(c, ("barthel", "m6"), 5.0)
    # the ATT is a true effect too (a mask), and both are finite
    att = c.true_effects(c.columns["treated"] == 1)[("barthel", "m6")]
    assert np.isfinite(att) and att > 0


def test_explicit_effect_adds_to_effect_mcid(model):
    design = make_design(model, 100, effect_mcid=1.0, effect={"vas": {"m1": -3.0}})
    assert design.effect[("vas", "m1")] == pytest.approx(15.0 - 3.0)
    assert design.effect[("vas", "m6")] == pytest.approx(15.0)


# ------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("kwargs, param", [
    (dict(n=1), "cohort.n"),
    (dict(n=0), "cohort.n"),
    (dict(n=-5), "cohort.n"),
    (dict(n=100.5), "cohort.n"),
    (dict(n=100, confounding=-0.1), "cohort.confounding"),
    (dict(n=100, confounding=float("nan")), "cohort.confounding"),
    (dict(n=100, confounding=float("inf")), "cohort.confounding"),
    (dict(n=100, effect={"pain": {"m6": 1.0}}), "cohort.effect"),
    (dict(n=100, effect={"barthel": {"m3": 1.0}}), "cohort.effect.barthel.m3"),
    (dict(n=100, effect={"barthel": {"pre": 1.0}}), "cohort.effect.barthel.pre"),
    (dict(n=100, effect={"barthel": 5.0}), "cohort.effect.barthel"),
    (dict(n=100, effect={"face": {"m1": 11.0}}), "cohort.effect"),
    (dict(n=100, heterogeneity=float("inf")), "cohort.effect_heterogeneity"),
], ids=["n=1", "n=0", "n<0", "n_fractional", "confounding<0", "confounding_nan", "confounding_inf",
        "unknown_outcome", "unknown_time", "pre_time", "effect_not_mapping", "effect_beyond_scale",
        "heterogeneity_inf"])
def test_make_design_rejects_bad_parameters(model, kwargs, param):
    with pytest.raises(ValueError) as info:
        make_design(model, **kwargs)
    assert param in str(info.value), str(info.value)


def test_unknown_outcome_message_lists_the_allowed_ones(model):
    with pytest.raises(ValueError, match="'pain'") as info:
        make_design(model, 100, effect={"pain": {"m6": 1.0}})
    for o in OUTCOMES:
        assert o in str(info.value)


@pytest.mark.parametrize("n", [float("inf"), float("nan")])
def test_make_design_rejects_non_finite_n_naming_it(model, n):
    with pytest.raises(ValueError, match="cohort.n"):
        make_design(model, n)


# ------------------------------------------------------------------ visits come from the study
SMALL_CALIBRATION_N = 5_000  # the mechanics only: a calibration at this size takes about a second
TABLES = ("fig1", "fig2", "table2", "table5")


def _rename_visits(raw: dict, names: dict[str, str]) -> dict:
    """The study file with its visits renamed everywhere they appear (same numbers)."""
    raw = copy.deepcopy(raw)
    v = raw["visits"]
    v["baseline"] = names[v["baseline"]]
    v["follow_up"] = [names[t] for t in v["follow_up"]]
    v["days"] = {names[t]: d for t, d in v["days"].items()}
    v["labels"] = {names[t]: x for t, x in (v.get("labels") or {}).items()}
    for out in raw["outcomes"].values():
        for table in TABLES:
            for key, block in out[table].items():
                if isinstance(block, dict):
                    out[table][key] = {names.get(t, t): x for t, x in block.items()}
    return raw


def _add_follow_up(raw: dict, name: str, day: float, like: str) -> dict:
    """The study file with one more follow-up visit, its published numbers copied from `like`."""
    raw = copy.deepcopy(raw)
    raw["visits"]["follow_up"].append(name)
    raw["visits"]["days"][name] = day
    for out in raw["outcomes"].values():
        for table in TABLES:
            for block in out[table].values():
                if isinstance(block, dict) and like in block:
                    block[name] = copy.deepcopy(block[like])
    return raw


def _drop_follow_up(raw: dict, name: str) -> dict:
    raw = copy.deepcopy(raw)
    raw["visits"]["follow_up"].remove(name)
    del raw["visits"]["days"][name]
    (raw["visits"].get("labels") or {}).pop(name, None)
    for out in raw["outcomes"].values():
        for table in TABLES:
            for block in out[table].values():
                if isinstance(block, dict):
                    block.pop(name, None)
    return raw


def _with_missed(settings, missed):
    """Cohort settings whose missed-visit shares fit another study's visits."""
    return {**settings, "attrition": {**settings["attrition"], "missed_visit": missed}}


def test_visit_names_come_from_the_study(study, study_raw, cohort_settings):
    """Renaming the study's visits renames every column, effect key and calibration row, and
    changes no number: nothing in the generator knows the names pre/m1/m6."""
    names = {"pre": "base", "m1": "w4", "m6": "w26"}
    other = load_study(_rename_visits(study_raw, names))
    a = calibrate(study, cohort_settings, n=SMALL_CALIBRATION_N)
    missed = {names[t]: x for t, x in cohort_settings["attrition"]["missed_visit"].items()}
    b = calibrate(other, _with_missed(cohort_settings, missed), n=SMALL_CALIBRATION_N)
    assert (a.baseline, a.follow_up, a.times) == ("pre", ("m1", "m6"), ("pre", "m1", "m6"))
    assert (b.baseline, b.follow_up, dict(b.visit_days)) == ("base", ("w4", "w26"), {"w4": 30.0, "w26": 182.0})
    for oa, ob in zip(a.outcomes, b.outcomes):
        for field in ("loc", "scale", "loading", "rho"):
            assert {names[t]: x for t, x in getattr(oa, field).items()} == dict(getattr(ob, field)), (oa.name, field)
    ca = generate(make_design(a, 3_000, effect={"barthel": {"m6": 5.0}}), np.random.default_rng(7))
    cb = generate(make_design(b, 3_000, effect={"barthel": {"w26": 5.0}}), np.random.default_rng(7))
    pattern = re.compile(rf"^({'|'.join(OUTCOMES)}|seen|dead)_(delta_)?(pre|m1|m6)(_y[01])?$")

    def rename(col: str) -> str:
        m = pattern.match(col)
        return f"{m[1]}_{m[2] or ''}{names[m[3]]}{m[4] or ''}" if m else col

    assert [rename(k) for k in ca.columns] == list(cb.columns)
    for k, x in ca.columns.items():
        np.testing.assert_array_equal(x, cb.columns[rename(k)], err_msg=k)
    assert [(o, names[t]) for o, t in ca.potential_deltas] == list(cb.potential_deltas)
    # the calibration report follows the names too
    ta, tb = calibration_table(study, a, ca), calibration_table(other, b, cb)
    words = re.compile(r"\b(pre|m1|m6)\b")
    assert [words.sub(lambda m: names[m[1]], q) for q in ta["quantity"]] == list(tb["quantity"])
    np.testing.assert_array_equal(ta["synthetic"], tb["synthetic"])
    # and the old names are unknown to the renamed model
    with pytest.raises(ValueError, match=re.escape("cohort.effect.barthel.m6: unknown time; allowed: ['w4', 'w26']")):
        make_design(b, 100, effect={"barthel": {"m6": 1.0}})
    with pytest.raises(ValueError, match=re.escape("cohort.unmeasured.outcome_effect.vas.m1: unknown time")):
        make_design(b, 100, unmeasured={"kind": "binary", "outcome_effect": {"vas": {"m1": 0.2}}})


def test_a_third_follow_up_visit(study_raw, cohort_settings):
    """A study with three follow-ups (12 months, numbers copied from 6 months): every outcome is
    generated and calibrated at each visit, missing after death before its day, and censoring
    starts after the last visit."""
    study = load_study(_add_follow_up(study_raw, "m12", 365, like="m6"))
    model = calibrate(study, _with_missed(cohort_settings, {"m1": 0.05, "m6": 0.1, "m12": 0.1}), n=SMALL_CALIBRATION_N)
    assert model.follow_up == ("m1", "m6", "m12") and model.visit_days["m12"] == 365.0
    assert model.survival.cens_lo >= 365.0
    assert all(set(o.rho) == {"m1", "m6", "m12"} for o in model.outcomes)
    design = make_design(model, 20_000, effect={"vas": {"m12": -5.0}},
                         unmeasured={"kind": "binary", "outcome_effect": {"vas": {"m12": 0.2}}})
    c = generate(design, np.random.default_rng(11))
    cols = c.columns
    died, days = cols["died"] == 1, cols["survival_days"]
    dead = cols["dead_m12"] == 1
    assert np.all(died[dead]) and np.all(days[dead] <= 365)
    assert np.all(~died[~dead] | (days[~dead] >= 365))
    assert np.all(dead[cols["dead_m6"] == 1])  # dead at 6 months: dead at 12 too
    for o in OUTCOMES:
        missing = np.isnan(cols[f"{o}_m12"])
        assert np.array_equal(missing, cols["seen_m12"] == 0) and np.all(missing[dead])
        assert np.array_equal(np.isnan(cols[f"{o}_delta_m12"]), missing)
    assert set(c.true_effects()) == {(o, t) for o in OUTCOMES for t in ("m1", "m6", "m12")}
    assert c.true_effects()[("vas", "m12")] < 0 and c.true_effects()[("vas", "m6")] == 0.0
    # the 12-month targets (Fig. 1 means and SDs, Table 2 SDs) are calibrated like the others: close
    # to them (the uncalibrated skeleton, latent N(0, 1), is nowhere near), if not within the
    # acceptance rules at this small calibration size
    null = generate(make_design(model, 20_000), np.random.default_rng(12))
    table = calibration_table(study, model, null)
    rows = table[table["quantity"].str.contains(r"\bm12\b") & table["required"]]
    assert len(rows) == len(OUTCOMES) * 2 * 4  # outcome x group x (mean, SD, delta mean, delta SD)
    assert (rows["error"].abs() < 0.25).all(), rows[["quantity", "group", "target", "synthetic", "error"]]


def test_a_single_follow_up_visit(study_raw, cohort_settings):
    study = load_study(_drop_follow_up(study_raw, "m6"))
    model = calibrate(study, _with_missed(cohort_settings, 0.05), n=SMALL_CALIBRATION_N)
    assert model.times == ("pre", "m1")
    c = generate(make_design(model, 2_000, effect_mcid=1.0), np.random.default_rng(3))
    assert not any(k.endswith("m6") or "_m6_" in k for k in c.columns)
    assert set(c.potential_deltas) == {(o, "m1") for o in OUTCOMES}


def test_cohort_visit_days_moves_the_studys_visits(study, cohort_settings):
    """`cohort.visit_days` null: the study's days (the default); a mapping: other days, same visits."""
    assert visit_days(study, cohort_settings) == {"m1": 30.0, "m6": 182.0} == study.visit_days
    assert visit_days(study, {}) == study.visit_days
    assert visit_days(study, {"visit_days": {"m6": 180, "m1": 28}}) == {"m1": 28.0, "m6": 180.0}


@pytest.mark.parametrize("days, key", [
    ([30, 182], "cohort.visit_days:"),
    ({"m1": 30}, "cohort.visit_days.m6:"),
    ({"m1": 30, "m6": 182, "m12": 365}, "cohort.visit_days.m12:"),
    ({"m1": 30, "m6": 20}, "cohort.visit_days.m6:"),
    ({"m1": "30", "m6": 182}, "cohort.visit_days.m1:"),
    ({"m1": 0, "m6": 182}, "cohort.visit_days.m1:"),
])
def test_bad_cohort_visit_days_name_the_key(study, days, key):
    with pytest.raises(ValueError) as info:
        visit_days(study, {"visit_days": days})
    assert str(info.value).startswith(key), str(info.value)


# ------------------------------------------------------------------ calibration (slow)
@pytest.fixture(scope="module")
def full_calibration(study, cohort_settings):
    """The default settings' calibrated model (200 000 reference patients: the shipped snapshot,
    tests/test_snapshot.py checks it against a fresh calibration), and an independent cohort of
    200 000 from a fixed seed."""
    model = calibrated(study, cohort_settings)
    c = generate(make_design(model, 200_000), np.random.default_rng(20250730))
    return model, c, calibration_table(study, model, c)


@pytest.mark.slow
def test_calibration_reproduces_the_published_numbers(study, full_calibration):
    model, cohort, table = full_calibration
    failed = failed_required(table)
    assert failed.empty, "\n" + failed[["source", "quantity", "group", "target", "synthetic", "tolerance"]].to_string()

    quantities = set(table["quantity"])

    def has(name):
        return any(q == name or q.startswith(name + " ") for q in quantities)

    # Table 1: every covariate, surgical result and survival variable, by group
    raw = study.raw
    variables = [k for s in ("covariates", "surgery", "survival") for k, v in raw[s].items() if isinstance(v, dict)]
    assert {"age", "escc", "op_time", "died", "survival_days"} <= set(variables)
    missing = [v for v in variables if not has(v)]
    assert missing == [], missing
    for v in variables:
        rows = table[table["quantity"].map(lambda q, v=v: q == v or q.startswith(v + " "))]
        assert set(rows["group"]) == {"total", "treated", "control"}, v
        assert rows["required"].all(), v
    for v in variables:
        var = study.variable(v)
        if var["kind"] == "categorical":
            for cat in var["categories"]:
                assert f"{v} = {cat}" in quantities
        elif var["kind"] == "continuous":
            assert {f"{v} mean", f"{v} SD"} <= quantities
    assert "treated share" in quantities
    # Table 3: every odds ratio of the paper's PS model
    for c in raw["propensity_model"]["covariates"]:
        assert f"odds ratio {c}" in quantities, c
    # Fig. 1: every outcome x time, mean and SD, both groups, all required
    for o in raw["outcomes"]:
        for t in TIMES:
            for stat in ("mean", "SD"):
                rows = table[table["quantity"] == f"{o} {t} {stat}"]
                assert set(rows["group"]) == {"treated", "control"}, (o, t, stat)
                assert rows["required"].all() and rows["ok"].all(), (o, t, stat)
    # Table 2: the changes' means and SDs, required with Fig. 1 (they are the completers')
    for o in raw["outcomes"]:
        for t in TIMES[1:]:
            for stat in ("mean", "SD"):
                rows = table[table["quantity"] == f"{o} delta {t} {stat}"]
                assert set(rows["group"]) == {"treated", "control"}, (o, t, stat)
                assert rows["required"].all() and rows["ok"].all(), (o, t, stat)
    assert table["required"].all()
    # the README states the number of required targets: it is this table's
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"Of the {int(table['required'].sum())} required targets" in readme

"""The unmeasured confounder U (`cohort.unmeasured`, sim.cohort.unmeasured): no U changes nothing;
U keeps the treated share, has the requested log-OR on treatment, the requested effect on the change
(in SDs of the change, on the bounded observed scale), the requested correlation with the core
index, leaves the true treatment effects alone, and masks a benefit the way the settings imply.
Bad settings fail up front with the full key.

Tolerances are Monte Carlo SEs from the data (z = 4), fixed seeds; each assertion can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import optimize, special, stats

from sim.cohort import unmeasured as U
from sim.cohort.generate import _REFERENCE_N, generate, make_design
from sim.cohort.unmeasured import check_unmeasured

Z = 4.0
OUTCOMES = ("barthel", "eq5d", "vas", "face")
POST = ("m1", "m6")  # conf/study/tominaga2025.yaml: visits.follow_up
KEYS = [(o, t) for o in OUTCOMES for t in POST]
P_TREATED = 189 / 263
N_BIG = 200_000
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers
def _assert_same(a, b, skip=()):
    assert a.columns.keys() == b.columns.keys()
    for k in a.columns:
        if k in skip:
            continue
        assert a.columns[k].dtype == b.columns[k].dtype, k
        assert np.array_equal(a.columns[k], b.columns[k], equal_nan=True), k
    assert a.potential_deltas.keys() == b.potential_deltas.keys()
    for k in a.potential_deltas:
        for x, y in zip(a.potential_deltas[k], b.potential_deltas[k]):
            assert np.array_equal(x, y, equal_nan=True), k


def _sd_se(x: np.ndarray) -> float:
    s2 = x.var()
    m4 = np.mean((x - x.mean()) ** 4)
    return float(np.sqrt(max(m4 - s2**2, 0.0) / x.size) / (2 * np.sqrt(s2)))


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its SE."""
    res = stats.linregress(x, y)
    return float(res.slope), float(res.stderr)


def _alive_d0(cohort, key):
    d0 = cohort.potential_deltas[key][0]
    return ~np.isnan(d0), d0


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model(fast_model):
    """The session's quickly calibrated model (conftest: 20 000 reference patients)."""
    return fast_model


@pytest.fixture(scope="module")
def none_big(model):
    """No U, seed 606: the reference SDs of the change (the same patients as the U cohorts below)."""
    return generate(make_design(model, N_BIG, confounding=1.0), np.random.default_rng(606))


OUTCOME_EFFECT = {"barthel": {"m1": -0.5, "m6": 0.3}, "eq5d": -0.4, "vas": 0.6, "face": {"m6": -0.8}}


def _expected_outcome_effect(key):
    o, t = key
    v = OUTCOME_EFFECT.get(o, 0.0)
    return float(v.get(t, 0.0)) if isinstance(v, dict) else float(v)


# ------------------------------------------------------------------ kind none changes nothing
@pytest.mark.parametrize("settings", [
    None, {}, {"kind": "none"}, "yaml",
    {"kind": "none", "treatment_log_or": 2.0, "outcome_effect": -1.0, "corr_core": 0.5, "prevalence": 0.1},
], ids=["None", "empty", "kind_none", "yaml_default", "none_ignores_the_rest"])
def test_kind_none_is_bit_identical(model, cohort_settings, settings):
    if settings == "yaml":
        settings = cohort_settings["unmeasured"]
    kw = dict(confounding=1.0, effect_mcid=0.5, heterogeneity=0.5)
    plain = make_design(model, 5_000, **kw)
    with_u = make_design(model, 5_000, **kw, unmeasured=settings)
    assert with_u.unmeasured is None
    assert with_u.intercept == plain.intercept and dict(with_u.latent_shift) == dict(plain.latent_shift)
    a, b = generate(plain, np.random.default_rng(31)), generate(with_u, np.random.default_rng(31))
    _assert_same(a, b)
    assert U.U_COLUMN not in b.columns


@pytest.mark.parametrize("kind", ["binary", "normal"])
def test_u_is_drawn_after_everything_else(model, kind):
    """With U present but without any effect, every pre-existing column is as without U (same seed):
    U's draws come last. ps_true only differs by the re-solved intercept's rounding."""
    plain = make_design(model, 20_000, effect_mcid=0.5)
    with_u = make_design(model, 20_000, effect_mcid=0.5, unmeasured={"kind": kind, "corr_core": 0.4})
    a, b = generate(plain, np.random.default_rng(32)), generate(with_u, np.random.default_rng(32))
    assert set(b.columns) == set(a.columns) | {U.U_COLUMN}
    b.columns.pop(U.U_COLUMN)
    _assert_same(a, b, skip=("ps_true",))
    np.testing.assert_allclose(a.columns["ps_true"], b.columns["ps_true"], rtol=1e-9)


def test_default_block_in_the_cohort_settings(cohort_settings):
    block = cohort_settings["unmeasured"]
    assert tuple(block) == U.KEYS
    assert block == dict(U.DEFAULTS) and block["kind"] == "none"
    check_unmeasured(block)


# ------------------------------------------------------------------ treatment
@pytest.mark.parametrize("kind", ["binary", "normal"])
@pytest.mark.parametrize("log_or", [0.0, 1.0, 2.0, -2.0])
def test_treated_share_is_kept(model, kind, log_or):
    d = make_design(model, 100_000, unmeasured={"kind": kind, "prevalence": 0.3, "corr_core": 0.3,
                                                "treatment_log_or": log_or})
    c = generate(d, np.random.default_rng(707))
    share = c.columns["treated"].mean()
    assert abs(share - P_TREATED) < Z * np.sqrt(P_TREATED * (1 - P_TREATED) * (1 / c.n + 1 / _REFERENCE_N)), share


@pytest.mark.parametrize("kind", ["binary", "normal"])
@pytest.mark.parametrize("log_or", [-30.0, 30.0])
def test_treated_share_is_kept_for_extreme_log_or(model, kind, log_or):
    """Any finite log-OR: the intercept's bracket adapts (a fixed [-30, 30] would fail here)."""
    c = generate(make_design(model, 100_000, unmeasured={"kind": kind, "treatment_log_or": log_or}),
                 np.random.default_rng(708))
    share = c.columns["treated"].mean()
    assert abs(share - P_TREATED) < Z * np.sqrt(P_TREATED * (1 - P_TREATED) * (1 / c.n + 1 / _REFERENCE_N)), share


@pytest.mark.parametrize("kind", ["binary", "normal"])
@pytest.mark.parametrize("confounding, log_or", [(0.0, 1.0), (1.0, 1.0), (1.0, -0.7), (2.0, 0.5)])
def test_treatment_log_or_of_u_is_recovered(model, kind, confounding, log_or):
    """Logit of treated on (true covariate linear predictor, u): slopes 1 and treatment_log_or (U
    correlated with the covariates, so leaving the covariates out would bias it)."""
    import statsmodels.api as sm

    d = make_design(model, 100_000, confounding=confounding,
                    unmeasured={"kind": kind, "prevalence": 0.4, "corr_core": 0.4, "treatment_log_or": log_or})
    c = generate(d, np.random.default_rng(808))
    u = c.columns[U.U_COLUMN].astype(float)
    cols = [np.ones(c.n), u]
    if confounding:
        cols.append(model.linear_predictor(c.columns, confounding))
    fit = sm.Logit(c.columns["treated"].astype(float), np.column_stack(cols)).fit(disp=0)
    assert abs(fit.params[1] - log_or) < Z * fit.bse[1], (fit.params[1], log_or, fit.bse[1])
    if confounding:
        assert abs(fit.params[2] - 1.0) < Z * fit.bse[2], (fit.params[2], fit.bse[2])
    # the recorded true PS is the model's: intercept + confounding * lp + log_or * u
    lp = model.linear_predictor(c.columns, confounding)
    np.testing.assert_allclose(c.columns["ps_true"], special.expit(d.intercept + lp + log_or * u), rtol=1e-10)


# ------------------------------------------------------------------ U's latent and values
@pytest.mark.parametrize("kind", ["binary", "normal"])
@pytest.mark.parametrize("corr", [-0.6, 0.0, 0.5])
def test_corr_core_and_margins(model, kind, corr):
    n, seed, p = 100_000, 909, 0.3
    d = make_design(model, n, unmeasured={"kind": kind, "prevalence": p, "corr_core": corr})
    c = generate(d, np.random.default_rng(seed))
    _, L = model.core_latent(model.draw(n, np.random.default_rng(seed)))  # same first draws
    u = c.columns[U.U_COLUMN]
    if kind == "normal":
        assert u.dtype == np.float64
        assert abs(u.mean()) < Z / np.sqrt(n) and abs(u.std() - 1) < Z * _sd_se(u)
        r = np.corrcoef(u, L)[0, 1]
        assert abs(r - corr) < Z * (1 - corr**2) / np.sqrt(n), (r, corr)
    else:
        assert u.dtype == np.int8 and set(np.unique(u)) == {0, 1}
        assert abs(u.mean() - p) < Z * np.sqrt(p * (1 - p) / n)
        # binary U thresholds a latent with corr(., L) = corr: cov(u, L) = corr * phi(tau)
        prod = (u - u.mean()) * (L - L.mean())
        expected = corr * stats.norm.pdf(stats.norm.ppf(1 - p))
        assert abs(prod.mean() - expected) < Z * prod.std() / np.sqrt(n), (prod.mean(), expected)


# ------------------------------------------------------------------ outcome effect
@pytest.mark.parametrize("kind", ["binary", "normal"])
def test_outcome_effect_in_sds_of_the_change(model, none_big, kind):
    """Per outcome and time (floors and ceilings included): binary, mean change under control U=1 minus
    U=0; normal, its slope per SD of U; = outcome_effect x SD of the change without U."""
    d = make_design(model, N_BIG, confounding=1.0,
                    unmeasured={"kind": kind, "prevalence": 0.3, "corr_core": 0.0, "treatment_log_or": 1.0,
                                "outcome_effect": OUTCOME_EFFECT})
    c = generate(d, np.random.default_rng(606))  # same patients as none_big
    u = c.columns[U.U_COLUMN]
    inflate = np.sqrt(1 + N_BIG / _REFERENCE_N)  # the design's solve on the reference sample adds its noise
    bad = []
    for key in KEYS:
        oe = _expected_outcome_effect(key)
        alive, d0 = _alive_d0(c, key)
        _, d0_none = _alive_d0(none_big, key)
        sd = d0_none[alive].std()
        if oe == 0.0:  # no effect: the control outcome is exactly the one without U
            np.testing.assert_array_equal(d0, d0_none)
            continue
        if kind == "binary":
            a, b = d0[alive & (u == 1)], d0[alive & (u == 0)]
            got, se = a.mean() - b.mean(), np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        else:
            got, se = _slope(u[alive], d0[alive])
        se_all = inflate * np.hypot(se, oe * _sd_se(d0_none[alive]))
        if not abs(got - oe * sd) < Z * se_all:
            bad.append((key, got / sd, oe, (got - oe * sd) / se_all))
        assert np.sign(got) == np.sign(oe)
    assert bad == [], bad


@pytest.mark.parametrize("kind", ["binary", "normal"])
def test_u_is_a_confounder_not_an_effect_modifier(model, kind):
    """Null effect: the two potential outcomes stay identical with U."""
    d = make_design(model, 20_000, unmeasured={"kind": kind, "treatment_log_or": 1.0, "outcome_effect": -0.7})
    c = generate(d, np.random.default_rng(5))
    for key, (d0, d1) in c.potential_deltas.items():
        assert np.array_equal(d0, d1, equal_nan=True), key
    assert all(v == 0.0 for v in c.true_effects().values())


@pytest.mark.parametrize("kind, heterogeneity", [("binary", 0.0), ("normal", 0.0), ("binary", 1.0)])
def test_u_leaves_the_true_effects_alone(model, kind, heterogeneity):
    """The true ATE on the change is the requested one with U as without it (U in both arms)."""
    mcid = 0.3 if heterogeneity else 0.5
    kw = dict(confounding=1.0, effect_mcid=mcid, heterogeneity=heterogeneity)
    plain = make_design(model, N_BIG, **kw)
    with_u = make_design(model, N_BIG, **kw, unmeasured={"kind": kind, "prevalence": 0.4, "corr_core": 0.3,
                                                          "treatment_log_or": 1.0, "outcome_effect": -0.6})
    assert dict(with_u.effect) == dict(plain.effect)
    a, b = generate(plain, np.random.default_rng(111)), generate(with_u, np.random.default_rng(112))
    bad = []
    for key in KEYS:
        target = with_u.effect[key]
        ates, ses = [], []
        for c in (a, b):
            d0, d1 = c.potential_deltas[key]
            diff = (d1 - d0)[~np.isnan(d0)]
            ates.append(c.true_effects()[key])
            ses.append(diff.std(ddof=1) * np.sqrt(1 / diff.size + 1 / (_REFERENCE_N * diff.size / c.n)))
        if not abs(ates[1] - target) < Z * ses[1]:
            bad.append(("vs target", key, ates[1], target, ses[1]))
        if not abs(ates[1] - ates[0]) < Z * np.hypot(*ses):
            bad.append(("vs no U", key, ates[1], ates[0], np.hypot(*ses)))
    assert bad == [], bad


def test_u_masks_a_benefit_by_the_implied_amount(model, none_big):
    """No measured confounding, U (half the patients) triples the odds of decompression and worsens
    the change by 0.5 SD; no treatment effect. The crude treated-minus-control difference in change
    is -0.5 SD x (P(U=1 | treated) - P(U=1 | control)) < 0: U would mask a benefit."""
    p, b, oe = 0.5, np.log(3.0), -0.5
    d = make_design(model, N_BIG, confounding=0.0,
                    unmeasured={"kind": "binary", "prevalence": p, "treatment_log_or": b, "outcome_effect": oe})
    c = generate(d, np.random.default_rng(606))
    # P(U=1 | arm) from the model alone: the intercept keeping 189/263 treated
    a = optimize.brentq(lambda a: p * special.expit(a + b) + (1 - p) * special.expit(a) - P_TREATED, -20, 20)
    e1, e0 = special.expit(a + b), special.expit(a)
    pi1 = p * e1 / (p * e1 + (1 - p) * e0)
    pi0 = p * (1 - e1) / (p * (1 - e1) + (1 - p) * (1 - e0))
    t = c.columns["treated"] == 1
    inflate = np.sqrt(1 + N_BIG / _REFERENCE_N)
    for o, time in KEYS:
        delta = c.columns[f"{o}_delta_{time}"]
        x, y = delta[t & ~np.isnan(delta)], delta[~t & ~np.isnan(delta)]
        crude = x.mean() - y.mean()
        se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
        sd_none = none_big.potential_deltas[(o, time)][0]
        sd_none = sd_none[~np.isnan(sd_none)]
        implied = oe * sd_none.std() * (pi1 - pi0)
        assert crude < -Z * se, (o, time, crude, se)
        se_all = np.hypot(se, inflate * abs(oe) * _sd_se(sd_none) * (pi1 - pi0))
        assert abs(crude - implied) < Z * se_all, (o, time, crude, implied, se_all)


# ------------------------------------------------------------------ validation
BAD = [
    ("binary", "cohort.unmeasured"),
    (["kind", "binary"], "cohort.unmeasured"),
    ({"kind": "x"}, "cohort.unmeasured.kind"),
    ({"kind": None}, "cohort.unmeasured.kind"),
    ({"knd": "binary"}, "cohort.unmeasured.knd"),
    ({"kind": "binary", "prevalence": 0.0}, "cohort.unmeasured.prevalence"),
    ({"kind": "binary", "prevalence": 1.0}, "cohort.unmeasured.prevalence"),
    ({"kind": "binary", "prevalence": "0.3"}, "cohort.unmeasured.prevalence"),
    ({"kind": "none", "prevalence": float("nan")}, "cohort.unmeasured.prevalence"),
    ({"kind": "normal", "corr_core": 1.0}, "cohort.unmeasured.corr_core"),
    ({"kind": "normal", "corr_core": -1.5}, "cohort.unmeasured.corr_core"),
    ({"kind": "normal", "corr_core": True}, "cohort.unmeasured.corr_core"),
    ({"kind": "binary", "treatment_log_or": float("inf")}, "cohort.unmeasured.treatment_log_or"),
    ({"kind": "binary", "treatment_log_or": None}, "cohort.unmeasured.treatment_log_or"),
    ({"kind": "binary", "outcome_effect": float("nan")}, "cohort.unmeasured.outcome_effect"),
    ({"kind": "binary", "outcome_effect": "large"}, "cohort.unmeasured.outcome_effect"),
    ({"kind": "binary", "outcome_effect": [0.5]}, "cohort.unmeasured.outcome_effect"),
    ({"kind": "binary", "outcome_effect": {"pain": 0.5}}, "cohort.unmeasured.outcome_effect.pain"),
    ({"kind": "binary", "outcome_effect": {"barthel": [1, 2]}}, "cohort.unmeasured.outcome_effect.barthel"),
    ({"kind": "binary", "outcome_effect": {"barthel": {"m3": 1}}}, "cohort.unmeasured.outcome_effect.barthel.m3"),
    ({"kind": "binary", "outcome_effect": {"vas": {"pre": 1}}}, "cohort.unmeasured.outcome_effect.vas.pre"),
    ({"kind": "binary", "outcome_effect": {"vas": {"m1": "x"}}}, "cohort.unmeasured.outcome_effect.vas.m1"),
]


@pytest.mark.parametrize("settings, key", BAD, ids=[f"{i}-{k.split('.')[-1]}" for i, (_, k) in enumerate(BAD)])
def test_bad_settings_name_the_key(model, settings, key):
    for call in (lambda: check_unmeasured(settings, outcomes=OUTCOMES, times=POST),
                 lambda: make_design(model, 100, unmeasured=settings)):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(key + ":"), msg
        assert "\n" not in msg


def test_check_messages_list_the_allowed_values_and_use_the_prefix():
    with pytest.raises(ValueError, match=r"^grid\.unmeasured\.kind: got 'x'; allowed: \['none', 'binary', 'normal'\]$"):
        check_unmeasured({"kind": "x"}, prefix="grid.unmeasured")
    with pytest.raises(ValueError, match=r"unknown key; allowed: \['kind', 'prevalence'"):
        check_unmeasured({"kind": "binary", "prev": 0.2})
    with pytest.raises(ValueError, match="allowed: .*barthel"):
        check_unmeasured({"outcome_effect": {"pain": 1}}, outcomes=OUTCOMES)
    # without `outcomes` / `times` the names are not checked (the model knows them: make_design checks)
    check_unmeasured({"kind": "binary", "outcome_effect": {"pain": {"m6": 1}}})
    check_unmeasured({"outcome_effect": {"barthel": {"m12": 1}}})
    with pytest.raises(ValueError, match=r"outcome_effect\.barthel\.m12: unknown time; allowed: \['m1', 'm6'\]"):
        check_unmeasured({"outcome_effect": {"barthel": {"m12": 1}}}, times=POST)
    for good in ({"kind": "binary", "prevalence": 0.2, "corr_core": -0.3, "treatment_log_or": -1,
                  "outcome_effect": {"barthel": -0.5, "vas": {"m6": 0.2}}},
                 {"kind": "normal", "outcome_effect": 1}, None, {}):
        check_unmeasured(good, outcomes=OUTCOMES, times=POST)


def test_unreachable_outcome_effect_names_its_key(model):
    """Face scale 0-10: no U can move the change by 5 SDs on average."""
    with pytest.raises(ValueError, match=r"^cohort\.unmeasured\.outcome_effect\.face\.m6: ") as info:
        make_design(model, 100, unmeasured={"kind": "binary", "outcome_effect": {"face": {"m6": 5.0}}})
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ U stays hidden from the analysis
def test_u_is_not_a_ps_covariate_of_any_method():
    for path in sorted((ROOT / "conf" / "method").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        covs = (spec.get("propensity") or {}).get("covariates") or []
        U.guard_ps_covariates(covs)
        assert U.U_COLUMN not in covs, path
    with pytest.raises(ValueError, match=r"^method\.propensity\.covariates: 'u' is the unmeasured"):
        U.guard_ps_covariates(["age", "u"])

"""The weighting estimators (sim.methods.estimators.weighting), each against an independent
computation: point estimates against statsmodels (WLS on [1, treated] for the Hajek differences,
GLM for the PS, OLS for the outcome regressions) and direct formulas; the sandwich SEs against a
stacked M-estimation with numerical derivatives (plain, and with the small-sample HC2 and Welch t
written out) and against a bootstrap that refits the PS; a
constant effect recovered on a large n; coverage where the naive SE (weights taken as known, the
WLS robust SE) fails, and at a small n with extreme weights where the plain sandwich fails; the
failure modes and their named reasons."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.special import expit

from sim.methods.estimators import ESTIMAND_OF, ESTIMATORS, CohortView
from sim.methods.propensity import fit_propensity

NAMES = ["ipw_att", "ipw_ate", "overlap", "aipw_ate", "aipw_att"]
ESTIMAND = {"ipw_att": "att", "ipw_ate": "ate", "overlap": "ato", "aipw_ate": "ate", "aipw_att": "att"}
#: the weights of the Hajek estimators, written out again (treated, control)
WEIGHTS = {"att": lambda e: (np.ones_like(e), e / (1 - e)), "ate": lambda e: (1 / e, 1 / (1 - e)),
           "ato": lambda e: (1 - e, e)}
TAU = 1.0
Z95 = 1.959963984540054


def simulate(rng, n, gamma=(0.8, -0.6, 0.5), beta=(2.0, 1.5, -1.0), miss=0.15, ps=None) -> CohortView:
    """X ~ N(0, I_3), logistic treatment, a linear outcome (in X and the baseline) with the constant
    effect TAU, outcomes missing completely at random; the PS fitted on everyone (sim's fitter)."""
    X = rng.normal(size=(n, 3))
    t = rng.random(n) < expit(X @ np.asarray(gamma))
    base = 0.5 * X[:, 0] + rng.normal(size=n)
    y = 1 + X @ np.asarray(beta) + 0.5 * base + TAU * t + rng.normal(size=n)
    y[rng.random(n) < miss] = np.nan
    e = fit_propensity(X, t).ps if ps is None else ps
    return CohortView(X, t, y, base, e, -np.ones(n, int), np.zeros(n))


def with_(view: CohortView, **kw) -> CohortView:
    f = {k: getattr(view, k) for k in ("X", "treated", "y", "baseline", "ps", "pair_id", "match_weights")}
    return CohortView(**{**f, **kw})


def glm_view(view: CohortView) -> CohortView:
    Z = sm.add_constant(view.X)
    fit = sm.GLM(view.treated.astype(float), Z, family=sm.families.Binomial()).fit(tol=1e-12)
    return with_(view, ps=np.asarray(fit.fittedvalues))


def run(name, view, alpha=0.05, **kw):
    return ESTIMATORS[name](view, alpha, **kw)


# --- the stacked estimating equations, written out per estimator (theta -> (n, k) terms) ---------

def stacked(view: CohortView, name: str):
    """Per-unit estimating functions psi(theta), their root theta (statsmodels' GLM and OLS, then the
    means) and the contrast giving the estimate."""
    n = len(view.y)
    Z = sm.add_constant(view.X)
    s = ~np.isnan(view.y)
    y, t = np.where(s, view.y, 0.0), view.treated.astype(float)
    W = np.column_stack([Z, view.baseline])
    q, k = Z.shape[1], W.shape[1]
    beta = sm.GLM(t, Z, family=sm.families.Binomial()).fit(tol=1e-12).params

    def ols(rows):
        return sm.OLS(y[rows], W[rows]).fit().params

    if name == "aipw_ate":
        def psi(th):
            e, m1, m0 = expit(Z @ th[:q]), W @ th[q:q + k], W @ th[q + k:q + 2 * k]
            d = m1 - m0 + t * (y - m1) / e - (1 - t) * (y - m0) / (1 - e)
            return np.column_stack([Z * (t - e)[:, None], W * (s * t * (y - m1))[:, None],
                                    W * (s * (1 - t) * (y - m0))[:, None], s * (d - th[-1])])
        th = np.concatenate([beta, ols(s & (t == 1)), ols(s & (t == 0)), [0.0]])
        th[-1] = psi(th)[:, -1].sum() / s.sum()
        c = np.zeros(len(th))
        c[-1] = 1
        return psi, th, c
    dr = name == "aipw_att"
    w = WEIGHTS[ESTIMAND[name]]

    def psi(th):
        e = expit(Z @ th[:q])
        w1, w0 = w(e)
        r = y - W @ th[q:q + k] if dr else y
        cols = [Z * (t - e)[:, None]] + ([W * (s * (1 - t) * r)[:, None]] if dr else [])
        return np.column_stack(cols + [s * t * w1 * (r - th[-2]), s * (1 - t) * w0 * (r - th[-1])])
    parts = [beta] + ([ols(s & (t == 0))] if dr else [])
    r = y - W @ parts[-1] if dr else y
    w1, w0 = w(expit(Z @ beta))
    a1, a0 = s * t * w1, s * (1 - t) * w0
    th = np.concatenate(parts + [[a1 @ r / a1.sum(), a0 @ r / a0.sum()]])
    c = np.zeros(len(th))
    c[-2:] = [1, -1]
    return psi, th, c


def numeric_influence(view: CohortView, name: str, h: float = 1e-6) -> tuple[float, np.ndarray]:
    """The estimate and each unit's term c' A^-1 psi_i, A the central-difference Jacobian of the
    summed estimating functions (the sandwich A^-1 B A^-T is the sum of their squares)."""
    psi, th, c = stacked(view, name)
    P = psi(th)
    assert np.allclose(P.sum(0), 0, atol=1e-6)
    A = np.column_stack([(psi(th + h * d).sum(0) - psi(th - h * d).sum(0)) / (2 * h) for d in np.eye(len(th))])
    return float(c @ th), P @ np.linalg.solve(A, np.eye(len(th))).T @ c


def numeric_sandwich(view: CohortView, name: str, h: float = 1e-6) -> tuple[float, float]:
    est, phi = numeric_influence(view, name, h)
    return est, float(np.sqrt(np.sum(phi ** 2)))


# --- point estimates and SEs against independent computations --------------------------------------

def test_registered_with_their_estimands():
    for name in NAMES:
        assert ESTIMAND_OF[name] == ESTIMAND[name]
        assert run(name, simulate(np.random.default_rng(0), 200)).estimand == ESTIMAND[name]


def test_point_estimates_match_statsmodels_and_direct_formulas():
    v = glm_view(simulate(np.random.default_rng(1), 600))
    assert np.allclose(v.ps, fit_propensity(v.X, v.treated).ps, atol=1e-8)  # GLM = sim's PS fitter
    s, t, e = v.seen, v.treated, v.ps
    D = sm.add_constant(t[s].astype(float))
    for name in ("ipw_att", "ipw_ate", "overlap"):
        w1, w0 = WEIGHTS[ESTIMAND[name]](e)
        w = np.where(t, w1, w0)[s]
        wls = sm.WLS(v.y[s], D, weights=w).fit().params[1]
        direct = (np.sum((w * v.y[s])[t[s]]) / np.sum(w[t[s]])
                  - np.sum((w * v.y[s])[~t[s]]) / np.sum(w[~t[s]]))
        r = run(name, v)
        assert r.estimate == pytest.approx(wls, rel=1e-10) and r.estimate == pytest.approx(direct, rel=1e-10)
        assert (r.n_treated, r.n_control) == (int((s & t).sum()), int((s & ~t).sum()))
    W = np.column_stack([sm.add_constant(v.X), v.baseline])
    m1 = sm.OLS(v.y[s & t], W[s & t]).fit().predict(W)
    m0 = sm.OLS(v.y[s & ~t], W[s & ~t]).fit().predict(W)
    aipw = np.mean((m1 - m0 + t * (v.y - m1) / e - (~t) * (v.y - m0) / (1 - e))[s])
    assert run("aipw_ate", v).estimate == pytest.approx(aipw, rel=1e-10)
    w = e / (1 - e)
    dr_att = np.mean((v.y - m0)[s & t]) - np.sum((w * (v.y - m0))[s & ~t]) / np.sum(w[s & ~t])
    assert run("aipw_att", v).estimate == pytest.approx(dr_att, rel=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_sandwich_equals_the_stacked_m_estimation(name):
    """The closed-form influence functions = the generic sandwich of the stacked equations
    (PS score on all n, outcome regressions, means on the seen units), numerically differentiated."""
    v = glm_view(simulate(np.random.default_rng(2), 263))
    est, se = numeric_sandwich(v, name)
    r = run(name, v, small_sample=False)
    assert r.estimate == pytest.approx(est, rel=1e-10)
    assert r.se == pytest.approx(se, rel=1e-6)
    assert r.ci_high - r.estimate == pytest.approx(Z95 * r.se, rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_small_sample_se_is_hc2_of_the_stacked_terms_with_a_welch_t(name):
    """The default SE, written out from the numerical stack: each unit's term over 1 - h_i (h_i its
    share of its arm's weight, plus its hat value in the arm's outcome regression, from statsmodels),
    referred to a t whose df is Welch-Satterthwaite's over the arms, each arm's df
    (sum h^2)^2 / sum h^4 - 1 of its weight shares."""
    from scipy import stats

    v = glm_view(simulate(np.random.default_rng(2), 120))
    est, phi = numeric_influence(v, name)
    s, t, e = v.seen, v.treated, v.ps
    w1, w0 = WEIGHTS[ESTIMAND[name]](e)
    a1, a0 = np.where(s & t, w1, 0.0), np.where(s & ~t, w0, 0.0)
    share1, share0 = a1 / a1.sum(), a0 / a0.sum()
    h = share1 + share0
    W = np.column_stack([sm.add_constant(v.X), v.baseline])
    for rows, fitted in ((s & ~t, name in ("aipw_ate", "aipw_att")), (s & t, name == "aipw_ate")):
        if fitted:
            h[rows] += sm.OLS(v.y[rows], W[rows]).fit().get_influence().hat_matrix_diag
    var = phi ** 2 / (1 - h)
    v1, v0 = var[t].sum(), var[~t].sum()
    df1, df0 = (np.sum(x ** 2) ** 2 / np.sum(x ** 4) - 1 for x in (share1, share0))
    df = (v1 + v0) ** 2 / (v1 ** 2 / df1 + v0 ** 2 / df0)
    r = run(name, v)
    assert r.se == pytest.approx(np.sqrt(var.sum()), rel=1e-6)
    assert r.se > run(name, v, small_sample=False).se
    assert r.ci_high - r.estimate == pytest.approx(stats.t.ppf(0.975, df) * r.se, rel=1e-6)
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(est) / r.se, df), rel=1e-6)


def test_large_n_recovers_the_constant_effect():
    """n = 20,000, a constant effect: every estimand is TAU, and each estimator is within 3 SE of it
    (and of the others: ATE, ATT and ATO coincide)."""
    v = simulate(np.random.default_rng(3), 20_000)
    res = {name: run(name, v) for name in NAMES}
    for name, r in res.items():
        assert abs(r.estimate - TAU) < 3 * r.se, (name, r.estimate, r.se)
        assert r.ci_low < TAU < r.ci_high and r.reason == ""
    for a in NAMES:
        for b in NAMES:
            assert abs(res[a].estimate - res[b].estimate) < 3 * np.hypot(res[a].se, res[b].se)
    assert res["aipw_ate"].se < res["ipw_ate"].se  # the outcome model helps (it is the true one)


@pytest.mark.slow
def test_sandwich_se_agrees_with_a_bootstrap_refitting_the_ps():
    """n = 400, B = 600 resamples of units (PS refitted on each): the bootstrap SD's own relative MC
    error is ~1/sqrt(2B) = 2.9 %, so 15 % leaves room for the two estimators' disagreement."""
    rng = np.random.default_rng(4)
    v = simulate(rng, 400)
    se = np.array([run(name, v).se for name in NAMES])
    boot = np.empty((600, len(NAMES)))
    for b in range(len(boot)):
        i = rng.integers(0, 400, 400)
        vb = simulate_like(v, i)
        boot[b] = [run(name, vb).estimate for name in NAMES]
    ratio = se / boot.std(0, ddof=1)
    assert np.all(np.abs(ratio - 1) < 0.15), dict(zip(NAMES, ratio.round(3)))


def simulate_like(v: CohortView, i: np.ndarray) -> CohortView:
    X, t = v.X[i], v.treated[i]
    return CohortView(X, t, v.y[i], v.baseline[i], fit_propensity(X, t).ps, v.pair_id[i], v.match_weights[i])


@pytest.mark.slow
def test_coverage_sandwich_holds_where_the_naive_se_fails():
    """R = 400 data sets (n = 400) with a strongly prognostic X and moderate confounding, where the
    PS estimation removes much of the weighted means' variance: the sandwich CIs cover TAU in at
    least 0.95 - 3 MCSE; the naive CI (the WLS robust SE, weights taken as known: the weakened
    implementation) over-covers beyond 0.95 + 3 MCSE for the three weighting estimators
    (Lunceford & Davidian 2004: ignoring the PS estimation is conservative here)."""
    rng = np.random.default_rng(7)
    R, mcse = 400, np.sqrt(0.95 * 0.05 / 400)
    real, naive = np.zeros((R, len(NAMES))), np.zeros((R, 3))
    for k in range(R):
        v = simulate(rng, 400, gamma=(0.5, -0.4, 0.3), beta=(4.0, 3.0, -3.0))
        real[k] = [r.ci_low <= TAU <= r.ci_high for r in (run(name, v) for name in NAMES)]
        s = v.seen
        for j, name in enumerate(NAMES[:3]):
            w1, w0 = WEIGHTS[ESTIMAND[name]](v.ps)
            fit = sm.WLS(v.y[s], sm.add_constant(v.treated[s].astype(float)),
                         weights=np.where(v.treated, w1, w0)[s]).fit(cov_type="HC0")
            naive[k, j] = abs(fit.params[1] - TAU) <= Z95 * fit.bse[1]
    real_cov, naive_cov = real.mean(0), naive.mean(0)
    assert np.all(real_cov >= 0.95 - 3 * mcse), dict(zip(NAMES, real_cov))
    assert np.all(naive_cov > 0.95 + 3 * mcse), dict(zip(NAMES, naive_cov))


def test_small_sample_coverage_holds_where_the_plain_sandwich_fails():
    """R = 400 data sets of n = 150 with strong confounding (the control arm's effective size a
    fraction of its ~50 seen units, as at the paper's size): the default small-sample CIs cover TAU
    in at least 0.95 - 3 MCSE for all five; the plain sandwich with a normal reference (the weakened
    implementation, small_sample=False) falls below 0.95 - 3 MCSE for IPW and AIPW (overlap
    weights, with no extreme weights, need no correction here)."""
    rng = np.random.default_rng(11)
    R, mcse = 400, np.sqrt(0.95 * 0.05 / 400)
    cover = np.zeros((2, R, len(NAMES)))
    for k in range(R):
        v = simulate(rng, 150, gamma=(1.2, -1.0, 0.8))
        for s, small in enumerate((True, False)):
            cover[s, k] = [r.ci_low <= TAU <= r.ci_high for r in (run(name, v, small_sample=small) for name in NAMES)]
    small, plain = dict(zip(NAMES, cover[0].mean(0))), dict(zip(NAMES, cover[1].mean(0)))
    assert all(c >= 0.95 - 3 * mcse for c in small.values()), small
    assert all(plain[name] < 0.95 - 3 * mcse for name in NAMES if name != "overlap"), plain


# --- failure modes --------------------------------------------------------------------------------

def test_ps_of_zero_or_one_among_the_seen_fails_but_not_among_the_unseen():
    v = simulate(np.random.default_rng(5), 200)
    seen, unseen = np.flatnonzero(v.seen), np.flatnonzero(~v.seen)
    for edge in (0.0, 1.0):
        ps = v.ps.copy()
        ps[seen[0]] = edge
        for name in NAMES:
            r = run(name, with_(v, ps=ps))
            assert np.isnan(r.estimate) and r.reason.startswith("PS of 0 or 1"), (name, r.reason)
        ps = v.ps.copy()
        ps[unseen[0]] = edge  # only in the PS model's score, where it is harmless
        assert all(np.isfinite(run(name, with_(v, ps=ps)).se) for name in NAMES)


def test_empty_arm_fails():
    v = simulate(np.random.default_rng(6), 200)
    for arm in (True, False):
        y = np.where(v.treated == arm, np.nan, v.y)
        for name in NAMES:
            r = run(name, with_(v, y=y))
            label = "treated" if arm else "control"
            assert np.isnan(r.estimate) and r.reason == f"empty arm: no seen {label} units", (name, r.reason)


def test_extreme_weights_are_named_and_the_estimate_kept():
    v = simulate(np.random.default_rng(8), 300, miss=0.0)
    ps = v.ps.copy()
    c = np.flatnonzero(~v.treated)[0]
    ps[c] = 0.999  # a control as likely treated as any: ATT weight 999, ATE weight 1000
    for name in ("ipw_att", "ipw_ate", "aipw_ate", "aipw_att"):
        r = run(name, with_(v, ps=ps))
        assert np.isfinite(r.estimate) and np.isfinite(r.se), name
        assert r.reason.startswith("extreme weights: one control unit carries"), (name, r.reason)
    assert run("overlap", with_(v, ps=ps)).reason == ""  # overlap weights are bounded by 1
    assert all(run(name, v).reason == "" for name in NAMES)


def test_other_failures_are_named_never_raised():
    v = simulate(np.random.default_rng(9), 200)
    y = v.y.copy()
    y[np.flatnonzero(~v.treated)[4:]] = np.nan  # four seen controls (at most), five terms in m0
    for name in ("aipw_ate", "aipw_att"):
        assert run(name, with_(v, y=y)).reason.startswith("too few seen control units")
        base = v.baseline.copy()
        base[np.flatnonzero(v.seen)[0]] = np.nan
        assert run(name, with_(v, baseline=base)).reason == "non-finite baseline among the seen units"
    assert np.isfinite(run("ipw_att", with_(v, y=y)).estimate)  # the weighting alone still works
    ps = v.ps.copy()
    ps[0] = np.nan
    assert all(run(name, with_(v, ps=ps)).reason.startswith("non-finite") for name in NAMES)
    X = np.column_stack([v.X, np.ones(200)])  # a constant covariate: singular information, pinv
    assert all(np.isfinite(run(name, with_(v, X=X)).se) for name in NAMES)

"""Weighting estimators: inverse probability weighting for the ATT and the ATE, overlap weights for
the ATO, augmented IPW for the ATE and the doubly robust ATT, each with an SE that accounts for the
estimation of the PS (and of the outcome regressions).

Why a sandwich of our own: the SE of a weighted mean treated as if its weights were known (the
weighted-least-squares robust SE) ignores that the weights come from a fitted PS. For the ATE that
SE is conservative (Lunceford & Davidian 2004); for the ATT it can err either way (Reifeis &
Hudgens 2022). The remedy is M-estimation (Stefanski & Boos 2002): stack the PS model's logistic
score equations, sum_i Z_i (T_i - e_i) = 0 with Z = [1, X], fitted on ALL n units as the study
fits it, with the estimator's own equations over the seen units. Linearising the stack gives each
unit's influence on the estimate,

    phi_i = [ psi_i + psi_beta_i' H^-1 G + psi_gamma_i' (W'W)^-1 G_gamma ] / N,

where psi_i is the unit's term in the estimator's equation, N minus that equation's derivative in
the estimate (the arm's total weight, or the number of seen units), H = sum e(1 - e) Z Z' the PS
model's information at the fit, G the derivative of the estimator's equation in the PS
coefficients, and the last term the same for an OLS outcome regression (score W (y - W gamma),
bread W'W over its arm). sum_i phi_i^2 is the empirical sandwich A^-1 B A^-T.

Small samples (`small_sample=True`, the default): at the paper's size (~50 complete-case controls,
whose ATT or ATE weights leave an effective ~12-19) that sandwich is ~20 % too small and its CI
covers 0.77-0.92 (experiments/estimator_comparison). Two corrections, as Imbens & Kolesar (2016)
advise for robust SEs in small samples: HC2 (MacKinnon & White 1985; Bell & McCaffrey 2002), each
unit's term divided by 1 - h_i, h_i its share of its arm's weight (the leverage of the weighted
mean, which its residual is shrunk by; plus its hat value in an outcome regression), SE =
sqrt(sum_i phi_i^2 / (1 - h_i)); and a t reference whose df approximate Bell & McCaffrey's by
Welch-Satterthwaite over the arms, each arm's df its effective number of residuals
(sum s^2)^2 / sum s^4 less one, s the weight shares. Both vanish as the arms grow (h -> 0,
df -> inf). Measured there (500 replicates, no effect): IPW 0.95-0.98, AIPW 0.95-0.97 but 0.90-0.91
on the Barthel change, overlap weights 0.92-0.96 (unchanged). `small_sample=False`: the plain
sandwich and the normal reference. statsmodels has no such
stacked sandwich; its OLS is not used for the outcome regressions either, because these estimators
run once per replicate (numpy's pinv is ~5x faster than sm.OLS and keeps statsmodels' import off
the command line's path); tests/test_weighting.py checks both against statsmodels.

Failures (`Estimate.failed`): non-finite covariates or PS, a PS of exactly 0 or 1 among the seen
units (the weights are undefined), an arm without seen units, an arm too small for its outcome
regression. Warning (the estimate is returned, `reason` says it): extreme weights, when one unit
carries more than WEIGHT_SHARE_MAX of its arm's total weight (and more than WEIGHT_SHARE_FACTOR
times an equal share, so that small arms are not flagged for being small)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.methods.estimators.base import CohortView, Estimate, register

__all__ = ["WEIGHT_SHARE_FACTOR", "WEIGHT_SHARE_MAX", "aipw_ate", "aipw_att", "ipw_ate", "ipw_att", "overlap"]

#: warn when one unit carries more than this share of its arm's total weight ...
WEIGHT_SHARE_MAX = 0.10
#: ... and more than this many times the equal share 1 / (units of the arm)
WEIGHT_SHARE_FACTOR = 5.0

#: per estimand: the treated weight, the control weight, and their derivatives in logit(e)
#: (dw/dbeta = dw/deta * Z); Hajek (normalised per arm) throughout, so stabilising the ATE's
#: weights by P(T = 1) and P(T = 0) changes nothing.
_WEIGHTS = {
    "att": lambda e: (np.ones_like(e), e / (1 - e), np.zeros_like(e), e / (1 - e)),
    "ate": lambda e: (1 / e, 1 / (1 - e), -(1 - e) / e, e / (1 - e)),
    "ato": lambda e: (1 - e, e, -e * (1 - e), e * (1 - e)),
}


@dataclass(frozen=True)
class _Cohort:
    """A view's arrays checked and prepared: the PS model's design, score and inverse information."""

    Z: np.ndarray        # (n, q) [1, X]
    treated: np.ndarray  # bool
    e: np.ndarray        # the PS, 0.5 where not seen (never used there, keeps weights finite)
    y: np.ndarray        # the outcome, 0 where not seen
    t1: np.ndarray       # seen and treated
    t0: np.ndarray       # seen and control
    ps_score: np.ndarray  # (n, q) Z_i (T_i - e_i), every unit (the PS model is fitted on all)
    ps_hinv: np.ndarray  # (q, q) pinv(sum e(1 - e) Z Z')


def _prepare(view: CohortView, estimand: str) -> _Cohort | Estimate:
    """Check a view (failed Estimate naming the problem) and build the PS model's score and bread."""
    X = np.asarray(view.X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    t = np.asarray(view.treated).astype(bool)
    e = np.asarray(view.ps, dtype=float)
    y = np.asarray(view.y, dtype=float)
    seen = ~np.isnan(y)
    if not (np.isfinite(X).all() and np.isfinite(e).all() and ((e >= 0) & (e <= 1)).all()):
        return Estimate.failed(estimand, "non-finite covariates or PS outside [0, 1]")
    for arm, used in (("treated", seen & t), ("control", seen & ~t)):
        if not used.any():
            return Estimate.failed(estimand, f"empty arm: no seen {arm} units")
    edge = seen & ((e == 0) | (e == 1))
    if edge.any():
        return Estimate.failed(estimand, f"PS of 0 or 1 for {int(edge.sum())} seen units "
                                         "(the PS model separates the arms; the weights are undefined)")
    Z = np.column_stack([np.ones(len(e)), X])
    info = (Z * (e * (1 - e))[:, None]).T @ Z
    return _Cohort(Z, t, np.where(seen, e, 0.5), np.where(seen, y, 0.0), seen & t, seen & ~t,
                   Z * (t - e)[:, None], np.linalg.pinv(info))


def _ols(W: np.ndarray, y: np.ndarray, rows: np.ndarray, arm: str, estimand: str):
    """OLS of y on W over `rows`: (fitted values for every unit, the score W_i r_i (0 off rows),
    pinv(W'W) over rows), or a failed Estimate when the arm is too small to leave residuals."""
    k = int(rows.sum())
    if k <= W.shape[1]:
        return Estimate.failed(estimand, f"too few seen {arm} units ({k}) for the outcome regression "
                                         f"on {W.shape[1]} terms")
    Wr = W[rows]
    bread = np.linalg.pinv(Wr.T @ Wr)
    fitted = W @ (bread @ (Wr.T @ y[rows]))
    return fitted, W * np.where(rows, y - fitted, 0.0)[:, None], bread


def _outcome_design(view: CohortView, c: _Cohort, estimand: str) -> np.ndarray | Estimate:
    """[1, X, baseline], the outcome regressions' design."""
    base = np.asarray(view.baseline, dtype=float)
    if not np.isfinite(base[c.t1 | c.t0]).all():
        return Estimate.failed(estimand, "non-finite baseline among the seen units")
    return np.column_stack([c.Z, np.where(np.isfinite(base), base, 0.0)])


def _hat(W: np.ndarray, bread: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The OLS hat values W_i (W'W)^-1 W_i' on the regression's rows (where its score is not 0), else 0."""
    return np.where(np.any(score != 0, axis=1), np.einsum("ij,jk,ik->i", W, bread, W), 0.0)


def _weight_warning(a1: np.ndarray, a0: np.ndarray) -> str:
    """The named warning for extreme weights ('' when none): the largest share of an arm's weight
    one unit carries, with the arm's Kish effective sample size."""
    for arm, a in (("treated", a1), ("control", a0)):
        used = a[a > 0]
        if used.size == 0:
            continue
        share = used.max() / used.sum()
        if share > WEIGHT_SHARE_MAX and share > WEIGHT_SHARE_FACTOR / used.size:
            ess = used.sum() ** 2 / np.sum(used ** 2)
            return (f"extreme weights: one {arm} unit carries {share:.0%} of its arm's weight "
                    f"(effective n {ess:.1f} of {used.size})")
    return ""


def _result(phi: np.ndarray, estimate: float, alpha: float, c: _Cohort, a1: np.ndarray, a0: np.ndarray,
            estimand: str, reason: str, small_sample: bool, hat: np.ndarray | None = None) -> Estimate:
    """The Wald result of an influence function phi: the plain sandwich with a normal reference, or
    (small_sample) HC2 with leverages the weight shares a1 / sum a1, a0 / sum a0 and a Welch t."""
    n1, n0 = int((a1 > 0).sum()), int((a0 > 0).sum())
    if not small_sample:
        return Estimate.wald(estimate, float(np.sqrt(np.sum(phi ** 2))), alpha, n1, n0, estimand, reason=reason)
    h = a1 / a1.sum() + a0 / a0.sum() + (0.0 if hat is None else hat)
    if h.max() >= 1.0:
        return Estimate(float(estimate), float("nan"), float("nan"), float("nan"), float("nan"), n1, n0, estimand,
                        "a unit's leverage reaches 1 (its arm's weight or regression rests on it): no small-sample SE")
    v = phi ** 2 / (1 - h)
    parts = []
    for arm, share in ((c.treated, a1 / a1.sum()), (~c.treated, a0 / a0.sum())):
        used = share[share > 0]
        parts.append((v[arm].sum(), np.sum(used ** 2) ** 2 / np.sum(used ** 4) - 1))
    df = sum(vk for vk, _ in parts) ** 2 / sum(vk ** 2 / nk for vk, nk in parts)
    return Estimate.wald(estimate, float(np.sqrt(v.sum())), alpha, n1, n0, estimand, df=float(df), reason=reason)


def _hajek(c: _Cohort, estimand: str, alpha: float, y: np.ndarray, small_sample: bool, ols=None) -> Estimate:
    """Difference of the per-arm normalised weighted means of y over the seen units, with the
    M-estimation sandwich (PS estimated; `ols` = (W, score, bread) of a regression that y's
    residuals came from, accounted for too)."""
    w1, w0, d1, d0 = _WEIGHTS[estimand](c.e)
    a1, a0 = np.where(c.t1, w1, 0.0), np.where(c.t0, w0, 0.0)
    N1, N0 = a1.sum(), a0.sum()
    if not (N1 > 0 and N0 > 0):
        return Estimate.failed(estimand, "no weight left in an arm")
    mu1, mu0 = a1 @ y / N1, a0 @ y / N0
    r1, r0 = np.where(c.t1, y - mu1, 0.0), np.where(c.t0, y - mu0, 0.0)
    g_ps = c.Z.T @ (d1 * r1) / N1 - c.Z.T @ (d0 * r0) / N0
    phi = a1 * r1 / N1 - a0 * r0 / N0 + c.ps_score @ (c.ps_hinv @ g_ps)
    hat = None
    if ols is not None:  # y = outcome - W gamma: d(a (y - mu))/d gamma = -a W
        W, score, bread = ols
        phi = phi + score @ (bread @ (W.T @ a0 / N0 - W.T @ a1 / N1))
        hat = _hat(W, bread, score)
    return _result(phi, mu1 - mu0, alpha, c, a1, a0, estimand, _weight_warning(a1, a0), small_sample, hat)


def _weighted(view: CohortView, alpha: float, estimand: str, small_sample: bool) -> Estimate:
    c = _prepare(view, estimand)
    return c if isinstance(c, Estimate) else _hajek(c, estimand, alpha, c.y, small_sample)


@register("ipw_att", "att")
def ipw_att(view: CohortView, alpha: float, small_sample: bool = True) -> Estimate:
    """IPW for the ATT: treated weight 1, control weight e / (1 - e), normalised per arm (Hajek);
    sandwich SE with the PS estimated (Reifeis & Hudgens 2022)."""
    return _weighted(view, alpha, "att", small_sample)


@register("ipw_ate", "ate")
def ipw_ate(view: CohortView, alpha: float, small_sample: bool = True) -> Estimate:
    """IPW for the ATE: weights 1 / e and 1 / (1 - e), normalised per arm (Hajek; the same as
    stabilised weights); sandwich SE with the PS estimated (Lunceford & Davidian 2004)."""
    return _weighted(view, alpha, "ate", small_sample)


@register("overlap", "ato")
def overlap(view: CohortView, alpha: float, small_sample: bool = True) -> Estimate:
    """Overlap weights for the ATO: treated 1 - e, control e, normalised per arm (Li, Morgan &
    Zaslavsky 2018); sandwich SE with the PS estimated (by M-estimation, as they derive it)."""
    return _weighted(view, alpha, "ato", small_sample)


@register("aipw_ate", "ate")
def aipw_ate(view: CohortView, alpha: float, small_sample: bool = True) -> Estimate:
    """Augmented IPW for the ATE (Robins, Rotnitzky & Zhao 1994; Lunceford & Davidian 2004),
    the mean over the seen units of

        m1 - m0 + T (y - m1) / e - (1 - T) (y - m0) / (1 - e),

    m1, m0 the OLS regressions of y on [1, X, baseline] fitted per arm on the seen units.
    SE: the empirical variance of the influence function / n, with the estimation of the PS and of
    both regressions accounted for (stacked with their score equations, as in the module's
    docstring): valid when either model is misspecified. With both models right the nuisance terms
    vanish asymptotically (the IF without them then gives about the same SE)."""
    c = _prepare(view, "ate")
    if isinstance(c, Estimate):
        return c
    W = _outcome_design(view, c, "ate")
    if isinstance(W, Estimate):
        return W
    fits = [_ols(W, c.y, rows, arm, "ate") for rows, arm in ((c.t1, "treated"), (c.t0, "control"))]
    for f in fits:
        if isinstance(f, Estimate):
            return f
    (m1, s1, b1), (m0, s0, b0) = fits
    seen, t, e, y = c.t1 | c.t0, c.t1.astype(float), c.e, c.y
    ns = int(seen.sum())
    d = np.where(seen, m1 - m0 + t * (y - m1) / e - (1 - t) * (y - m0) / (1 - e), 0.0)
    tau = d.sum() / ns
    g_ps = c.Z.T @ np.where(seen, -t * (y - m1) * (1 - e) / e - (1 - t) * (y - m0) * e / (1 - e), 0.0)
    g1 = W.T @ np.where(seen, 1 - t / e, 0.0)
    g0 = -(W.T @ np.where(seen, 1 - (1 - t) / (1 - e), 0.0))
    phi = (np.where(seen, d - tau, 0.0) + c.ps_score @ (c.ps_hinv @ g_ps) + s1 @ (b1 @ g1) + s0 @ (b0 @ g0)) / ns
    a1, a0 = np.where(c.t1, 1 / e, 0.0), np.where(c.t0, 1 / (1 - e), 0.0)
    hat = np.where(c.t1, _hat(W, b1, s1), 0.0) + np.where(c.t0, _hat(W, b0, s0), 0.0)
    return _result(phi, tau, alpha, c, a1, a0, "ate", _weight_warning(a1, a0), small_sample, hat)


@register("aipw_att", "att")
def aipw_att(view: CohortView, alpha: float, small_sample: bool = True) -> Estimate:
    """Doubly robust ATT (the normalised form of Mercatanti & Li 2014; cf. Moodie, Saarela &
    Stephens 2018): the Hajek ATT weighting (treated 1, controls e / (1 - e), normalised) of the
    residuals y - m0, m0 the OLS regression of y on [1, X, baseline] over the seen controls,

        sum_T (y - m0) / n_1  -  sum_C w (y - m0) / sum_C w,   w = e / (1 - e).

    (The treated arm's regression cancels from the ATT, so only m0 is fitted.) SE: the empirical
    variance of the influence function / n, with the estimation of the PS and of m0 accounted for
    (stacked with their score equations, as in the module's docstring)."""
    c = _prepare(view, "att")
    if isinstance(c, Estimate):
        return c
    W = _outcome_design(view, c, "att")
    if isinstance(W, Estimate):
        return W
    f = _ols(W, c.y, c.t0, "control", "att")
    if isinstance(f, Estimate):
        return f
    m0, s0, b0 = f
    return _hajek(c, "att", alpha, c.y - m0, small_sample, ols=(W, s0, b0))

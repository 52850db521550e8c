"""Logistic propensity-score model fitted by Newton-Raphson (IRLS) in numpy.

Why our own fitter: it is called ~10^5 times in a Monte Carlo loop, so it must
be fast (no statsmodels/pandas overhead) and must never raise on the awkward
samples a simulation produces (separation, tiny n, constant columns). Problems
are *reported* through ``converged``, ``separation`` and ``message`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PropensityFit", "fit_propensity", "odds_ratio_table"]

#: fitted probabilities are clipped into [PS_EPS, 1 - PS_EPS] so logit(ps) stays finite.
PS_EPS = 1e-10
_LOGIT_MAX = float(np.log((1.0 - PS_EPS) / PS_EPS))
#: a unit whose |linear predictor| exceeds this (p < ~1e-8) counts as perfectly predicted.
_SEPARATION_ETA = 18.0
#: relative eigenvalue below which the Hessian is treated as singular.
_SINGULAR_RTOL = 1e-10


@dataclass(frozen=True)
class PropensityFit:
    """Result of :func:`fit_propensity`.

    ``coef``/``se`` are on the original covariate scale, intercept first.
    Coefficients of constant (or otherwise non-identifiable) columns are 0 with
    ``se`` NaN. ``ps`` is clipped into [1e-10, 1 - 1e-10]; ``logit_ps`` is its logit.
    """

    ps: np.ndarray
    logit_ps: np.ndarray
    coef: np.ndarray
    se: np.ndarray
    converged: bool
    separation: bool
    message: str
    n_iter: int = 0
    loglik: float = float("nan")


def expit(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function (numpy only: keeps imports light for the CLI)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _loglik(eta: np.ndarray, y: np.ndarray) -> float:
    # log(p) = -log(1+exp(-eta)), log(1-p) = -log(1+exp(eta)); stable for any eta.
    return float(-np.sum(np.logaddexp(0.0, np.where(y > 0, -eta, eta))))


def _solve_sym(h: np.ndarray, g: np.ndarray):
    """Solve h x = g for symmetric PSD h; pseudo-inverse on (near-)singular h.

    Returns (x, h_pinv, null_mask) where null_mask marks coordinates touched by
    the null space (non-identifiable parameters).
    """
    w, v = np.linalg.eigh(h)
    wmax = max(float(w[-1]), 0.0)
    keep = w > _SINGULAR_RTOL * max(wmax, 1e-300)
    inv_w = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    h_pinv = (v * inv_w) @ v.T
    if keep.all():
        null_mask = np.zeros(h.shape[0], dtype=bool)
    else:
        null_mask = np.any(np.abs(v[:, ~keep]) > 1e-6, axis=1)
    return h_pinv @ g, h_pinv, null_mask


def fit_propensity(
    X: np.ndarray, treated: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10
) -> PropensityFit:
    """Fit logit P(treated=1 | X) with an intercept by damped Newton-Raphson.

    Covariates are centred and scaled internally (for conditioning), then the
    coefficients are transformed back. Singular Hessians (constant or collinear
    columns, separation) use an eigen-pseudo-inverse instead of failing.
    ``separation`` is True when some fitted probabilities reach 0/1
    (|logit| > 18), the signature of complete or quasi-complete separation;
    the MLE then does not exist and coefficients/SEs are meaningless.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n, p); got shape {X.shape}")
    t = np.asarray(treated)
    if t.ndim != 1 or t.shape[0] != X.shape[0]:
        raise ValueError(
            f"treated must be a 1-D array of length n={X.shape[0]}; got shape {t.shape}"
        )
    n, p = X.shape
    if n < 1:
        raise ValueError("X must have at least one row")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains non-finite values (NaN/inf); allowed: finite numbers")
    tf = t.astype(float)
    if not np.all((tf == 0.0) | (tf == 1.0)):
        raise ValueError("treated must contain only 0/1 (or False/True)")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    if not (tol > 0):
        raise ValueError(f"tol must be > 0; got {tol!r}")
    y = tf

    # Standardise for conditioning; constant columns become all-zero.
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(mu))
    scale = np.where(const, 1.0, sd)
    Z = np.empty((n, p + 1))
    Z[:, 0] = 1.0
    Z[:, 1:] = (X - mu) / scale
    Z[:, 1:][:, const] = 0.0

    b = np.zeros(p + 1)
    ybar = y.mean()
    if 0.0 < ybar < 1.0:
        b[0] = np.log(ybar / (1.0 - ybar))
    eta = Z @ b
    ll = _loglik(eta, y)
    converged = False
    singular_seen = False
    it = 0
    null_mask = np.zeros(p + 1, dtype=bool)
    for it in range(1, max_iter + 1):
        mu_hat = expit(eta)
        g = Z.T @ (y - mu_hat)
        wts = mu_hat * (1.0 - mu_hat)
        h = (Z * wts[:, None]).T @ Z
        step, _, null_mask = _solve_sym(h, g)
        singular_seen = singular_seen or bool(null_mask.any())
        # Step halving guarantees the log-likelihood never decreases.
        frac = 1.0
        for _ in range(30):
            b_new = b + frac * step
            eta_new = Z @ b_new
            ll_new = _loglik(eta_new, y)
            if ll_new >= ll - 1e-12 * (1.0 + abs(ll)):
                break
            frac *= 0.5
        max_step = float(np.max(np.abs(frac * step)))
        d_ll = ll_new - ll
        b, eta, ll = b_new, eta_new, ll_new
        if max_step < 1e-8 or (abs(d_ll) <= tol * (1.0 + abs(ll)) and max_step < 1e-4):
            converged = True
            break

    # Covariance at the final estimate.
    mu_hat = expit(eta)
    wts = mu_hat * (1.0 - mu_hat)
    h = (Z * wts[:, None]).T @ Z
    _, cov_std, null_mask = _solve_sym(h, np.zeros(p + 1))
    null_mask = null_mask | np.concatenate([[False], const])

    # Back-transform: beta_j = b_j / s_j, beta_0 = b_0 - sum_j b_j m_j / s_j.
    A = np.zeros((p + 1, p + 1))
    A[0, 0] = 1.0
    A[1:, 1:] = np.diag(np.where(const, 0.0, 1.0 / scale))
    A[0, 1:] = np.where(const, 0.0, -mu / scale)
    coef = A @ b
    cov = A @ cov_std @ A.T
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    # A non-identifiable standardised coordinate contaminates every original
    # coefficient it feeds into.
    bad = np.abs(A[:, null_mask]).sum(axis=1) > 0 if null_mask.any() else np.zeros(p + 1, bool)
    bad[1:] |= const
    se = np.where(bad, np.nan, se)
    coef = np.where(np.concatenate([[False], const]), 0.0, coef)

    separation = bool(np.any(np.abs(eta) > _SEPARATION_ETA)) or ybar in (0.0, 1.0)
    msgs = []
    if separation:
        msgs.append(
            "separation: some fitted probabilities are 0/1 (perfect prediction); "
            "MLE does not exist, coefficients/SEs unreliable"
        )
    if const.any():
        msgs.append(f"constant covariate column(s) {np.flatnonzero(const).tolist()} set to 0")
    if singular_seen or null_mask.any():
        msgs.append("singular Hessian: pseudo-inverse used")
    if not converged:
        msgs.append(f"did not converge in {max_iter} iterations")
    message = "; ".join(msgs) if msgs else "ok"

    logit_ps = np.clip(eta, -_LOGIT_MAX, _LOGIT_MAX)
    ps = expit(logit_ps)
    return PropensityFit(
        ps=ps,
        logit_ps=logit_ps,
        coef=coef,
        se=se,
        converged=converged,
        separation=separation,
        message=message,
        n_iter=it,
        loglik=ll,
    )


def odds_ratio_table(fit: PropensityFit, names, *, include_intercept: bool = False):
    """Odds ratios with Wald 95% CIs and p-values (the paper's Table 3 layout).

    ``names`` lists the covariates (without the intercept), in column order of X.
    """
    import pandas as pd
    from scipy.stats import norm

    names = list(names)
    p = len(fit.coef) - 1
    if len(names) != p:
        raise ValueError(f"names must have {p} entries (one per covariate); got {len(names)}")
    coef = np.asarray(fit.coef, float)
    se = np.asarray(fit.se, float)
    z = norm.ppf(0.975)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wald = coef / se
        pval = 2.0 * norm.sf(np.abs(wald))
        df = pd.DataFrame(
            {
                "covariate": ["(intercept)"] + names,
                "coef": coef,
                "se": se,
                "odds_ratio": np.exp(coef),
                "ci_low": np.exp(coef - z * se),
                "ci_high": np.exp(coef + z * se),
                "p_value": pval,
            }
        )
    if not include_intercept:
        df = df.iloc[1:].reset_index(drop=True)
    return df

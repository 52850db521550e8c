"""Numerical building blocks shared by the cohort model, its calibration and the analysis: the
logistic function, logistic regression by Newton-Raphson, and the intercept that keeps a treated
share. Each has one home, here.

Where two callers need different numerics, both variants live here under names that say how they
differ, and each caller keeps the one it has always used: they agree to rounding, but not to the
last bit, and the last bit decides the calibrated model and, through it, every published number.

- `expit` (scipy's) is the cohort model's: treatment probabilities, intercept solves, calibration.
  `expit_numpy` (the same function in plain numpy) is the propensity-score fit's. They differ in
  the last bits (relative difference up to 2 machine epsilons) for about a quarter of inputs.
- `fit_logit_fractional` fits a population: y may be a probability (calibration refits the
  paper's PS model on the true propensities), plain Newton steps from zero. `fit_logit_binary`
  fits a sample of 0/1 outcomes and never raises on the samples a simulation produces
  (standardised columns, step halving, pseudo-inverse on a singular Hessian, separation flagged);
  `sim.numerics.batch.fit_logit_binary_batch` is its compiled twin for many samples at once (the
  batched replicate pipeline), which hands the awkward ones back to it.
- `intercept_for_share`: the intercept a with mean(expit(a + eta)) = share, by brentq.

Only numpy is imported at module level (sim.match, the command-line tool, imports this through
the PS fit); scipy is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["expit", "expit_numpy", "fit_logit_fractional", "LogitFit", "fit_logit_binary",
           "intercept_for_share", "INTERCEPT_BRACKET"]

#: a unit whose |linear predictor| exceeds this (p < ~1e-8) counts as perfectly predicted.
SEPARATION_ETA = 18.0
#: relative eigenvalue below which the Hessian is treated as singular.
SINGULAR_RTOL = 1e-10
#: the cohort model's bracket for its treatment intercept: its linear predictors keep |a| far below
#: 30. Kept (rather than the data-driven bracket) because the bracket decides brentq's iterates,
#: hence the last bits of the intercept.
INTERCEPT_BRACKET = (-30.0, 30.0)


# ------------------------------------------------------------------ the logistic function
def expit(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), scipy's implementation: the cohort model's."""
    from scipy import special

    return special.expit(x)


def expit_numpy(x: np.ndarray) -> np.ndarray:
    """The logistic function in plain numpy, overflow-free (1/(1+e^-x) for x >= 0, e^x/(1+e^x)
    below): the PS fit's. Agrees with `expit` to 2 machine epsilons (relative), not to the bit."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# ------------------------------------------------------------------ logistic regression
def fit_logit_fractional(X: np.ndarray, y: np.ndarray, iters: int = 25, tol: float = 1e-10) -> np.ndarray:
    """Logistic regression of y on X (an intercept added) by plain Newton steps from zero; y may be
    fractional (a population-level fit: y = the probability of the outcome). Coefficients,
    intercept first. For a well-posed population fit (no separation); see `fit_logit_binary` for
    samples."""
    X1 = np.column_stack([np.ones(len(X)), X])
    beta = np.zeros(X1.shape[1])
    for _ in range(iters):
        p = expit(X1 @ beta)
        step = np.linalg.solve((X1 * (p * (1 - p))[:, None]).T @ X1, X1.T @ (y - p))
        beta += step
        if np.max(np.abs(step)) < tol:
            break
    return beta


@dataclass(frozen=True)
class LogitFit:
    """Result of `fit_logit_binary`: coefficients and SEs on the original scale (intercept first;
    0 and NaN for non-identifiable columns), the linear predictor `eta` and how the fit went."""

    coef: np.ndarray
    se: np.ndarray
    eta: np.ndarray
    loglik: float
    converged: bool
    separation: bool
    message: str
    n_iter: int


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
    keep = w > SINGULAR_RTOL * max(wmax, 1e-300)
    inv_w = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    h_pinv = (v * inv_w) @ v.T
    if keep.all():
        null_mask = np.zeros(h.shape[0], dtype=bool)
    else:
        null_mask = np.any(np.abs(v[:, ~keep]) > 1e-6, axis=1)
    return h_pinv @ g, h_pinv, null_mask


def fit_logit_binary(X: np.ndarray, y: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10) -> LogitFit:
    """Logistic regression of 0/1 `y` on `X` (n, p) with an intercept, by damped Newton-Raphson.

    The input is assumed valid (finite X, y in {0, 1}; sim.methods.propensity.fit_propensity
    checks it). Covariates are centred and scaled internally (for conditioning), then the
    coefficients are transformed back. Singular Hessians (constant or collinear columns,
    separation) use an eigen-pseudo-inverse instead of failing. `separation` is True when some
    fitted probabilities reach 0/1 (|logit| > 18), the signature of complete or quasi-complete
    separation; the MLE then does not exist and coefficients/SEs are meaningless.
    """
    n, p = X.shape
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
        mu_hat = expit_numpy(eta)
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
    mu_hat = expit_numpy(eta)
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

    separation = bool(np.any(np.abs(eta) > SEPARATION_ETA)) or ybar in (0.0, 1.0)
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
    return LogitFit(coef=coef, se=se, eta=eta, loglik=ll, converged=converged, separation=separation,
                    message=message, n_iter=it)


# ------------------------------------------------------------------ the treated share
def intercept_for_share(eta: np.ndarray, share: float, *, bracket: tuple[float, float] | None = None,
                        xtol: float = 1e-12) -> float:
    """The intercept a with mean(expit(a + eta)) = share, by brentq on `bracket`; None: a bracket
    from the data, (-max(eta) - 40, -min(eta) + 40), which holds the root for any finite eta."""
    from scipy import optimize

    if bracket is None:
        lo, hi = -float(eta.max()) - 40.0, -float(eta.min()) + 40.0
    else:
        lo, hi = bracket
    return float(optimize.brentq(lambda a: expit(a + eta).mean() - share, lo, hi, xtol=xtol))

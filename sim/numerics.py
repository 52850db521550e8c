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
  `fit_logit_binary_batch` is its compiled twin for many samples at once (the batched replicate
  pipeline), which hands the awkward ones back to it.
- `intercept_for_share`: the intercept a with mean(expit(a + eta)) = share, by brentq.

Only numpy is imported at module level (sim.match, the command-line tool, imports this through
the PS fit); scipy and numba are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

__all__ = ["expit", "expit_numpy", "fit_logit_fractional", "LogitFit", "fit_logit_binary",
           "fit_logit_binary_batch", "intercept_for_share", "INTERCEPT_BRACKET"]

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


#: why fit_logit_binary_batch leaves a problem to fit_logit_binary (its status codes; 0: fitted)
BATCH_FIT_STATUS = {1: "single outcome class", 2: "constant covariate", 3: "singular Hessian",
                    4: "no convergence", 5: "separation"}


def fit_logit_binary_batch(X: np.ndarray, y: np.ndarray, *, max_iter: int = 50,
                           tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """`fit_logit_binary` for B problems at once (X: (B, n, p), y: (B, n) of 0/1), compiled
    (numba): the same standardisation, start, damped Newton steps and stopping rule, with a
    Cholesky solve in place of the eigen-decomposition. Returns the linear predictors (B, n) and a
    status per problem: 0 for a regular fit (agreeing with fit_logit_binary to ~1e-13), otherwise
    a BATCH_FIT_STATUS code, for the problems the caller must fit with fit_logit_binary (where it
    would use a pseudo-inverse, flag separation, or not converge). Each problem is fitted on its
    own, so the result does not depend on B."""
    return _batch_fit_kernel()(np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                               int(max_iter), float(tol), SINGULAR_RTOL, SEPARATION_ETA)


_BATCH_FIT: list = []


def _batch_fit_kernel():
    """The compiled kernel, built on first use (numba is imported only by the processes that fit
    batches) and cached on disk by numba."""
    if not _BATCH_FIT:
        import numba

        g = globals()
        for name in ("_loglik_reusing", "_linear", "_solve_spd"):
            if not hasattr(g[name], "py_func"):
                g[name] = numba.njit(cache=True)(g[name])
        _BATCH_FIT.append(numba.njit(cache=True)(_fit_logit_batch))
    return _BATCH_FIT[0]


def _loglik_reusing(eta, y, e):
    """Log-likelihood at eta; e receives exp(-|eta|), which the next Newton step reuses."""
    s = 0.0
    for i in range(eta.size):
        ei = math.exp(-abs(eta[i]))
        e[i] = ei
        x = -eta[i] if y[i] > 0 else eta[i]
        s -= max(x, 0.0) + math.log1p(ei)
    return s


def _linear(Z, beta):
    n, q = Z.shape
    eta = np.zeros(n)
    for i in range(n):
        s = 0.0
        for j in range(q):
            s += Z[i, j] * beta[j]
        eta[i] = s
    return eta


def _solve_spd(H, g, rtol):
    """H^-1 g by Cholesky; empty when H is not safely non-singular: when its condition number may
    exceed 1/rtol, where fit_logit_binary would switch to a pseudo-inverse (bounded through
    ||H||_F ||H^-1||_F >= cond(H), so only clearly regular Hessians pass)."""
    q = g.size
    L = np.zeros((q, q))
    for j in range(q):
        s = H[j, j]
        for k in range(j):
            s -= L[j, k] ** 2
        if not s > 0.0:
            return np.empty(0)
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, q):
            t = H[i, j]
            for k in range(j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / L[j, j]
    inv = np.zeros((q, q))  # H^-1, column by column
    step = np.zeros(q)
    for c in range(q + 1):
        rhs = np.zeros(q)
        if c < q:
            rhs[c] = 1.0
        else:
            rhs[:] = g
        for i in range(q):  # L y = rhs
            t = rhs[i]
            for k in range(i):
                t -= L[i, k] * rhs[k]
            rhs[i] = t / L[i, i]
        for i in range(q - 1, -1, -1):  # L' x = y
            t = rhs[i]
            for k in range(i + 1, q):
                t -= L[k, i] * rhs[k]
            rhs[i] = t / L[i, i]
        if c < q:
            inv[:, c] = rhs
        else:
            step = rhs
    if math.sqrt(np.sum(H * H)) * math.sqrt(np.sum(inv * inv)) * rtol >= 1.0:
        return np.empty(0)
    return step


def _fit_logit_batch(X, y, max_iter, tol, rtol, sep_eta):
    """fit_logit_binary's Newton for each of B problems (compiled; see fit_logit_binary_batch)."""
    B, n, p = X.shape
    q = p + 1
    eta_out = np.zeros((B, n))
    status = np.zeros(B, np.int8)
    Z = np.empty((n, q))
    for b in range(B):
        yb = y[b]
        ybar = 0.0
        for i in range(n):
            ybar += yb[i]
        ybar /= n
        if ybar <= 0.0 or ybar >= 1.0:
            status[b] = 1
            continue
        for i in range(n):
            Z[i, 0] = 1.0
        for j in range(p):
            mu = 0.0
            for i in range(n):
                mu += X[b, i, j]
            mu /= n
            v = 0.0
            for i in range(n):
                v += (X[b, i, j] - mu) ** 2
            sd = math.sqrt(v / n)
            if sd <= 1e-12 * max(1.0, abs(mu)):
                status[b] = 2
                break
            for i in range(n):
                Z[i, j + 1] = (X[b, i, j] - mu) / sd
        if status[b]:
            continue
        beta = np.zeros(q)
        beta[0] = math.log(ybar / (1.0 - ybar))
        eta = _linear(Z, beta)
        e = np.empty(n)
        e_new = np.empty(n)
        ll = _loglik_reusing(eta, yb, e)
        converged = False
        for _ in range(max_iter):
            g = np.zeros(q)
            H = np.zeros((q, q))
            for i in range(n):
                m = 1.0 / (1.0 + e[i]) if eta[i] >= 0 else e[i] / (1.0 + e[i])  # expit(eta)
                r = yb[i] - m
                w = m * (1.0 - m)
                for j in range(q):
                    g[j] += Z[i, j] * r
                    wz = w * Z[i, j]
                    for k in range(j + 1):
                        H[j, k] += wz * Z[i, k]
            for j in range(q):
                for k in range(j):
                    H[k, j] = H[j, k]
            step = _solve_spd(H, g, rtol)
            if step.size == 0:
                status[b] = 3
                break
            frac = 1.0
            beta_new = beta
            eta_new = eta
            ll_new = ll
            for _h in range(30):
                beta_new = beta + frac * step
                eta_new = _linear(Z, beta_new)
                ll_new = _loglik_reusing(eta_new, yb, e_new)
                if ll_new >= ll - 1e-12 * (1.0 + abs(ll)):
                    break
                frac *= 0.5
            max_step = np.max(np.abs(frac * step))
            d_ll = ll_new - ll
            beta, eta, ll = beta_new, eta_new, ll_new
            e, e_new = e_new, e
            if max_step < 1e-8 or (abs(d_ll) <= tol * (1.0 + abs(ll)) and max_step < 1e-4):
                converged = True
                break
        if status[b]:
            continue
        if not converged:
            status[b] = 4
            continue
        if np.max(np.abs(eta)) > sep_eta:
            status[b] = 5
            continue
        eta_out[b] = eta
    return eta_out, status


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

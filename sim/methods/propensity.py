"""Logistic propensity-score model fitted by Newton-Raphson (IRLS) in numpy
(the algorithm: sim.numerics.fit_logit_binary).

Why our own fitter: it is called ~10^5 times in a Monte Carlo loop, so it must
be fast (no statsmodels/pandas overhead) and must never raise on the awkward
samples a simulation produces (separation, tiny n, constant columns). Problems
are *reported* through ``converged``, ``separation`` and ``message`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.numerics import expit_numpy, fit_logit_binary

__all__ = ["PropensityFit", "fit_propensity", "odds_ratios", "odds_ratio_table"]

#: fitted probabilities are clipped into [PS_EPS, 1 - PS_EPS] so logit(ps) stays finite.
PS_EPS = 1e-10
_LOGIT_MAX = float(np.log((1.0 - PS_EPS) / PS_EPS))


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


def fit_propensity(
    X: np.ndarray, treated: np.ndarray, *, max_iter: int = 50, tol: float = 1e-10
) -> PropensityFit:
    """Fit logit P(treated=1 | X) with an intercept by damped Newton-Raphson.

    Checks the input (ValueError naming what is wrong), then fits with
    :func:`sim.numerics.fit_logit_binary` (standardised columns, pseudo-inverse on
    a singular Hessian, separation flagged, never raises) and clips the PS.
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
    if X.shape[0] < 1:
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
    fit = fit_logit_binary(X, tf, max_iter=max_iter, tol=tol)
    logit_ps = np.clip(fit.eta, -_LOGIT_MAX, _LOGIT_MAX)
    ps = expit_numpy(logit_ps)
    return PropensityFit(ps=ps, logit_ps=logit_ps, coef=fit.coef, se=fit.se, converged=fit.converged,
                         separation=fit.separation, message=fit.message, n_iter=fit.n_iter, loglik=fit.loglik)


def odds_ratios(fit: PropensityFit, names, *, include_intercept: bool = False) -> dict[str, np.ndarray]:
    """The columns of :func:`odds_ratio_table` as arrays (covariate, coef, se, odds_ratio, ci_low,
    ci_high, p_value). Normal quantile and tail from the standard library (statistics.NormalDist,
    math.erfc): `python -m sim.match` writes this table without importing scipy or pandas."""
    import math
    from statistics import NormalDist

    names = list(names)
    p = len(fit.coef) - 1
    if len(names) != p:
        raise ValueError(f"names must have {p} entries (one per covariate); got {len(names)}")
    coef = np.asarray(fit.coef, float)
    se = np.asarray(fit.se, float)
    z = NormalDist().inv_cdf(0.975)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wald = np.abs(coef / se)
        pval = np.array([math.erfc(w / math.sqrt(2.0)) if np.isfinite(w) else (0.0 if w > 0 else math.nan)
                         for w in wald])  # 2 P(Z > |w|)
        out = {"covariate": np.array(["(intercept)"] + names, dtype=object), "coef": coef, "se": se,
               "odds_ratio": np.exp(coef), "ci_low": np.exp(coef - z * se), "ci_high": np.exp(coef + z * se),
               "p_value": pval}
    if not include_intercept:
        out = {k: v[1:] for k, v in out.items()}
    return out


def odds_ratio_table(fit: PropensityFit, names, *, include_intercept: bool = False):
    """Odds ratios with Wald 95% CIs and p-values (the paper's Table 3 layout), as a DataFrame.

    ``names`` lists the covariates (without the intercept), in column order of X.
    """
    import pandas as pd

    return pd.DataFrame(odds_ratios(fit, names, include_intercept=include_intercept))

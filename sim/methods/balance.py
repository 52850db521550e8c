"""Covariate balance diagnostics: standardised mean differences and variance ratios.

Why the pooled denominator is recomputed on the sample given: that is what the
paper (and Austin 2011) report -- before matching on all units, after matching
on the matched units only. ``denominator="treated"`` gives MatchIt's ATT
convention instead (SD of the treated units of the sample given).

Weights: units with weight 0 are ignored; means are weighted and variances use
the unbiased reliability-weight formula
    var = sum w (x - m)^2 / (sum w - sum w^2 / sum w),
which reduces to the ordinary ddof=1 variance when all weights are 1.

Zero-variance columns (denominator 0): SMD is 0 if the group means are equal,
else +/-inf; variance ratio is 1 if both variances are 0, inf if only the
control variance is 0. No runtime warnings are emitted.
"""

from __future__ import annotations

import numpy as np

__all__ = ["smd", "variance_ratio", "balance_table", "max_abs_smd"]

DENOMINATORS = ("pooled", "treated")


def _prep(X, treated, weights):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be a 1-D or 2-D array; got shape {X.shape}")
    n = X.shape[0]
    t = np.asarray(treated)
    if t.shape != (n,):
        raise ValueError(f"treated must be a 1-D array of length {n}; got shape {t.shape}")
    tf = t.astype(float)
    if not np.all((tf == 0) | (tf == 1)):
        raise ValueError("treated must contain only 0/1 (or False/True)")
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (n,):
            raise ValueError(f"weights must be a 1-D array of length {n}; got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and >= 0")
    return X, tf == 1, w


def _wmean_var(X, w):
    """Weighted column means and unbiased (reliability-weight) variances."""
    sw = w.sum()
    if sw <= 0:
        nan = np.full(X.shape[1], np.nan)
        return nan, nan
    m = (w @ X) / sw
    sw2 = (w * w).sum()
    denom = sw - sw2 / sw
    if denom <= 0:
        return m, np.full(X.shape[1], np.nan)
    v = (w @ (X - m) ** 2) / denom
    return m, v


def _group_stats(X, t, w):
    mt, vt = _wmean_var(X[t], w[t])
    mc, vc = _wmean_var(X[~t], w[~t])
    return mt, vt, mc, vc


def _ratio(num, den):
    """num/den with 0/0 -> 0 and x/0 -> +/-inf, silently."""
    num = np.asarray(num, float)
    den = np.asarray(den, float)
    out = np.empty(np.broadcast(num, den).shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[...] = num / den
    zero = den == 0
    out[zero & (num == 0)] = 0.0
    out[zero & (num > 0)] = np.inf
    out[zero & (num < 0)] = -np.inf
    return out


def smd(X, treated, weights=None, denominator: str = "pooled") -> np.ndarray:
    """Standardised mean difference (treated - control) per column of X.

    ``denominator``: "pooled" = sqrt((s_t^2 + s_c^2)/2) on the sample given,
    "treated" = s_t. With ``weights`` the means and SDs are weighted (units
    with weight 0 drop out), e.g. pass matching weights for after-matching SMDs.
    """
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator must be one of {DENOMINATORS}; got {denominator!r}")
    X, t, w = _prep(X, treated, weights)
    mt, vt, mc, vc = _group_stats(X, t, w)
    if denominator == "pooled":
        sd = np.sqrt((vt + vc) / 2.0)
    else:
        sd = np.sqrt(vt)
    return _ratio(mt - mc, sd)


def variance_ratio(X, treated, weights=None) -> np.ndarray:
    """Variance ratio s_t^2 / s_c^2 per column (1 means equal spread)."""
    X, t, w = _prep(X, treated, weights)
    _, vt, _, vc = _group_stats(X, t, w)
    out = _ratio(vt, vc)
    out[(vt == 0) & (vc == 0)] = 1.0
    return out


def balance_table(X, treated, names, matched_weights, denominator: str = "pooled"):
    """Before/after balance as a DataFrame (covariate, smd_before, smd_after, vr_before, vr_after).

    "before" uses all units unweighted; "after" uses ``matched_weights`` (e.g.
    ``MatchResult.weights``; units with weight 0 are excluded).
    """
    import pandas as pd

    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    names = list(names)
    if len(names) != X.shape[1]:
        raise ValueError(f"names must have {X.shape[1]} entries (one per column); got {len(names)}")
    return pd.DataFrame(
        {
            "covariate": names,
            "smd_before": smd(X, treated, None, denominator),
            "smd_after": smd(X, treated, matched_weights, denominator),
            "vr_before": variance_ratio(X, treated, None),
            "vr_after": variance_ratio(X, treated, matched_weights),
        }
    )


def max_abs_smd(smds) -> float:
    """Largest |SMD| (NaN ignored); accepts an array or a balance table (uses smd_after)."""
    if hasattr(smds, "columns"):
        smds = smds["smd_after"].to_numpy()
    a = np.abs(np.asarray(smds, dtype=float))
    a = a[~np.isnan(a)]
    return float(a.max()) if a.size else float("nan")

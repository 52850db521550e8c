"""Equivalence testing: two one-sided t-tests (TOST, Schuirmann 1987) against ±margin.

Why: a non-significant difference is not evidence of no difference. TOST asks the question the
paper's conclusion implies: is the difference in mean change inside ±1 MCID? H0 is
|τ| >= margin; p = max(p_lower, p_upper) of the two one-sided tests; equivalence is declared when
p <= alpha, i.e. when the (1 - 2 alpha) CI (90 % for alpha = 0.05) lies inside ±margin. Matches
``statsmodels.stats.weightstats.ttost_ind`` / ``ttost_paired``; ``tost_from_summary`` works from
published means, SDs and sizes (the paper's Table 5) without individual data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from sim.methods.outcomes import NAN, TestResult, _paired, _unpaired

__all__ = ["TostResult", "tost", "tost_from_summary", "tost_summary"]

USEVARS = ("unequal", "pooled")


@dataclass(frozen=True)
class TostResult(TestResult):
    """A TestResult (estimate, se, 1 - 2 alpha CI, p = max of the one-sided p's, statistic = t of
    the binding side) plus the equivalence decision and both one-sided tests."""

    equivalent: bool = False
    margin: float = NAN
    alpha: float = NAN
    p_lower: float = NAN  # H0: τ <= -margin
    p_upper: float = NAN  # H0: τ >= +margin
    df: float = NAN


def _check(margin, alpha, usevar):
    if not (isinstance(margin, (int, float, np.number)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0; got {margin!r}")
    if not (isinstance(alpha, (int, float, np.number)) and 0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5); got {alpha!r}")
    if usevar not in USEVARS:
        raise ValueError(f"usevar must be one of {USEVARS}; got {usevar!r}")


def _two_sample(m1, v1, n1, m0, v0, n0, usevar):
    """Estimate, SE and df of m1 - m0 from means, variances and sizes."""
    if usevar == "pooled":
        df = n1 + n0 - 2.0
        se = math.sqrt(((n1 - 1) * v1 + (n0 - 1) * v0) / df * (1.0 / n1 + 1.0 / n0))
    else:
        a, b = v1 / n1, v0 / n0
        se = math.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n0 - 1)) if se > 0 else NAN
    return m1 - m0, se, df


def _result(name, est, se, df, margin, alpha, n1, n0) -> TostResult:
    common = dict(estimate=est, se=se, n_treated=n1, n_control=n0, margin=float(margin),
                  alpha=float(alpha), df=df)
    if not (se > 0 and math.isfinite(se)):
        return TostResult(name, reason="zero variance: t statistics undefined", **common)
    t_low, t_upp = (est + margin) / se, (est - margin) / se
    p_low, p_upp = float(special.stdtr(df, -t_low)), float(special.stdtr(df, t_upp))
    q = float(special.stdtrit(df, 1.0 - alpha))
    p = max(p_low, p_upp)
    return TostResult(name, ci_low=est - q * se, ci_high=est + q * se, p_value=p,
                      statistic=t_low if p_low >= p_upp else t_upp, equivalent=p <= alpha,
                      p_lower=p_low, p_upper=p_upp, **common)


def tost(y_treated, y_control, margin, *, alpha=0.05, paired=False, usevar="unequal") -> TostResult:
    """TOST of treated - control within ±margin (paired: mean within-pair difference).

    Unpaired: NaNs dropped per arm, Welch (``usevar="unequal"``) or pooled variance. Paired:
    pairs with a NaN dropped (``usevar`` unused). Too few values: NaN result with ``reason``.
    """
    _check(margin, alpha, usevar)
    if paired:
        a, b = _paired(y_treated, y_control)
        m = a.size
        if m < 2:
            return TostResult("tost_paired", n_treated=m, n_control=m, margin=float(margin),
                              alpha=float(alpha), reason="fewer than 2 complete pairs")
        d = a - b
        return _result("tost_paired", float(d.mean()), float(d.std(ddof=1)) / math.sqrt(m), m - 1.0,
                       margin, alpha, m, m)
    a, b = _unpaired(y_treated, y_control)
    if a.size < 2 or b.size < 2:
        return TostResult("tost", n_treated=a.size, n_control=b.size, margin=float(margin),
                          alpha=float(alpha), reason="need >=2 values per arm")
    est, se, df = _two_sample(float(a.mean()), float(a.var(ddof=1)), a.size,
                              float(b.mean()), float(b.var(ddof=1)), b.size, usevar)
    return _result("tost", est, se, df, margin, alpha, a.size, b.size)


def tost_from_summary(m1, s1, n1, m0, s0, n0, margin, alpha=0.05, *, usevar="unequal") -> TostResult:
    """Unpaired TOST from published summaries: means m, SDs s (ddof = 1) and sizes n per arm."""
    _check(margin, alpha, usevar)
    for name, v in (("m1", m1), ("m0", m0), ("s1", s1), ("s0", s0)):
        if not (isinstance(v, (int, float, np.number)) and math.isfinite(v)):
            raise ValueError(f"{name} must be a finite number; got {v!r}")
    for name, v in (("s1", s1), ("s0", s0)):
        if v < 0:
            raise ValueError(f"{name} must be >= 0; got {v!r}")
    for name, v in (("n1", n1), ("n0", n0)):
        if not (isinstance(v, (int, np.integer)) and v >= 2):
            raise ValueError(f"{name} must be an integer >= 2; got {v!r}")
    est, se, df = _two_sample(float(m1), float(s1) ** 2, int(n1), float(m0), float(s0) ** 2, int(n0), usevar)
    return _result("tost", est, se, df, margin, alpha, int(n1), int(n0))


def tost_summary(y_treated, y_control, *, mcid, alpha=0.05, paired=False,
                 usevar="unequal") -> dict[str, float]:
    """Per-replicate scalars for the engine, margin = one MCID: tost_p, equivalent (1.0/0.0,
    NaN if undefined) and the (1 - 2 alpha) CI as ci90_low/ci90_high (named for alpha = 0.05)."""
    r = tost(y_treated, y_control, mcid, alpha=alpha, paired=paired, usevar=usevar)
    eq = float(r.equivalent) if math.isfinite(r.p_value) else NAN
    return {"tost_p": r.p_value, "equivalent": eq, "ci90_low": r.ci_low, "ci90_high": r.ci_high}

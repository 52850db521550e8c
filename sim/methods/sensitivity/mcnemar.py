"""Rosenbaum bounds for matched pairs with a binary (0/1) outcome: McNemar's test on the discordant
pairs (Rosenbaum 2002, Observational Studies, 2nd ed., ch. 4; rbounds::binarysens).

Why: with a 0/1 outcome a pair tells something only when it is discordant (one of the two had the
event). Of the D discordant pairs, T = those in which the treated unit has outcome 1. Without hidden
bias each discordant pair is that way round with probability 1/2; with bias at most Γ it is at most
p+ = Γ/(1+Γ), so the one-sided p-value is at most P(Binomial(D, p+) >= T) (the worst case
allocation; exact, no approximation). The same as the signed-rank bound on the differences
(``rosenbaum.signed_rank_bound(..., method="exact")``): there every non-zero |difference| is 1, so
all ranks tie and the statistic counts the positive pairs.

Conventions as ``rosenbaum``: ``alternative="greater"`` is τ > 0 (treated more often 1, with
n_plus = pairs treated 1 / control 0 as T), ``"less"`` the same on n_minus (treated 0 / control 1);
the sensitivity value Γ* is the largest Γ at which the bound stays <= alpha (1.0 when not even at
Γ = 1), in closed form: P(Bin(D, p) >= T) is the regularised incomplete beta I_p(T, D - T + 1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from sim.methods.sensitivity.rosenbaum import GAMMA_MAX

__all__ = ["discordant_counts", "mcnemar_bound", "mcnemar_sensitivity_value"]

ALTERNATIVES = ("greater", "less")


def discordant_counts(d) -> tuple[int, int]:
    """(n_plus, n_minus): pairs with difference +1 (treated 1, control 0) and -1, from pair
    differences treated - control of a 0/1 outcome (NaN pairs dropped; 0 = concordant)."""
    a = np.asarray(d, dtype=float)
    a = a[~np.isnan(a)]
    bad = a[~np.isin(a, (-1.0, 0.0, 1.0))]
    if bad.size:
        raise ValueError(f"differences of a 0/1 outcome must be -1, 0 or 1; got {bad[0]!r}")
    return int((a > 0).sum()), int((a < 0).sum())


def _counts(n_plus, n_minus) -> tuple[int, int]:
    out = []
    for name, v in (("n_plus", n_plus), ("n_minus", n_minus)):
        if isinstance(v, bool) or not float(v).is_integer() or v < 0:
            raise ValueError(f"{name} must be a count (integer >= 0); got {v!r}")
        out.append(int(v))
    return out[0], out[1]


def _check(alternative, alpha=None):
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}")
    if alpha is not None and not (0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5) (a one-sided level); got {alpha!r}")


def mcnemar_bound(n_plus, n_minus, gamma, *, alternative="greater"):
    """Upper bound on the one-sided McNemar p-value at Γ (a number or an array of Γ >= 1):
    P(Binomial(D, Γ/(1+Γ)) >= T), D = n_plus + n_minus, T = n_plus ("greater") or n_minus
    ("less"). 1.0 without discordant pairs."""
    _check(alternative)
    n_plus, n_minus = _counts(n_plus, n_minus)
    g = np.asarray(gamma, dtype=float)
    if g.size == 0 or not np.all(np.isfinite(g)) or np.any(g < 1):
        raise ValueError(f"gamma must be finite numbers >= 1; got {gamma!r}")
    t, n = (n_plus if alternative == "greater" else n_minus), n_plus + n_minus
    p = stats.binom.sf(t - 1, n, g / (1.0 + g)) if n else np.ones(g.shape)
    p = np.minimum(p, 1.0)
    return float(p) if p.ndim == 0 else p


def mcnemar_sensitivity_value(n_plus, n_minus, alpha=0.05, *, alternative="greater") -> float:
    """Γ*: the largest Γ at which the one-sided bound stays <= alpha (1.0 if not even at Γ = 1;
    inf beyond ``GAMMA_MAX``). Closed form through the inverse incomplete beta function."""
    _check(alternative, alpha)
    n_plus, n_minus = _counts(n_plus, n_minus)
    t, n = (n_plus if alternative == "greater" else n_minus), n_plus + n_minus
    if t == 0 or mcnemar_bound(n_plus, n_minus, 1.0, alternative=alternative) > alpha:
        return 1.0
    p = float(special.betaincinv(t, n - t + 1, alpha))
    g = p / (1.0 - p) if p < 1 else math.inf
    return math.inf if g > GAMMA_MAX else max(g, 1.0)

"""Rosenbaum sensitivity analysis for 1:1 matched pairs (Wilcoxon signed-rank statistic).

Why: a matched comparison is only as good as the matching on *observed* covariates. Rosenbaum's
Γ asks how strongly an unobserved covariate would have to tilt the odds of treatment within a pair
(by a factor Γ) before the conclusion changes (Rosenbaum 2002, Observational Studies, ch. 4;
DOS2::senWilcox, rbounds::psens/hlsens).

Conventions (the whole module):
- ``d`` are pair differences treated - control on the improvement scale (positive = treatment
  better); NaN pairs (death) are dropped. Testing H0: τ = tau0 uses d - tau0; tied |differences|
  get average ranks. Zero differences (``zero_method``, as scipy.stats.wilcoxon): "wilcox" (the
  default) drops them before ranking; "pratt" ranks all |d - tau0| and then drops the zeros from
  the statistic, its null mean and variance, so the other pairs keep the higher ranks the zeros
  pushed them to (DOS2::senWilcox; rbounds::psens >= 0.5 and DOS2::senWilcoxExact drop zeros
  first, as "wilcox"). Only tests at a tau0 equal to some difference see zeros: the
  Hodges-Lehmann estimates and intervals (inverted between Walsh averages) do not depend on it.
  Differences are compared after rounding to 12 digits relative to the largest |difference|, so
  floating-point noise (0.5 - 0.437 vs 0.063) neither breaks ties nor hides zeros.
- ``alternative="greater"``: τ > tau0, statistic T = sum of the ranks of positive d - tau0;
  ``"less"``: τ < tau0, the same on tau0 - d. The p-value *upper bound* at Γ is
  P(Σ r_i B_i >= T) with independent B_i ~ Bernoulli(Γ/(1+Γ)), the worst case allocation.
- ``method="exact"``: that distribution by dynamic programming over doubled (integer) ranks,
  ties included; ``"normal"``: mean p+ Σr, variance p+(1-p+) Σr² over the actual (tied) ranks and
  *no continuity correction* (as rbounds::psens, DOS2::senWilcox and scipy.stats.wilcoxon's
  default; at Γ = 1 it is exactly scipy's ``method="asymptotic"``, tie correction included);
  ``"auto"``: exact for at most ``EXACT_MAX_N`` = 50 non-zero differences, normal beyond (the
  bounding distribution is skewed for Γ > 1: with 50 pairs the normal p is within 0.01 of the
  exact one for Γ <= 1.5, but up to ~0.017 too small near the centre at Γ = 3).
- A result "holds at Γ" when its bound is <= alpha. Sensitivity values (Γ*, the MCID Γ) are
  1.0 when the result does not hold even at Γ = 1 (check the Γ = 1 p-value to tell "exactly 1"
  apart), and inf only if it still holds at ``GAMMA_MAX`` (unreachable with >= 1 non-zero pair:
  the bound tends to 1, or 1/2 for the normal approximation with all pairs positive).
- Related modules: ``mcnemar`` (the bound for a 0/1 outcome, on the discordant pairs) and
  ``amplification`` (Γ as (Λ, Δ); its functions are importable from here as before).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from sim.methods.outcomes import _avg_ranks, _paired
from sim.methods.sensitivity.amplification import amplification_gamma, amplification_table, amplify  # noqa: F401

__all__ = [
    "EXACT_MAX_N", "GAMMA_MAX", "signed_rank_bound", "signed_rank_bounds", "sensitivity_value", "hodges_lehmann",
    "hl_confidence_interval", "amplify", "amplification_gamma", "amplification_table",
    "mcid_exclusion", "largest_gamma_excluding", "sensitivity_table", "rosenbaum_summary",
]

EXACT_MAX_N = 50
GAMMA_MAX = 1e6
ALTERNATIVES = ("greater", "less")
METHODS = ("auto", "exact", "normal")
ZERO_METHODS = ("wilcox", "pratt")


# ----------------------------------------------------------------------------- validation
def _diffs(d) -> np.ndarray:
    a = np.asarray(d, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"d must be a 1-D array of pair differences; got shape {a.shape}")
    a = a[~np.isnan(a)]
    if not np.all(np.isfinite(a)):
        raise ValueError("d must not contain inf (NaN pairs are dropped)")
    return a


def _gammas(gamma, name="gamma", single=False) -> np.ndarray:
    g = np.atleast_1d(np.asarray(gamma, dtype=float))
    bad = g.ndim != 1 or g.size == 0 or (single and g.size != 1)
    if bad or not np.all(np.isfinite(g)) or np.any(g < 1):
        what = "a finite number" if single else "finite numbers"
        raise ValueError(f"{name} must be {what} >= 1; got {gamma!r}")
    return g


def _check(alternative=None, method=None, alpha=None, tau0=None, zero_method=None):
    if zero_method is not None and zero_method not in ZERO_METHODS:
        raise ValueError(f"zero_method must be one of {ZERO_METHODS}; got {zero_method!r}")
    if alternative is not None and alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}")
    if method is not None and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if alpha is not None and not (0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5) (a one-sided level); got {alpha!r}")
    if tau0 is not None and not np.isfinite(tau0):
        raise ValueError(f"tau0 must be a finite number; got {tau0!r}")


def _mcid(mcid) -> float:
    try:
        v = float(mcid)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"mcid must be a finite number > 0 (improvement scale); got {mcid!r}")
    return v


# ----------------------------------------------------------------------------- core
def _signed_ranks(x: np.ndarray, zero_method: str = "wilcox"):
    """Average ranks of the non-zero |x| and T = sum of the ranks of the positive x.

    "wilcox" ranks the non-zero |x| only; "pratt" ranks all |x| and then drops the zeros.
    """
    s = float(np.max(np.abs(x))) if x.size else 0.0
    if s == 0.0:
        return np.empty(0), 0.0
    x = np.round(x / s, 12)
    if zero_method == "pratt":
        ranks, _ = _avg_ranks(np.abs(x))
        ranks, x = ranks[x != 0], x[x != 0]
    else:
        x = x[x != 0]
        ranks, _ = _avg_ranks(np.abs(x))
    return ranks, float(ranks[x > 0].sum())


def _oriented(d, tau0, alternative):
    return d - tau0 if alternative == "greater" else tau0 - d


def _exact_tail(ranks: np.ndarray, t: float, p: np.ndarray) -> np.ndarray:
    """P(Σ r_i B_i >= t), B_i ~ Bernoulli(p), for each p: DP over doubled integer ranks."""
    r2 = np.sort(np.rint(2 * ranks).astype(np.int64))
    t2 = int(round(2 * t))
    p = p[:, None]
    q = 1.0 - p
    pmf = np.zeros((p.shape[0], int(r2.sum()) + 1))
    pmf[:, 0] = 1.0
    top = 0  # pmf[:, top + 1:] is still zero
    for r in r2:
        new = q * pmf[:, : top + r + 1]
        new[:, r:] += p * pmf[:, : top + 1]
        top += r
        pmf[:, : top + 1] = new
    return pmf[:, t2:].sum(axis=1)


def _normal_tail(ranks: np.ndarray, t: float, p: np.ndarray) -> np.ndarray:
    s1 = ranks.sum()
    s2 = float(np.dot(ranks, ranks))
    z = (t - p * s1) / np.sqrt(p * (1 - p) * s2)
    return special.ndtr(-z)


def _use_exact(n: int, method: str) -> bool:
    return method == "exact" or (method == "auto" and n <= EXACT_MAX_N)


def _tail(ranks, t, gammas: np.ndarray, method: str) -> np.ndarray:
    if ranks.size == 0:
        return np.ones(gammas.shape)
    p = gammas / (1.0 + gammas)
    if _use_exact(ranks.size, method):
        return np.minimum(_exact_tail(ranks, t, p), 1.0)
    return _normal_tail(ranks, t, p)


def signed_rank_bound(d, gamma, *, tau0=0.0, alternative="greater", method="auto",
                      zero_method="wilcox") -> float:
    """Upper bound on the one-sided signed-rank p-value of H0: τ = tau0 at sensitivity Γ >= 1.

    ``zero_method="pratt"`` ranks zero differences before dropping them, as DOS2::senWilcox
    does (it reproduces Rosenbaum 2002, Table 4.3); "wilcox" drops them first, as rbounds::psens.
    """
    _check(alternative, method, tau0=tau0, zero_method=zero_method)
    g = _gammas(gamma, single=True)
    ranks, t = _signed_ranks(_oriented(_diffs(d), tau0, alternative), zero_method)
    return float(_tail(ranks, t, g, method)[0])


def signed_rank_bounds(d, gammas, *, tau0=0.0, alternative="greater", method="auto",
                       zero_method="wilcox") -> np.ndarray:
    """``signed_rank_bound`` at many Γ at once (one pass of the exact recursion for all of them):
    e.g. a fine Γ grid to draw the bound as the smooth curve it is."""
    _check(alternative, method, tau0=tau0, zero_method=zero_method)
    g = _gammas(gammas, "gammas")
    ranks, t = _signed_ranks(_oriented(_diffs(d), tau0, alternative), zero_method)
    return _tail(ranks, t, g, method)


def _gamma_star_normal(ranks, t, alpha) -> float:
    """Closed form: (T - p S1)^2 = z^2 p (1-p) S2 is a quadratic in p; the smaller root is Γ*."""
    if ranks.size == 0 or _normal_tail(ranks, t, np.array([0.5]))[0] > alpha:
        return 1.0
    s1, s2 = ranks.sum(), float(np.dot(ranks, ranks))
    z2 = special.ndtri(1.0 - alpha) ** 2
    a, b, c = s1 * s1 + z2 * s2, 2 * t * s1 + z2 * s2, t * t
    p = 2 * c / (b + math.sqrt(max(b * b - 4 * a * c, 0.0)))  # stable smaller root
    g = p / (1 - p) if p < 1 else math.inf
    return math.inf if g > GAMMA_MAX else max(float(g), 1.0)


def _gamma_star(ranks, t, alpha, method) -> float:
    if ranks.size == 0:
        return 1.0
    if not _use_exact(ranks.size, method):
        return _gamma_star_normal(ranks, t, alpha)

    def f(log_g):
        return _tail(ranks, t, np.array([math.exp(log_g)]), "exact")[0] - alpha

    if f(0.0) > 0:
        return 1.0
    if f(math.log(GAMMA_MAX)) <= 0:
        return math.inf
    return math.exp(optimize.brentq(f, 0.0, math.log(GAMMA_MAX), xtol=1e-13, rtol=4 * np.finfo(float).eps))


def sensitivity_value(d, alpha=0.05, *, tau0=0.0, alternative="greater", method="auto",
                      zero_method="wilcox") -> float:
    """Γ*: the largest Γ at which the one-sided bound stays <= alpha (1.0 if not even at Γ = 1).

    Exact: brentq on log Γ (the bound is continuous and increasing in Γ); normal: closed form.
    """
    _check(alternative, method, alpha, tau0, zero_method)
    ranks, t = _signed_ranks(_oriented(_diffs(d), tau0, alternative), zero_method)
    return _gamma_star(ranks, t, alpha, method)


# ----------------------------------------------------------------------------- estimates and intervals
_WALSH_LAST: tuple = (None, None, None)  #: (d's bytes, sorted Walsh averages, their distinct values)


def _walsh(d: np.ndarray, distinct: bool = False) -> np.ndarray:
    """The sorted Walsh averages (read-only), or their distinct values. The last input's are kept:
    a sensitivity table asks again at every Γ for the same differences (n(n+1)/2 of them: 12
    million for 4,867 pairs, ~1 s to sort each time)."""
    global _WALSH_LAST
    key = d.dtype.str.encode() + d.tobytes()
    last = _WALSH_LAST
    if last[0] != key:
        # row k: d[k] + d[k:] (the pairs i <= j), without triu_indices' two index arrays of that size
        w = np.sort(np.concatenate([d[k] + d[k:] for k in range(d.size)]) / 2.0)
        u = w[np.concatenate(([True], w[1:] != w[:-1]))]  # distinct values of the sorted array
        w.setflags(write=False)
        u.setflags(write=False)
        last = _WALSH_LAST = (key, w, u)
    return last[2] if distinct else last[1]


def hodges_lehmann(d, gamma=1.0) -> tuple[float, float]:
    """Interval [low, high] of Hodges-Lehmann estimates over allocations at Γ (Rosenbaum 2002 §4.3.5).

    Off its jumps T(d - τ) = #{Walsh averages > τ}; low averages sup{τ: T > p+ M} and
    inf{τ: T < p+ M} (M = n(n+1)/2), high does the same with p- = 1 - p+. Both are therefore
    Walsh-average quantiles; at Γ = 1 both equal the median of the Walsh averages.
    """
    g = float(_gammas(gamma, single=True)[0])
    a = _diffs(d)
    if a.size == 0:
        return (math.nan, math.nan)
    w = _walsh(a)
    m = w.size
    k = m * g / (1.0 + g)
    lo_f, lo_c = math.floor(k), math.ceil(k)
    low = (w[m - lo_f - 1] + w[m - lo_c]) / 2.0  # W_(M - floor k), W_(M - ceil k + 1), 1-based
    high = (w[lo_f] + w[lo_c - 1]) / 2.0  # W_(floor k + 1), W_(ceil k)
    return (float(low), float(high))


def _first_accepted(d, w, gamma, level, alternative, method) -> int:
    """Bisection over the gaps between distinct Walsh averages w: first gap j (0 = below w[0],
    len(w) = above w[-1]) where the bound at an interior τ0 exceeds level ("greater"), or the
    last such gap ("less"). Assumes the bound is monotone in τ0 (exact without ties; with
    ties nearly so)."""
    span = max(w[-1] - w[0], 1.0)

    def p_at(j):
        tau = w[0] - span if j == 0 else (w[-1] + span if j == w.size else (w[j - 1] + w[j]) / 2)
        ranks, t = _signed_ranks(_oriented(d, tau, alternative))
        return _tail(ranks, t, np.array([gamma]), method)[0]

    lo, hi = 0, w.size  # "greater": p_at(len(w)) = 1 > level
    if alternative == "greater":
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if p_at(mid) > level else (mid + 1, hi)
        return lo
    while lo < hi:  # "less": last gap with p > level; p_at(0) = 1
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if p_at(mid) > level else (lo, mid - 1)
    return lo


def hl_confidence_interval(d, gamma=1.0, alpha=0.05, *, method="auto") -> tuple[float, float]:
    """Two-sided 1 - alpha sensitivity interval for τ at Γ: the union of the CIs over allocations.

    ci_low = inf{τ0: bound for τ > τ0 exceeds alpha/2}, ci_high = sup{τ0: bound for τ < τ0
    exceeds alpha/2}. The bound only changes at Walsh averages, so both ends are Walsh averages
    (closed interval, as the classical signed-rank CI at Γ = 1), or ∓inf when even the most
    extreme statistic is not significant (few pairs).
    """
    g = float(_gammas(gamma, single=True)[0])
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    _check(method=method)
    a = _diffs(d)
    if a.size == 0:
        return (math.nan, math.nan)
    w = _walsh(a, distinct=True)
    j_lo = _first_accepted(a, w, g, alpha / 2, "greater", method)
    j_hi = _first_accepted(a, w, g, alpha / 2, "less", method)
    low = -math.inf if j_lo == 0 else float(w[j_lo - 1])
    high = math.inf if j_hi == w.size else float(w[j_hi])
    return (low, high)


# ----------------------------------------------------------------------------- MCID and tables
def _rejects(p, alpha):
    """A bound rejects at level alpha when p <= alpha (a bound equal to alpha rejects): the one rule
    behind mcid_excluded in the tables and in the Monte Carlo summaries."""
    return p <= alpha


def mcid_exclusion(d, mcid, gammas, alpha=0.05, *, method="auto", zero_method="wilcox"):
    """Can a benefit of one MCID be excluded? At each Γ the bound for H0: τ = mcid vs τ < mcid.

    Returns a DataFrame: gamma, p_upper_mcid, mcid_excluded (bound <= alpha).
    """
    import pandas as pd

    _check(method=method, alpha=alpha, zero_method=zero_method)
    g = _gammas(gammas, "gammas")
    ranks, t = _signed_ranks(_oriented(_diffs(d), _mcid(mcid), "less"), zero_method)
    p = _tail(ranks, t, g, method)
    return pd.DataFrame({"gamma": g, "p_upper_mcid": p, "mcid_excluded": _rejects(p, alpha)})


def largest_gamma_excluding(d, mcid, alpha=0.05, *, method="auto", zero_method="wilcox") -> float:
    """Largest Γ at which a benefit of one MCID is still excluded (1.0 if not even at Γ = 1)."""
    return sensitivity_value(d, alpha, tau0=_mcid(mcid), alternative="less", method=method, zero_method=zero_method)


def sensitivity_table(d, gammas, *, mcid=None, alpha=0.05, method="auto", zero_method="wilcox"):
    """One row per Γ: p_upper (one-sided, τ > 0), HL interval, two-sided 1 - alpha sensitivity
    interval, and with ``mcid`` the bound for τ < mcid and whether it is <= alpha."""
    import pandas as pd

    _check(method=method, alpha=alpha, zero_method=zero_method)
    g = _gammas(gammas, "gammas")
    a = _diffs(d)
    ranks, t = _signed_ranks(a, zero_method)
    hl = [hodges_lehmann(a, x) for x in g]
    ci = [hl_confidence_interval(a, x, alpha, method=method) for x in g]
    out = pd.DataFrame({
        "gamma": g,
        "p_upper": _tail(ranks, t, g, method),
        "hl_low": [h[0] for h in hl],
        "hl_high": [h[1] for h in hl],
        "ci_low": [c[0] for c in ci],
        "ci_high": [c[1] for c in ci],
    })
    if mcid is not None:
        m = mcid_exclusion(a, mcid, g, alpha, method=method, zero_method=zero_method)
        out["p_upper_mcid"] = m["p_upper_mcid"].to_numpy()
        out["mcid_excluded"] = m["mcid_excluded"].to_numpy()
    return out


def _gamma_key(g: float) -> str:
    return f"mcid_excluded_at_{g:g}"


def rosenbaum_summary(y_treated, y_control, *, mcid, alpha=0.05, gammas=(1.0, 1.5, 2.0),
                      method="normal") -> dict[str, float]:
    """Per-replicate scalars for the Monte Carlo engine (pairs with a NaN dropped).

    gamma_star: Γ* of "treatment better" (τ > 0) at one-sided level alpha/2, i.e. a two-sided
    level-alpha signed-rank test that rejects in the treatment's favour (so gamma_star > 1 iff
    the two-sided test at Γ = 1 does, in that direction). gamma_mcid: largest Γ at which
    H0: τ = mcid is rejected against τ < mcid at one-sided alpha. mcid_excluded_at_<g>: 1.0/0.0.
    p_upper_at_1: one-sided p for τ > 0 at Γ = 1. Default method "normal" because it is
    closed form (no root search) and this runs in the hot loop; "auto" or "exact" also work.
    """
    _check(method=method, alpha=alpha)
    mcid = _mcid(mcid)
    g = _gammas(gammas, "gammas")
    a, b = _paired(y_treated, y_control)
    d = a - b
    out = {"n_pairs_used": float(d.size)}
    keys = ["gamma_star", "gamma_mcid", *(_gamma_key(x) for x in g), "p_upper_at_1"]
    if d.size == 0:
        return {**out, **dict.fromkeys(keys, math.nan)}
    r_pos, t_pos = _signed_ranks(d)
    r_mc, t_mc = _signed_ranks(mcid - d)
    out["gamma_star"] = float(_gamma_star(r_pos, t_pos, alpha / 2, method))
    out["gamma_mcid"] = float(_gamma_star(r_mc, t_mc, alpha, method))
    p_mc = _tail(r_mc, t_mc, g, method)
    for x, p in zip(g, p_mc):
        out[_gamma_key(x)] = float(_rejects(p, alpha))
    out["p_upper_at_1"] = float(_tail(r_pos, t_pos, np.array([1.0]), method)[0])
    return out

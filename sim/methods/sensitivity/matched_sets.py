"""Rosenbaum bounds for matched sets: 1:k matching and full matching (sets of one treated unit with
>= 1 controls, or one control with >= 1 treated units), with Huber-Maritz m-statistics as
sensitivitymult::senm (Rosenbaum 2007, Biometrics 63:456-464) and, for sets with one control,
sensitivityfull::senfm (Rosenbaum 2017). Our own implementation of the published method.

The statistic. Outcomes y (improvement scale; NaN units dropped, then sets left without both arms
dropped). Testing H0: τ = tau uses y - tau for the treated units (``alternative="less"`` tests
τ < tau on -y). Within set i (n_i units) every ordered pair (j, k) has the difference
y_ij - y_ik; h = the ``lam`` quantile (R's type 7) of their absolute values over all sets (each
unordered pair counted twice, as senm), a scale that does not depend on who was treated
(Maritz 1979). Unit j's score is

    q_ij = (1 / n_i) sum_k psi((y_ij - y_ik) / h),
    psi(x) = sign(x) min(1, max(0, |x| - inner) / (trim - inner))

(Huber's psi for inner = 0, levelling off at trim; senm's default trim = 3, lam = 1/2; inner = trim
gives sign(x) 1{|x| > inner}; trim = inf gives sign(x) max(0, |x| - inner), with no scaling at
all when inner = 0 too: the permutational t-statistic). T = sum over sets of the score of the set's
singleton unit (the treated unit, or for a set with one control, minus the control's score: the
sign that makes large T favour the treated, as senfm).

The bound. Under Rosenbaum's model the singleton of set i is unit j with probability
theta_ij / sum_k theta_ik, theta in [1, Γ] (for a control singleton the odds invert, which is the
same family). Gastwirth, Krieger & Rosenbaum (2000): per set, with the scores (signed as in T)
sorted, q_(1) <= ... <= q_(n), theta = 1 on the lowest a and Γ on the others; choose the a with
the largest mean, among equal means the largest variance; T's bound is the normal tail with the
sums of those means and variances ("separable" approximation; asymptotically the upper bound on
the one-sided p-value). ``method="exact"`` gives the exact tail of T under the same worst-case
probabilities (sets independent: a convolution, for small studies): the exact bound for pairs, and
at Γ = 1 the exact randomisation test. p_upper is P(T >= T_obs); a result holds at Γ when it is
<= alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

__all__ = ["SenmResult", "senm", "senm_bounds", "senm_gamma_star", "senm_summary", "matched_set_scores",
           "EXACT_MAX_SUPPORT"]

EXACT_MAX_SUPPORT = 4_000_000  #: largest intermediate support the exact convolution builds
GAMMA_MAX = 1e6


@dataclass(frozen=True)
class SenmResult:
    """One bound: p_upper (one-sided), the normal deviate, T, its worst-case expectation and
    variance, and the sets used / dropped."""

    p_upper: float
    deviate: float
    statistic: float
    expectation: float
    variance: float
    n_sets: int
    n_sets_dropped: int


def _psi(x: np.ndarray, inner: float, trim: float) -> np.ndarray:
    if math.isinf(trim):
        return np.sign(x) * np.maximum(0.0, np.abs(x) - inner)
    if inner == trim:
        return np.sign(x) * (np.abs(x) > inner)
    return np.sign(x) * np.minimum(1.0, np.maximum(0.0, np.abs(x) - inner) / (trim - inner))


def _group_sets(y, treated, set_id):
    """Per set size m: (n_sets_m, m) outcomes, singleton first, and whether the singleton is
    treated; plus the count of sets dropped for a missing arm."""
    y = np.asarray(y, dtype=float)
    t = np.asarray(treated).astype(bool)
    s = np.asarray(set_id)
    if not (y.ndim == 1 and t.shape == y.shape and s.shape == y.shape):
        raise ValueError("y, treated and set_id must be 1-D arrays of the same length")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError("set_id must be integers (-1 = not in a set)")
    if np.any(np.isinf(y)):
        raise ValueError("y must not contain inf (NaN units are dropped)")
    all_sets = np.unique(s[s >= 0])
    keep = (s >= 0) & ~np.isnan(y)
    y, t, s = y[keep], t[keep], s[keep]
    codes, inv = np.unique(s, return_inverse=True)
    n1 = np.bincount(inv, weights=t, minlength=codes.size).astype(np.int64)
    n0 = np.bincount(inv, minlength=codes.size) - n1
    if np.any((n1 >= 2) & (n0 >= 2)):
        raise ValueError("a matched set has several treated units and several controls")
    ok = (n1 >= 1) & (n0 >= 1)
    dropped = int(all_sets.size - ok.sum())
    single_t = n1 == 1
    # singleton first: sort by set, then singleton role (treated in a treated-singleton set)
    is_single = np.where(single_t[inv], t, ~t)
    o = np.lexsort((~is_single, inv))
    y, inv = y[o], inv[o]
    size = (n1 + n0)
    groups = {}
    for m in np.unique(size[ok]):
        sets = np.flatnonzero(ok & (size == m))
        rows = np.isin(inv, sets)
        groups[int(m)] = (y[rows].reshape(sets.size, m), single_t[sets])
    return groups, dropped


def _scores(groups, inner, trim, lam):
    """Per size: the scores, signed so that large favours the treated (module docstring)."""
    scale = not (math.isinf(trim) and inner == 0)
    h = 1.0
    if scale:
        diffs = [np.abs(Y[:, :, None] - Y[:, None, :])[:, ~np.eye(Y.shape[1], dtype=bool)].ravel()
                 for Y, _ in groups.values()]
        h = float(np.quantile(np.concatenate(diffs), lam)) if diffs else 1.0
        if not h > 0:
            raise ValueError(f"the lam = {lam} quantile of the absolute within-set differences is 0: raise lam")
    out = {}
    for m, (Y, single_t) in groups.items():
        q = _psi((Y[:, :, None] - Y[:, None, :]) / h, inner, trim).sum(axis=2) / m
        out[m] = np.where(single_t[:, None], q, -q)
    return out


def matched_set_scores(y, treated, set_id, *, inner=0.0, trim=3.0, lam=0.5, tau=0.0, alternative="greater"):
    """{set size: (sets, size) scores with the singleton's first}, signed as T (module docstring)."""
    groups, _ = _prepared(y, treated, set_id, inner, trim, lam, tau, alternative)
    return _scores(groups, inner, trim, lam)


def _prepared(y, treated, set_id, inner, trim, lam, tau, alternative):
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less'; got {alternative!r}")
    if not (0 <= inner <= trim):
        raise ValueError(f"need 0 <= inner <= trim; got inner={inner!r}, trim={trim!r}")
    if not (0 < lam < 1):
        raise ValueError(f"lam must be in (0, 1); got {lam!r}")
    if not math.isfinite(tau):
        raise ValueError(f"tau must be finite; got {tau!r}")
    y = np.asarray(y, dtype=float)
    t = np.asarray(treated).astype(bool)
    sgn = 1.0 if alternative == "greater" else -1.0
    return _group_sets(sgn * y - np.where(t, sgn * tau, 0.0), t, set_id)


def _worst_case(q: np.ndarray, gamma: float):
    """Per set (rows of q): the sorted scores, the worst-case a (theta = 1 on the lowest a, Γ on the
    rest), and that allocation's mean and variance."""
    srt = np.sort(q, axis=1)
    m = srt.shape[1]
    c1, c2 = np.cumsum(srt, axis=1), np.cumsum(srt ** 2, axis=1)
    a = np.arange(1, m)
    den = a + gamma * (m - a)
    mu = (c1[:, :-1] + gamma * (c1[:, -1:] - c1[:, :-1])) / den
    var = (c2[:, :-1] + gamma * (c2[:, -1:] - c2[:, :-1])) / den - mu ** 2
    tol = 1e-12 * (1.0 + np.abs(mu).max(axis=1, keepdims=True))
    top = mu >= mu.max(axis=1, keepdims=True) - tol
    pick = np.argmax(np.where(top, var, -np.inf), axis=1)
    rows = np.arange(q.shape[0])
    return srt, pick + 1, mu[rows, pick], np.maximum(var[rows, pick], 0.0)


def _exact_tail(scores, gamma, t_obs):
    """P(T >= t_obs) under the worst-case allocation: the sets' distributions convolved."""
    span = sum(float(np.abs(q).sum()) for q in scores.values()) + 1.0
    tol = 1e-9 * span
    vals, probs = np.zeros(1), np.ones(1)
    for q in scores.values():
        srt, a, _, _ = _worst_case(q, gamma)
        m = srt.shape[1]
        theta = np.where(np.arange(m)[None, :] < a[:, None], 1.0, gamma)
        p = theta / theta.sum(axis=1, keepdims=True)
        for v, w in zip(srt, p):
            if vals.size * m > EXACT_MAX_SUPPORT:
                raise ValueError("exact bound: the distribution of T is too large; use method='normal'")
            vals = (vals[:, None] + v[None, :]).ravel()
            probs = (probs[:, None] * w[None, :]).ravel()
            key, inv = np.unique(np.round(vals / tol), return_inverse=True)
            vals, probs = key * tol, np.bincount(inv, weights=probs)
    return float(min(1.0, probs[vals >= t_obs - 2 * tol].sum()))


def _bound(scores, gamma, method, dropped) -> SenmResult:
    t_obs = float(sum(q[:, 0].sum() for q in scores.values()))
    e = v = 0.0
    for q in scores.values():
        _, _, mu, var = _worst_case(q, gamma)
        e, v = e + float(mu.sum()), v + float(var.sum())
    n_sets = sum(q.shape[0] for q in scores.values())
    if n_sets == 0:
        return SenmResult(math.nan, math.nan, math.nan, math.nan, math.nan, 0, dropped)
    dev = (t_obs - e) / math.sqrt(v) if v > 0 else math.nan
    if method == "exact":
        p = _exact_tail(scores, gamma, t_obs)
    else:  # no variance: T equals its expectation whatever the allocation
        p = float(special.ndtr(-dev)) if v > 0 else 1.0
    return SenmResult(p, dev, t_obs, e, v, n_sets, dropped)


def _gamma(gamma) -> float:
    g = float(gamma)
    if not (math.isfinite(g) and g >= 1):
        raise ValueError(f"gamma must be a finite number >= 1; got {gamma!r}")
    return g


def senm(y, treated, set_id, gamma=1.0, *, inner=0.0, trim=3.0, lam=0.5, tau=0.0, alternative="greater",
         method="normal") -> SenmResult:
    """Upper bound on the one-sided p-value at Γ for matched sets (module docstring). ``set_id``:
    integers, -1 for units in no set. ``method``: "normal" (senm's) or "exact" (small studies)."""
    if method not in ("normal", "exact"):
        raise ValueError(f"method must be 'normal' or 'exact'; got {method!r}")
    groups, dropped = _prepared(y, treated, set_id, inner, trim, lam, tau, alternative)
    return _bound(_scores(groups, inner, trim, lam), _gamma(gamma), method, dropped)


def senm_bounds(y, treated, set_id, gammas, **kw) -> np.ndarray:
    """p_upper at each Γ of ``gammas`` (the scores computed once)."""
    method = kw.pop("method", "normal")
    groups, dropped = _prepared(y, treated, set_id, kw.get("inner", 0.0), kw.get("trim", 3.0),
                                kw.get("lam", 0.5), kw.get("tau", 0.0), kw.get("alternative", "greater"))
    scores = _scores(groups, kw.get("inner", 0.0), kw.get("trim", 3.0), kw.get("lam", 0.5))
    return np.array([_bound(scores, _gamma(g), method, dropped).p_upper for g in np.atleast_1d(gammas)])


def _gamma_star_of(scores, alpha, dropped) -> float:
    def f(log_g):
        return _bound(scores, math.exp(log_g), "normal", dropped).p_upper - alpha

    first = f(0.0)
    if not math.isfinite(first) or first > 0:
        return 1.0 if math.isfinite(first) else math.nan
    if f(math.log(GAMMA_MAX)) <= 0:
        return math.inf
    return math.exp(optimize.brentq(f, 0.0, math.log(GAMMA_MAX), xtol=1e-10))


def senm_gamma_star(y, treated, set_id, alpha=0.05, **kw) -> float:
    """Γ*: the largest Γ at which the normal bound stays <= alpha (1.0 if not even at Γ = 1; the
    bound rises with Γ, found by brentq on log Γ)."""
    if not (0 < alpha < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5); got {alpha!r}")
    inner, trim, lam = kw.get("inner", 0.0), kw.get("trim", 3.0), kw.get("lam", 0.5)
    groups, dropped = _prepared(y, treated, set_id, inner, trim, lam, kw.get("tau", 0.0),
                                kw.get("alternative", "greater"))
    return _gamma_star_of(_scores(groups, inner, trim, lam), alpha, dropped)


def senm_summary(y, treated, set_id, *, alpha=0.05, gammas=(1.0, 1.5, 2.0)) -> dict[str, float]:
    """Per-replicate scalars, as rosenbaum_summary's for pairs: gamma_star at one-sided alpha / 2
    (a two-sided level-alpha test in the treatment's favour), p_upper_at_<Γ>, n_sets_used; NaN
    when no set is left or the scale is 0."""
    keys = ["gamma_star", *(f"p_upper_at_{g:g}" for g in gammas)]
    try:
        groups, dropped = _prepared(y, treated, set_id, 0.0, 3.0, 0.5, 0.0, "greater")
        scores = _scores(groups, 0.0, 3.0, 0.5)
    except ValueError:
        return {"n_sets_used": math.nan, **dict.fromkeys(keys, math.nan)}
    n = sum(q.shape[0] for q in scores.values())
    if n == 0:
        return {"n_sets_used": 0.0, **dict.fromkeys(keys, math.nan)}
    out = {"n_sets_used": float(n), "gamma_star": _gamma_star_of(scores, alpha / 2, dropped)}
    for g in gammas:
        out[f"p_upper_at_{g:g}"] = _bound(scores, _gamma(g), "normal", dropped).p_upper
    return out

"""Analyses of the change from baseline at a visit some patients did not live to (truncation by
death) or missed. A complete-case comparison contrasts different patients in the two arms when the
treatment changes who is alive at the visit, so neither of its answers is causal. Two that are:

  lee_bounds      Lee (2009) trimming bounds on the mean effect among the always-observed (units
                  observed at the visit under either arm). Assumes as-if-random assignment (the
                  matched sample) and monotone selection (treatment only adds, or only removes,
                  observed units); identifies an interval, with the Imbens & Manski (2004) CI.
  composite_rank  Wilcoxon rank-sum test of a composite in which death before the visit ranks below
                  every survivor, earlier deaths lower. Tests the treatment's effect on the
                  composite (survival, then change), needing only as-if-random assignment; patients
                  alive who missed the visit are dropped (assumed missing at random).

`matched_seen_shares` checks the bounds' as-if-random assumption where the truth is known (a
synthetic cohort's potential `seen` masks): are the matched controls seen as often as their matched
treated would be without the treatment?
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import special
from scipy.optimize import brentq

from sim.methods.outcomes import TestResult, wilcoxon_ranksum

NAN = float("nan")
#: analysis name -> the per-replicate columns it adds (their means and quantiles are summarised)
#: lee_bounds: bound_width = high - low (its own MCSE); ci_width = Imbens-Manski CI width;
#: ci_excludes_0 = 1.0 when that CI lies wholly on one side of 0, else 0.0; trimmed_treated = 1.0 when
#: the treated group was trimmed, 0.0 the control group, NaN nothing trimmed (equal observed shares)
TRUNCATION_ANALYSES = {
    "lee_bounds": ("bound_low", "bound_high", "bound_width", "ci_width", "trim_share", "trimmed_treated",
                   "ci_excludes_0"),
    "composite_rank": (),  # a rank test: its p-value enters rejection rates only
}


@dataclass(frozen=True)
class LeeBounds:
    """Lee bounds on treated - control among the always-observed. n_treated/n_control count all
    units of a group (the unobserved enter through the observed shares); reason is "" when OK."""

    bound_low: float = NAN
    bound_high: float = NAN
    se_low: float = NAN
    se_high: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    trim_share: float = NAN
    trimmed: str = ""
    p_observed_treated: float = NAN
    p_observed_control: float = NAN
    n_treated: int = 0
    n_control: int = 0
    reason: str = ""


def _arr(y, name: str) -> np.ndarray:
    a = np.asarray(y, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {a.shape}")
    return a


def _trimmed(ys: np.ndarray, kept: float, top: bool) -> tuple[float, float, float]:
    """Mean, plug-in variance and boundary value ξ of the sorted values ys keeping `kept` units
    (real-valued) of mass from the bottom (top=False) or the top: each unit weighs min(1, max(0,
    kept - its position)), so the boundary value gets the fractional weight and ties are exact."""
    m = ys.size
    pos = np.arange(m - 1, -1, -1) if top else np.arange(m)
    w = np.clip(kept - pos, 0.0, 1.0)
    mu = float(w @ ys) / kept
    var = float(w @ (ys - mu) ** 2) / kept
    k = min(max(math.ceil(kept), 1), m)
    return mu, var, float(ys[m - k] if top else ys[k - 1])


def _im_ci(lo, hi, se_lo, se_hi, alpha) -> tuple[float, float]:
    """Imbens & Manski (2004): C solves Φ(C + Δ/max(se)) - Φ(-C) = 1 - α; [lo - C se_lo, hi + C se_hi]."""
    s = max(se_lo, se_hi)
    if not np.isfinite(s):
        return NAN, NAN
    if s == 0:
        return lo, hi
    delta = hi - lo
    z = float(special.ndtri(1 - alpha / 2))
    c = z if delta <= 0 else brentq(
        lambda c: special.ndtr(c + delta / s) - special.ndtr(-c) - (1 - alpha), 0.0, z, xtol=1e-10)
    return lo - c * se_lo, hi + c * se_hi


def lee_bounds(y_t, y_c, alpha: float = 0.05) -> LeeBounds:
    """Lee (2009) sharp bounds on E[Y(1) - Y(0) | always observed] (NaN = not observed).

    The group with the larger observed share p_big is trimmed by q = (p_big - p_small)/p_big, i.e.
    to kept = (1 - q) m_big = p_small n_big units of mass (m = observed, n = all units); the lower
    bound keeps its smallest values if it is the treated group (its largest if the control), the
    upper bound the opposite. Equal shares: q = 0 and both bounds are the difference in means.

    Variance (Lee 2009, Proposition 3 and its appendix proof), written per sample rather than per
    √n (E[S D] n = m_big): for a bound with trimmed mean μ, trimmed variance σ² (fractional weights,
    plug-in) and boundary quantile ξ (= y_{1-q} or y_q) of the trimmed group,

        Var = [σ² + q (ξ - μ)²] / ((1 - q) m_big)          trimmed mean at a known q
              + (ξ - μ)² / (1 - q)² · V_q                    estimation of q
              + s_small² / m_small                           untrimmed mean (ddof 1)

    with V_q = (1 - q)² [(1 - p_big)/(n_big p_big) + (1 - p_small)/(n_small p_small)], the delta
    method variance of q̂ = 1 - p̂_small/p̂_big; hence the second term is
    (ξ - μ)² (1/m_big - 1/n_big + 1/m_small - 1/n_small). The first term is the variance of the
    trimmed mean's influence function (the ξ-Winsorized value centred, over 1 - q); the second is
    (∂μ/∂q)² V_q with ∂μ/∂q = (μ - ξ)/(1 - q); the three parts are asymptotically uncorrelated.
    Both hold for stepped scales too when the boundary falls inside a tie (the influence function
    is then still the Winsorized value's). With q̂ = 0 the bound is not differentiable in q (either
    group could be trimmed); the larger of the two groups' (ξ - μ)² is used (conservative).
    """
    a, b = _arr(y_t, "y_t"), _arr(y_c, "y_c")
    n_t, n_c = a.size, b.size
    obs_t, obs_c = np.sort(a[~np.isnan(a)]), np.sort(b[~np.isnan(b)])
    m_t, m_c = obs_t.size, obs_c.size
    p_t, p_c = (m_t / n_t if n_t else NAN), (m_c / n_c if n_c else NAN)
    base = LeeBounds(p_observed_treated=p_t, p_observed_control=p_c, n_treated=n_t, n_control=n_c)
    if m_t < 2 or m_c < 2:
        return replace(base, reason="too few observed (need >= 2 per group)")
    v_q = 1 / m_t - 1 / n_t + 1 / m_c - 1 / n_c
    if m_t * n_c == m_c * n_t:  # equal shares, compared exactly: no trimming
        mt, mc = float(obs_t.mean()), float(obs_c.mean())
        base_var = obs_t.var(ddof=1) / m_t + obs_c.var(ddof=1) / m_c
        lo = hi = mt - mc
        g_lo = max((obs_t[-1] - mt) ** 2, (obs_c[0] - mc) ** 2)
        g_hi = max((obs_t[0] - mt) ** 2, (obs_c[-1] - mc) ** 2)
        var_lo, var_hi = base_var + g_lo * v_q, base_var + g_hi * v_q
        q, trimmed = 0.0, "none"
    else:
        treated_big = m_t * n_c > m_c * n_t
        big, small, n_big, n_small = (obs_t, obs_c, n_t, n_c) if treated_big else (obs_c, obs_t, n_c, n_t)
        kept = small.size * n_big / n_small  # = p_small n_big
        if abs(kept - round(kept)) < 1e-9:
            kept = float(round(kept))
        q = 1 - kept / big.size
        ms = float(small.mean())
        vs = float(small.var(ddof=1)) / small.size
        parts = {}
        for top in (False, True):
            mu, s2, xi = _trimmed(big, kept, top)
            parts[top] = (mu, (s2 + q * (xi - mu) ** 2) / kept + (xi - mu) ** 2 * v_q + vs)
        # treated trimmed: low keeps its bottom; control trimmed: low keeps its top (minus sign)
        (mu_lo, var_lo), (mu_hi, var_hi) = parts[not treated_big], parts[treated_big]
        lo, hi = (mu_lo - ms, mu_hi - ms) if treated_big else (ms - mu_lo, ms - mu_hi)
        trimmed = "treated" if treated_big else "control"
    se_lo, se_hi = math.sqrt(var_lo), math.sqrt(var_hi)
    ci_lo, ci_hi = _im_ci(lo, hi, se_lo, se_hi, alpha)
    return replace(base, bound_low=float(lo), bound_high=float(hi), se_low=se_lo, se_high=se_hi,
                   ci_low=float(ci_lo), ci_high=float(ci_hi), trim_share=float(q), trimmed=trimmed)


def _composite(y, death, name: str) -> np.ndarray:
    """(dead, value) rows of the units used: the dead (finite death day) and survivors with a y."""
    y, d = _arr(y, f"y_{name}"), _arr(death, f"death_{name}")
    if y.shape != d.shape:
        raise ValueError(f"y_{name} and death_{name} must have the same length; got {y.size} and {d.size}")
    dead = np.isfinite(d)
    use = dead | ~np.isnan(y)
    return np.where(dead, d, y)[use], dead[use]


def composite_rank(y_t, death_t, y_c, death_c) -> TestResult:
    """Rank-sum test of the composite: death before the visit < any survivor's change, earlier death
    < later death (equal days tie); alive-but-missed units are excluded. The composite is mapped to
    integer scores (dense ranks of death days, then of changes above them) and passed to
    `wilcoxon_ranksum`: estimate = P(treated composite > control composite), ties 1/2."""
    vt, dt = _composite(y_t, death_t, "t")
    vc, dc = _composite(y_c, death_c, "c")
    v, dead = np.concatenate([vt, vc]), np.concatenate([dt, dc])
    score = np.empty(v.size)
    days, day_rank = np.unique(v[dead], return_inverse=True)
    score[dead] = day_rank
    score[~dead] = days.size + np.unique(v[~dead], return_inverse=True)[1]
    return replace(wilcoxon_ranksum(score[: vt.size], score[vt.size:]), name="composite_rank")


def truncation_fields(name: str, y_t, death_t, y_c, death_c, alpha: float) -> dict[str, float]:
    """The row fields of one truncation analysis (as `sensitivity_fields`; y improvement scale).

    lee_bounds: estimate/se/p_value NaN (an interval is identified), ci_* = Imbens-Manski CI,
    favours = +1 / -1 when the whole identified interval is above / below 0 (NaN when it straddles
    0: the sign is not identified), n_used = all units; the TRUNCATION_ANALYSES columns, so that a
    summary says how often the CI excludes 0 and which group was trimmed (both NaN when the bounds
    fail). composite_rank: a rank test, so estimate NaN; favours = sign(P(treated > control) - 1/2)."""
    row = {"estimate": NAN, "se": NAN, "ci_low": NAN, "ci_high": NAN, "p_value": NAN}
    if name == "lee_bounds":
        b = lee_bounds(y_t, y_c, alpha=alpha)
        favours = 1.0 if b.bound_low > 0 else -1.0 if b.bound_high < 0 else NAN
        excludes = NAN if math.isnan(b.ci_low) or math.isnan(b.ci_high) else float(b.ci_low > 0 or b.ci_high < 0)
        return {**row, "ci_low": b.ci_low, "ci_high": b.ci_high, "favours": favours,
                "n_used_treated": b.n_treated, "n_used_control": b.n_control, "note": b.reason,
                "bound_low": b.bound_low, "bound_high": b.bound_high, "bound_width": b.bound_high - b.bound_low,
                "ci_width": b.ci_high - b.ci_low, "trim_share": b.trim_share,
                "trimmed_treated": {"treated": 1.0, "control": 0.0}.get(b.trimmed, NAN), "ci_excludes_0": excludes}
    if name == "composite_rank":
        r = composite_rank(y_t, death_t, y_c, death_c)
        favours = float(np.sign(r.estimate - 0.5)) if np.isfinite(r.estimate) else NAN
        return {**row, "p_value": r.p_value, "favours": favours, "n_used_treated": r.n_treated,
                "n_used_control": r.n_control, "note": r.reason}
    raise ValueError(f"unknown truncation analysis {name!r}; allowed: {list(TRUNCATION_ANALYSES)}")


def matched_seen_shares(seen_control, seen_treated, treated_idx, control_idx) -> dict[str, float]:
    """Who is seen at a visit in one matched sample, from the potential `seen` masks (per patient:
    seen under control, seen under treatment; Cohort.seen[t]) and the pairs' indices.

    Lee's bounds read the matched controls' observed share as the share of their matched treated who
    would be seen without the treatment (as-if-random assignment in the matched sample). Returned:
    treated_seen_control / treated_seen_treated (the matched treated's shares under each arm),
    control_seen (the matched controls', under control, as observed), gap = control_seen -
    treated_seen_control (0 when the assumption holds), true_trim_share = |p1 - p0| / max(p1, p0)
    among the matched treated (0 when the treatment changes no one's being seen), true_trimmed_treated
    (1.0 when p1 > p0: the treated are the group to trim; 0.0 when p1 < p0; NaN when equal), and
    non_monotone = share of the matched treated seen under control but not under treatment when
    p1 >= p0 (the reverse otherwise): monotone selection means 0."""
    s0, s1 = np.asarray(seen_control, bool), np.asarray(seen_treated, bool)
    ti, ci = np.asarray(treated_idx, dtype=np.intp), np.asarray(control_idx, dtype=np.intp)
    if ti.size == 0:
        return dict.fromkeys(("treated_seen_control", "treated_seen_treated", "control_seen", "gap",
                              "true_trim_share", "true_trimmed_treated", "non_monotone"), NAN)
    p0, p1, pc = float(s0[ti].mean()), float(s1[ti].mean()), float(s0[ci].mean())
    big = max(p0, p1)
    wrong = (s0[ti] & ~s1[ti]) if p1 >= p0 else (s1[ti] & ~s0[ti])
    return {"treated_seen_control": p0, "treated_seen_treated": p1, "control_seen": pc, "gap": pc - p0,
            "true_trim_share": abs(p1 - p0) / big if big > 0 else NAN,
            "true_trimmed_treated": 1.0 if p1 > p0 else 0.0 if p1 < p0 else NAN,
            "non_monotone": float(wrong.mean())}

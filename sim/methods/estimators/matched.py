"""Estimators on matched samples: regression after the paper's matching, full matching and
subclassification on the PS (Stuart 2010; MatchIt's recommended workflow, Greifer's "Estimating
effects after matching"). All on the complete cases, as base.py says.

regression_matched (estimand "matched": the paper's matched treated units)
    In the paper's matched sample (pair_id >= 0, its match_weights: 1 treated, 1/k controls), the
    seen units: weighted least squares of y on [1, treated, baseline, X] with the matching weights
    (OLS for 1:1), the treated coefficient, cluster-robust SE by matched set (CR1: G/(G-1) *
    (N-1)/(N-K) on the sandwich, statsmodels' ``WLS(...).fit(cov_type="cluster")`` and R's
    sandwich::vcovCL default), CI and p from t with G - 1 df (Cameron & Miller 2015: with ~50-70
    pairs the normal is a little narrow). In the calibrated cohort (as below) its SE is within
    -4..+1 % of the empirical SD and the CI covers 0.935-0.96. A covariate column that is
    constant or collinear among the rows used is dropped, as R's lm aliases it; a treated column
    that is, fails.
full_matching (estimand "att")
    Optimal full matching on the logit PS of all units, no caliper, no limits on set sizes
    (sim.methods.matching.full: every unit matched), MatchIt's ATT weights (treated 1, controls
    t/c rescaled); among the seen units the weighted difference in means (WLS of y on
    [1, treated]) with the leave-one-set-out jackknife SE, CR3 (sandwich::vcovCL(type = "HC3")),
    t with G - 1 df. Why CR3 and not CR1: with 189 treated and 74 controls, full matching puts up
    to ~10 treated on one control, whose weight then dominates its arm (effective controls ~20),
    and the CR1 sandwich is far too small under such leverage. 200 replicates of the calibrated
    cohort (estimator_comparison, no effect, no hidden confounder, 6 months; SE relative error /
    coverage of the 95 % CI (MCSE ~0.015) over the four outcomes): CR1 -13..-20 % /
    0.865-0.905, CR3 +3..+11 % / 0.915-0.945. Adjusting for Z = [baseline, X] did not help there
    (additive: CR1 0.765-0.85, CR3 0.845-0.92; g-computation with treated x Z interactions centred
    at the treated mean: CR1 0.605-0.71, CR3 0.85-0.96; empirical SDs 64-87 % of the unadjusted
    one, still above the paper's pairs'), though it is much less variable in a linear simulation;
    FULL_MATCHING_ADJUST ("none" | "additive" | "gcomp") and FULL_MATCHING_VCOV ("CR3" | "CR1")
    switch them. The matching depends only on the PS, so it is cached across the outcomes and
    visits of one cohort.
subclass (estimand "att")
    Five subclasses at the quintiles of the treated units' PS (sim.methods.matching.subclass),
    subclasses lacking an arm among the seen units merged into a neighbour; the stratified
    estimator sum_s (n1_s/N1)(mean1_s - mean0_s) (= the weighted difference with MatchIt's ATT
    weights n1_s/n0_s computed among the seen units) with its stratified variance
    sum_s (n1_s/N1)^2 (v1_s/n1_s + v0_s/n0_s), normal CI. Not cluster-robust by subclass: five
    clusters are far too few for a sandwich. An arm with a single seen unit in a subclass borrows
    that arm's pooled within-subclass variance.

Why numpy for the sandwich rather than statsmodels' fit: each runs once per replicate and
outcome; the same numbers (tests/test_matched_estimators.py checks them against statsmodels to
1e-10) in a fraction of the time, and statsmodels' import stays off the command line's path.
Failures (`Estimate.failed`): no matched pairs, an empty arm among the seen, non-finite inputs,
a singular design, fewer than 2 clusters or no residual degrees of freedom.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special

from sim.methods.estimators.base import CohortView, Estimate, register
from sim.methods.matching.full import full_match
from sim.methods.matching.subclass import merge_empty, subclassify

__all__ = ["regression_matched", "full_matching", "subclass", "wls_cluster", "N_SUBCLASSES"]

N_SUBCLASSES = 5
#: full_matching's outcome model: "none" (weighted difference in means), "additive" or "gcomp"
FULL_MATCHING_ADJUST = "none"
#: full_matching's cluster-robust covariance: "CR3" (jackknife by matched set) or "CR1"
FULL_MATCHING_VCOV = "CR3"
_ALIAS_TOL = 1e-7  #: R's lm tolerance: a column whose residual on the previous ones is this small is aliased


def _keep_columns(Dw: np.ndarray, forced: int) -> np.ndarray | None:
    """Columns of the (weighted) design kept in order, dropping any that the previous kept ones
    span (R's lm); None when one of the first `forced` columns is aliased. One QR when the design
    has full rank (the usual case), column by column otherwise."""
    norms = np.linalg.norm(Dw, axis=0)
    r = np.abs(np.diag(np.linalg.qr(Dw, mode="r")))
    if np.all(r > _ALIAS_TOL * norms):
        return np.arange(Dw.shape[1])
    keep: list[int] = []
    for j in range(Dw.shape[1]):
        col = Dw[:, j]
        if keep:
            basis = Dw[:, keep]
            col = col - basis @ np.linalg.lstsq(basis, col, rcond=None)[0]
        if norms[j] > 0 and np.linalg.norm(col) > _ALIAS_TOL * norms[j]:
            keep.append(j)
        elif j < forced:
            return None
    return np.array(keep)


def wls_cluster(y: np.ndarray, D: np.ndarray, w: np.ndarray, groups: np.ndarray, kind: str = "CR1"):
    """WLS of y on D with weights w and a cluster-robust covariance by `groups`: (coefficients,
    covariance, number of clusters). "CR1" as statsmodels'
    ``WLS(y, D, weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups})`` and R's
    sandwich::vcovCL(type = "HC1"); "CR3" the leave-one-cluster-out jackknife,
    (G-1)/G sum_g (b_(-g) - b)(b_(-g) - b)' (sandwich::vcovCL(type = "HC3"), Bell & McCaffrey
    2002), through b_(-g) - b = -A Xg' (I - Hgg)^-1 eg without refitting (LinAlgError when
    leaving a cluster out leaves the design singular)."""
    sw = np.sqrt(w)
    Dw, yw = D * sw[:, None], y * sw
    bread = np.linalg.inv(Dw.T @ Dw)
    beta = bread @ (Dw.T @ yw)
    e = yw - Dw @ beta
    _, g = np.unique(groups, return_inverse=True)
    G = int(g.max()) + 1
    n, k = D.shape
    if kind == "CR1":
        scores = np.zeros((G, k))
        np.add.at(scores, g, Dw * e[:, None])
        c = G / (G - 1) * (n - 1) / (n - k)
        return beta, c * bread @ (scores.T @ scores) @ bread, G
    if kind != "CR3":
        raise ValueError(f"kind must be 'CR1' or 'CR3'; got {kind!r}")
    o = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(g[o]) != 0, True])
    shifts = np.empty((G, k))
    for j in range(G):
        rows = o[bounds[j]:bounds[j + 1]]
        Xg = Dw[rows]
        M = np.eye(rows.size) - Xg @ bread @ Xg.T
        if np.linalg.eigvalsh(M)[0] < 1e-10:
            raise np.linalg.LinAlgError("leaving one cluster out makes the design singular")
        shifts[j] = Xg.T @ np.linalg.solve(M, e[rows])
    shifts = shifts @ bread
    return beta, (G - 1) / G * shifts.T @ shifts, G


def _wald_t(est: float, se: float, alpha: float, n1: int, n0: int, estimand: str, df: int) -> Estimate:
    """Estimate.wald with a t reference, through scipy.special (a frozen scipy.stats.t costs ~1 ms
    of docstring formatting per call, more than the whole fit)."""
    if not (np.isfinite(est) and np.isfinite(se) and se > 0):
        return Estimate.wald(est, se, alpha, n1, n0, estimand)  # its "no finite SE" result
    q = float(special.stdtrit(df, 1 - alpha / 2))
    return Estimate(float(est), float(se), float(est - q * se), float(est + q * se),
                    float(2 * special.stdtr(df, -abs(est / se))), n1, n0, estimand)


def _covariates(view: CohortView, rows: np.ndarray) -> np.ndarray:
    X = np.asarray(view.X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    return np.column_stack([np.asarray(view.baseline, dtype=float)[rows], X[rows]])


def _weighted_effect(view: CohortView, rows: np.ndarray, w: np.ndarray, groups: np.ndarray, estimand: str,
                     alpha: float, adjust: str, kind: str = "CR1") -> Estimate:
    """The treated coefficient of WLS over `rows` on [1, treated] plus, with `adjust`, Z =
    [baseline, X]: "additive" Z; "gcomp" Z - (mean of Z over the treated rows) and its interactions
    with treated (the coefficient is then the g-computation ATT over the seen treated units, their
    weights being 1). Cluster-robust SE by `groups`, t with G - 1 df."""
    t = np.asarray(view.treated).astype(bool)
    n1, n0 = int((rows & t).sum()), int((rows & ~t).sum())
    if n1 == 0 or n0 == 0:
        return Estimate.failed(estimand, f"empty arm among the seen units ({n1} treated, {n0} controls)")
    tr = t[rows].astype(float)
    cols = [np.ones(tr.size), tr]
    if adjust == "additive":
        cols += list(_covariates(view, rows).T)
    elif adjust == "gcomp":
        Z = _covariates(view, rows)
        Z = Z - Z[tr == 1].mean(axis=0)
        cols += [*Z.T, *(Z * tr[:, None]).T]
    D = np.column_stack(cols)
    y, wr = np.asarray(view.y, dtype=float)[rows], w[rows]
    if not (np.isfinite(D).all() and np.isfinite(wr).all()):
        return Estimate.failed(estimand, "non-finite covariates, baseline or weights among the seen units")
    keep = _keep_columns(D * np.sqrt(wr)[:, None], forced=2)
    if keep is None:
        return Estimate.failed(estimand, "singular design: the treated column is aliased")
    D = D[:, keep]
    G = np.unique(groups[rows]).size
    if G < 2 or D.shape[0] <= D.shape[1]:
        return Estimate.failed(estimand, f"too few clusters ({G}) or rows ({D.shape[0]}) for {D.shape[1]} terms")
    try:
        beta, cov, G = wls_cluster(y, D, wr, groups[rows], kind)
    except np.linalg.LinAlgError as exc:
        return Estimate.failed(estimand, f"singular design: {exc}")
    return _wald_t(beta[1], float(np.sqrt(cov[1, 1])), alpha, n1, n0, estimand, G - 1)


@register("regression_matched", "matched")
def regression_matched(view: CohortView, alpha: float) -> Estimate:
    """Regression after the paper's matching (module docstring)."""
    pair = np.asarray(view.pair_id)
    w = np.asarray(view.match_weights, dtype=float)
    if not np.any(pair >= 0):
        return Estimate.failed("matched", "no matched pairs")
    rows = view.seen & (pair >= 0) & (w > 0)
    return _weighted_effect(view, rows, w, pair, "matched", alpha, "additive")


@lru_cache(maxsize=4)
def _full_match_cached(ps: bytes, treated: bytes):
    return full_match(np.frombuffer(ps, dtype=float), np.frombuffer(treated, dtype=bool))


@register("full_matching", "att")
def full_matching(view: CohortView, alpha: float) -> Estimate:
    """Full matching on the logit PS, weighted difference in means, CR3 SE (module docstring)."""
    ps = np.ascontiguousarray(view.ps, dtype=float)
    t = np.ascontiguousarray(view.treated, dtype=bool)
    if not (np.isfinite(ps).all() and ((ps > 0) & (ps < 1)).all()):
        return Estimate.failed("att", "PS not strictly inside (0, 1): no logit distance")
    if t.all() or not t.any():
        return Estimate.failed("att", "no treated units or no controls to match")
    fm = _full_match_cached(ps.tobytes(), t.tobytes())
    rows = view.seen & (fm.set_id >= 0) & (fm.weights > 0)
    return _weighted_effect(view, rows, fm.weights, fm.set_id, "att", alpha, FULL_MATCHING_ADJUST,
                            FULL_MATCHING_VCOV)


def _stratified(y: np.ndarray, t: np.ndarray, sub: np.ndarray, estimand: str):
    """(estimate, se) of the stratified estimator (module docstring), or a reason string."""
    m = int(sub.max()) + 1
    n1 = np.bincount(sub[t], minlength=m).astype(float)
    n0 = np.bincount(sub[~t], minlength=m).astype(float)
    mean, var = [], []
    for arm, n in ((t, n1), (~t, n0)):
        s1 = np.bincount(sub[arm], weights=y[arm], minlength=m)
        mu = s1 / n
        ss = np.bincount(sub[arm], weights=(y[arm] - mu[sub[arm]]) ** 2, minlength=m)
        if not np.any(n >= 2):
            return "too few seen units for a within-subclass variance"
        pooled = ss[n >= 2].sum() / (n[n >= 2] - 1).sum()
        mean.append(mu)
        var.append(np.where(n >= 2, ss / np.maximum(n - 1, 1), pooled))
    share = n1 / n1.sum() if estimand == "att" else (n1 + n0) / (n1 + n0).sum()
    est = float(share @ (mean[0] - mean[1]))
    return est, float(np.sqrt(share ** 2 @ (var[0] / n1 + var[1] / n0)))


@register("subclass", "att")
def subclass(view: CohortView, alpha: float) -> Estimate:
    """Subclassification on the PS, the stratified estimator of the ATT (module docstring)."""
    ps = np.asarray(view.ps, dtype=float)
    t = np.asarray(view.treated).astype(bool)
    if not np.isfinite(ps).all():
        return Estimate.failed("att", "non-finite PS")
    if t.all() or not t.any():
        return Estimate.failed("att", "no treated units or no controls")
    seen = view.seen
    n1, n0 = int((seen & t).sum()), int((seen & ~t).sum())
    if n1 == 0 or n0 == 0:
        return Estimate.failed("att", f"empty arm among the seen units ({n1} treated, {n0} controls)")
    sc = subclassify(ps, t, N_SUBCLASSES, "att")
    ts = t[seen]
    r = _stratified(np.asarray(view.y, dtype=float)[seen], ts, merge_empty(sc.subclass[seen], ts), "att")
    if isinstance(r, str):
        return Estimate.failed("att", r)
    return Estimate.wald(r[0], r[1], alpha, n1, n0, "att")

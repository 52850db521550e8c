"""Optimal full matching (Rosenbaum 1991; Hansen 2004; MatchIt ``method = "full"``, optmatch's
``fullmatch``): every unit in a matched set of one treated unit and >= 1 controls, or one control
and >= 1 treated units, the total within-set distance |d_t - d_c| (over the set's treated-control
pairs, d = logit PS by default) as small as possible.

How it is solved. A partition into such stars is an edge cover of the bipartite treated x control
graph (every unit touches an edge), and a minimum-cost edge cover is a union of stars (an edge whose
two ends both have other edges can be dropped at no extra cost), so optimal full matching is the
minimum-cost edge cover, with degree bounds for the limits on set sizes. That is a min-cost flow,
solved with OR-Tools' ``SimpleMinCostFlow`` (C++ cost scaling; pip ``ortools``): node supplies
carry the lower bounds, a slack node E feeds the extra edges and a node F absorbs them:

    treated i: supply c_min; E -> i capacity c_max - c_min (more controls for a treated centre)
    i -> j (allowed pairs): capacity 1, cost |d_i - d_j| (integer: scaled to COST_SCALE)
    control j: demand 1; j -> F capacity t_max - 1 (more treated for a control centre)
    E -> F: the slack; E -> j, and i -> F if c_min = 1: leave a unit out at cost BIG

BIG exceeds any total distance, so the flow first leaves out as few units as the limits force,
then minimises the distance (as the project's optimal pair matching does with its caliper); with no
limits every unit with an allowed partner is matched. Edges whose both ends have degree >= 2 (only
possible at zero cost) are then dropped, which leaves stars. Integer costs lose at most
(links x 0.5 / COST_SCALE) x the largest allowed distance of optimality (~1e-9 relative).

Limits in MatchIt's terms: the ratio controls / treated of every set lies in [min_controls,
max_controls]: a treated centre takes c in [max(1, ceil(min_controls)), floor(max_controls)]
controls, a control centre t <= floor(1 / min_controls) treated units (no control centres when
min_controls > 1). A caliper (on the same scale as the distance) removes pairs; units left without
an allowed partner are dropped, as MatchIt does.

Weights (ATT, MatchIt's convention with ``normalize = TRUE``): treated 1; a control in a set with t
treated and c controls t / c, then all control weights multiplied by (controls matched) / (treated
matched) so that they sum to the number of matched controls. ``weights_unscaled`` keeps t / c
(summing to the number of matched treated). Weighted means per arm are the same under both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.methods.matching import MatchingInvariantError, caliper_width

__all__ = ["FullMatchResult", "full_match", "COST_SCALE"]

COST_SCALE = 1e9  #: the largest allowed distance becomes this integer cost


@dataclass(frozen=True)
class FullMatchResult:
    """``set_id`` (length n): matched set 0.. (numbered by their lowest unit index), -1 if dropped;
    ``weights``: ATT weights as MatchIt (module docstring), 0 if dropped; ``weights_unscaled``:
    1 and t / c; ``treated_idx``/``control_idx``: the star's links; ``total_distance``: the sum
    of |d_t - d_c| over the links (the objective)."""

    set_id: np.ndarray
    weights: np.ndarray
    weights_unscaled: np.ndarray
    treated_idx: np.ndarray
    control_idx: np.ndarray
    total_distance: float
    n_sets: int
    n_treated_matched: int
    n_control_matched: int
    caliper_width: float | None
    notes: tuple = ()


def _limits(min_controls, max_controls):
    """(c_min, c_max, t_max) degree bounds from MatchIt's ratio limits (None = no limit)."""
    lo = 0.0 if min_controls is None else float(min_controls)
    hi = math.inf if max_controls is None else float(max_controls)
    if not (lo >= 0 and hi >= 1 and lo <= hi):
        raise ValueError(f"need 0 <= min_controls <= max_controls and max_controls >= 1; got "
                         f"{min_controls!r}, {max_controls!r}")
    c_min = max(1, math.ceil(lo - 1e-12))
    c_max = math.floor(hi + 1e-12) if math.isfinite(hi) else None
    if c_max is not None and c_max < c_min:
        raise ValueError(f"no whole number of controls between min_controls={lo} and max_controls={hi}")
    t_max = None if lo == 0 else max(1, math.floor(1.0 / lo + 1e-12))
    if c_min > 1:
        t_max = 1
    return c_min, c_max, t_max


def full_match(score, treated, *, scale: str = "logit", caliper: float | None = None, caliper_sd: str = "pooled",
               min_controls: float | None = None, max_controls: float | None = None) -> FullMatchResult:
    """Optimal full matching of all units on ``score`` (propensity scores; distance on their logit
    with ``scale="logit"``, on the score itself with "ps"). ``caliper`` in SDs of the distance
    (``caliper_sd`` as :func:`sim.methods.matching.caliper_width`), None = none. ``min_controls`` /
    ``max_controls``: MatchIt's limits on controls per treated unit in a set (module docstring).
    Raises ValueError for bad input or when min_controls > 1 leaves some treated unit no valid set."""
    from ortools.graph.python import min_cost_flow  # lazy: ~0.1 s import, only when full matching runs

    score = np.asarray(score, dtype=float)
    t = np.asarray(treated).astype(bool)
    if score.ndim != 1 or t.shape != score.shape:
        raise ValueError("score and treated must be 1-D arrays of the same length")
    if not np.all(np.isfinite(score)):
        raise ValueError("score must be finite")
    if scale == "logit":
        if np.any((score <= 0) | (score >= 1)):
            raise ValueError("score must lie strictly in (0, 1) for scale='logit'")
        d = np.log(score) - np.log1p(-score)
    elif scale == "ps":
        d = score
    else:
        raise ValueError(f"scale must be 'logit' or 'ps'; got {scale!r}")
    c_min, c_max, t_max = _limits(min_controls, max_controls)
    n = score.size
    width = caliper_width(d, t, caliper, caliper_sd)
    notes = [] if caliper is not None else ["no caliper"]
    ti_all, ci_all = np.flatnonzero(t), np.flatnonzero(~t)
    dist = np.abs(d[ti_all][:, None] - d[ci_all][None, :])
    allowed = np.ones(dist.shape, bool) if width is None else dist <= width
    rows_ok, cols_ok = allowed.any(axis=1), allowed.any(axis=0)
    ti, ci = ti_all[rows_ok], ci_all[cols_ok]
    allowed, dist = allowed[np.ix_(rows_ok, cols_ok)], dist[np.ix_(rows_ok, cols_ok)]
    if ti.size < ti_all.size or ci.size < ci_all.size:
        notes.append(f"caliper: {ti_all.size - ti.size} treated and {ci_all.size - ci.size} controls "
                     "without an allowed partner dropped")
    nt, nc = ti.size, ci.size
    if nt == 0 or nc == 0:
        return _result(n, t, d, np.empty(0, np.int64), np.empty(0, np.int64), width, notes)

    r, c = np.nonzero(allowed)
    dmax = float(dist[r, c].max())
    unit = COST_SCALE / dmax if dmax > 0 else 1.0
    cost = np.rint(dist[r, c] * unit).astype(np.int64)
    big = int(COST_SCALE) * (nt + nc + 1)
    cap_t = nc if c_max is None else min(c_max, nc)
    cap_c = nt if t_max is None else min(t_max, nt)
    E, F = nt + nc, nt + nc + 1
    slack = nt * cap_t + nc + nt
    tails = [r, np.full(nt, E), np.arange(nt, nt + nc), [E]]
    heads = [nt + c, np.arange(nt), np.full(nc, F), [F]]
    caps = [np.ones(r.size), np.full(nt, max(cap_t - c_min, 0)), np.full(nc, cap_c - 1), [slack]]
    costs = [cost, np.zeros(nt), np.zeros(nc), [0]]
    tails.append(np.full(nc, E))  # leaving a control out
    heads.append(np.arange(nt, nt + nc))
    caps.append(np.ones(nc))
    costs.append(np.full(nc, big))
    if c_min == 1:  # leaving a treated unit out (with c_min > 1 it could leave one half matched)
        tails.append(np.arange(nt))
        heads.append(np.full(nt, F))
        caps.append(np.ones(nt))
        costs.append(np.full(nt, big))
    flow = min_cost_flow.SimpleMinCostFlow()
    arcs = flow.add_arcs_with_capacity_and_unit_cost(
        *(np.concatenate(x).astype(np.int64) for x in (tails, heads, caps, costs)))
    supply = np.concatenate([np.full(nt, c_min), np.full(nc, -1), [slack, -(slack + nt * c_min - nc)]])
    flow.set_nodes_supplies(np.arange(nt + nc + 2), supply.astype(np.int64))
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise ValueError(f"full matching has no solution with these limits (min-cost flow status {status})")
    used = flow.flows(arcs[: r.size]) > 0
    lt, lc = _prune_to_stars(r[used], c[used], nt, nc)
    if c_min > 1 and np.bincount(lt, minlength=nt).min() < c_min:  # (cannot happen: no drop arcs)
        raise MatchingInvariantError("full matching: a treated unit below min_controls")
    dropped = (nt - np.unique(lt).size, nc - np.unique(lc).size)
    if any(dropped):
        notes.append(f"limits on set sizes: {dropped[0]} treated and {dropped[1]} controls left unmatched")
    return _result(n, t, d, ti[lt], ci[lc], width, notes, (c_min, c_max, t_max))


def _prune_to_stars(lt, lc, nt, nc):
    """Drop links whose two ends both have other links (one pass suffices: degrees only fall and
    never below 1), leaving a union of stars with the same units covered."""
    deg_t = np.bincount(lt, minlength=nt)
    deg_c = np.bincount(lc, minlength=nc)
    keep = np.ones(lt.size, bool)
    for k in np.flatnonzero((deg_t[lt] > 1) & (deg_c[lc] > 1)):
        if deg_t[lt[k]] > 1 and deg_c[lc[k]] > 1:
            keep[k] = False
            deg_t[lt[k]] -= 1
            deg_c[lc[k]] -= 1
    return lt[keep], lc[keep]


def _result(n, t, d, lt, lc, width, notes, limits=None) -> FullMatchResult:
    """Sets from the star links (centre = the end with several links; treated for a 1:1 set),
    weights, and the run-time check of the invariants."""
    set_id = np.full(n, -1, np.int64)
    if lt.size:
        deg_t = np.bincount(lt, minlength=n)
        centre = np.where(deg_t[lt] > 1, lt, np.where(np.bincount(lc, minlength=n)[lc] > 1, lc, lt))
        key = np.full(n, n, np.int64)  # a set's lowest unit index numbers it
        np.minimum.at(key, centre, lt)
        np.minimum.at(key, centre, lc)
        _, label = np.unique(key[centre], return_inverse=True)
        set_id[lt] = label
        set_id[lc] = label
    matched = set_id >= 0
    n_sets = int(set_id.max()) + 1 if lt.size else 0
    n_t = np.bincount(set_id[matched & t], minlength=n_sets).astype(float)
    n_c = np.bincount(set_id[matched & ~t], minlength=n_sets).astype(float)
    raw = np.zeros(n)
    raw[matched & t] = 1.0
    cm = matched & ~t
    raw[cm] = n_t[set_id[cm]] / n_c[set_id[cm]]
    w = raw.copy()
    if cm.any():
        w[cm] *= cm.sum() / raw[cm].sum()
    total = float(np.abs(d[lt] - d[lc]).sum())
    res = FullMatchResult(set_id, w, raw, lt, lc, total, n_sets, int((matched & t).sum()), int(cm.sum()),
                          width, tuple(notes))
    _check(res, t, d, n_t, n_c, limits)
    return res


def _check(res: FullMatchResult, t, d, n_t, n_c, limits) -> None:
    """Invariants (a violation is a bug here): links join treated to control within the caliper,
    every set has one treated or one control and >= 1 of the other, sizes within the limits,
    each link inside one set, and the weights sum as documented."""
    def broken(rule):
        raise MatchingInvariantError(f"bug in sim.methods.matching.full: {rule}")

    lt, lc = res.treated_idx, res.control_idx
    if not (t[lt].all() and not t[lc].any()):
        broken("a link does not join a treated unit to a control")
    if not np.array_equal(res.set_id[lt], res.set_id[lc]):
        broken("a link crosses two sets")
    if res.caliper_width is not None and np.any(np.abs(d[lt] - d[lc]) > res.caliper_width * (1 + 1e-12)):
        broken("a link outside the caliper")
    if res.n_sets and not (((n_t == 1) & (n_c >= 1)) | ((n_c == 1) & (n_t >= 1))).all():
        broken("a set is not one treated with controls or one control with treated units")
    if res.n_sets and lt.size != int((n_t + n_c - 1).sum()):
        broken("the links are not stars")
    if limits is not None and res.n_sets:
        c_min, c_max, t_max = limits
        single_t = n_t == 1
        if np.any(single_t & (n_c < c_min)) or (c_max is not None and np.any(single_t & (n_c > c_max))):
            broken("controls per treated outside [min_controls, max_controls]")
        if t_max is not None and np.any(n_t > t_max):
            broken("treated per control above 1 / min_controls")
    wc = res.weights[(res.set_id >= 0) & ~t]
    if wc.size and not math.isclose(wc.sum(), wc.size, rel_tol=1e-9):
        broken("control weights do not sum to the number of matched controls")

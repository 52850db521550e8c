"""Propensity-score matching: greedy nearest neighbour and optimal pair matching.

Design notes (why it looks like this):

* Greedy matching without replacement never builds an N x N matrix. Controls
  are sorted once by the distance score; for each treated unit a binary search
  finds its position and two "next available" union-find structures (one
  scanning right, one scanning left) skip controls already used. Cost is
  O(N log N) plus a loop over treated units, compiled with numba
  (sim.methods.matching.compiled; the plain-Python original is kept in
  sim.methods.matching.cores as the tests' reference).
* Tie rule (greedy, all orders): among controls at equal distance the one with
  the lowest input index wins; in the ordered greedy, distances above and below
  the treated unit's score that differ by at most ``TIE_TOL * (1 + |score|)``
  count as equal (mirror ties of discrete covariates, see
  sim.methods.matching.cores.TIE_TOL). Treated units with equal scores are processed
  lowest index first (``largest``/``smallest``). ``closest`` takes the
  globally closest allowed pair first; ties by (distance, treated index,
  control index).
* ``ratio=k`` (greedy) works in rounds as MatchIt does: round 1 gives every
  treated unit (in order) its nearest control, round 2 a second one, ...; a
  treated unit that failed to get a control in some round gets none later.
* ``replace=True``: controls are reusable, so each treated unit simply gets its
  k nearest controls (order is irrelevant).
* ``exact``: units are matched only within equal stratum codes. The caliper
  width is computed on the whole sample (before stratifying).
* ``algorithm="optimal"``: first the number of within-caliper links is
  maximised, then the total |distance| minimised, over an
  (n_treated*k) x n_control problem (limit ``MAX_OPTIMAL_CELLS`` cells per
  exact stratum). With a caliper, only the within-caliper pairs are handed to
  ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``; without one (or
  for small strata) the dense cost matrix to
  ``scipy.optimize.linear_sum_assignment``. With ratio k every treated
  unit gets *up to* k controls (variable ratio is allowed by the optimum).
  Among several optimal matchings the one scipy returns is used
  (deterministic, but not the greedy tie rule).
* Every result is checked before it is returned (:func:`check_match`, vectorised,
  O(n + links)): links within the caliper, each control used once without
  replacement, roles, at most ``ratio`` controls per treated unit, exact
  strata, and ``pair_id``/``weights``/counts consistent with the links. A
  violation raises :class:`MatchingInvariantError`: a bug here, never bad input
  (MatchIt issue #163 shipped a build that silently ignored the caliper).
"""

from __future__ import annotations

import numpy as np

from sim.methods.matching.checks import MatchingInvariantError, check_match
from sim.methods.matching.result import MatchResult
from sim.methods.matching.compiled import _greedy_closest, _greedy_ordered
from sim.methods.matching.cores import _nearest_with_replacement
from sim.methods.matching.optimal import MAX_OPTIMAL_CELLS, _optimal

__all__ = [
    "MatchResult",
    "match",
    "caliper_width",
    "check_match",
    "MatchingInvariantError",
    "MAX_OPTIMAL_CELLS",
]

ALGORITHMS = ("greedy", "optimal")
ORDERS = ("largest", "smallest", "random", "data", "closest")
CALIPER_SCALES = ("logit", "ps")
CALIPER_SDS = ("pooled", "whole", "treated")


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _sd(x: np.ndarray) -> float:
    """Sample SD (ddof=1); 0 for fewer than two values."""
    return float(np.std(x, ddof=1)) if x.size >= 2 else 0.0


def caliper_width(d: np.ndarray, treated: np.ndarray, caliper: float | None, caliper_sd: str):
    """Caliper width = caliper * SD of the distance score ``d`` (ddof=1).

    ``pooled`` = sqrt((s_t^2 + s_c^2)/2) (Austin 2011), ``whole`` = SD over all
    units (MatchIt/OHDSI), ``treated`` = SD among treated units.
    """
    if caliper is None:
        return None
    t = np.asarray(treated).astype(bool)
    if caliper_sd == "pooled":
        sd = np.sqrt((_sd(d[t]) ** 2 + _sd(d[~t]) ** 2) / 2.0)
    elif caliper_sd == "whole":
        sd = _sd(d)
    elif caliper_sd == "treated":
        sd = _sd(d[t])
    else:
        raise ValueError(f"caliper_sd must be one of {CALIPER_SDS}; got {caliper_sd!r}")
    return float(caliper * sd)


# ----------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


def match(
    score,
    treated,
    *,
    algorithm: str = "greedy",
    caliper: float | None = 0.2,
    caliper_scale: str = "logit",
    caliper_sd: str = "pooled",
    order: str = "largest",
    ratio: int = 1,
    replace: bool = False,
    exact=None,
    rng: np.random.Generator | None = None,
) -> MatchResult:
    """Match treated to control units on a propensity score.

    ``score`` holds propensity scores (probabilities); distances are taken on
    logit(score) (``caliper_scale="logit"``) or on the score itself ("ps").
    A link is allowed when |distance| <= caliper * SD (see
    :func:`caliper_width`); ``caliper=None`` means no caliper. See the module
    docstring for algorithms, orders, tie rules and ratio/replacement semantics.
    ``rng`` is required (and only used) for ``order="random"`` with greedy.
    Bad arguments raise ``ValueError``; the result is verified by
    :func:`check_match` before it is returned, and a violated invariant raises
    :class:`MatchingInvariantError` (a bug in this module).
    """
    _check_choice("algorithm", algorithm, ALGORITHMS)
    _check_choice("order", order, ORDERS)
    _check_choice("caliper_scale", caliper_scale, CALIPER_SCALES)
    _check_choice("caliper_sd", caliper_sd, CALIPER_SDS)
    if caliper is not None:
        if isinstance(caliper, bool) or not isinstance(caliper, (int, float, np.integer, np.floating)):
            raise ValueError(f"caliper must be a positive number (in SDs) or None; got {caliper!r}")
        if not (np.isfinite(caliper) and caliper > 0):
            raise ValueError(f"caliper must be a positive finite number (in SDs) or None; got {caliper!r}")
        caliper = float(caliper)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 1:
        raise ValueError(f"ratio must be an integer >= 1; got {ratio!r}")
    ratio = int(ratio)
    if not isinstance(replace, (bool, np.bool_)):
        raise ValueError(f"replace must be True or False; got {replace!r}")
    score = np.asarray(score, dtype=float)
    if score.ndim != 1:
        raise ValueError(f"score must be a 1-D array; got shape {score.shape}")
    n = score.size
    t_arr = np.asarray(treated)
    if t_arr.shape != (n,):
        raise ValueError(f"treated must be a 1-D array of length {n}; got shape {t_arr.shape}")
    tf = t_arr.astype(float)
    if not np.all((tf == 0) | (tf == 1)):
        raise ValueError("treated must contain only 0/1 (or False/True)")
    t = tf == 1
    if not np.all(np.isfinite(score)):
        raise ValueError("score must be finite (no NaN/inf)")
    if caliper_scale == "logit":
        if np.any((score <= 0) | (score >= 1)):
            raise ValueError(
                "score must lie strictly in (0, 1) for caliper_scale='logit'; "
                "clip it or use caliper_scale='ps'"
            )
        d = _logit(score)
    else:
        d = score
    if exact is not None:
        exact = np.asarray(exact)
        if exact.shape != (n,):
            raise ValueError(f"exact must be a 1-D array of length {n}; got shape {exact.shape}")
        if not (np.issubdtype(exact.dtype, np.integer) or exact.dtype == bool):
            if np.issubdtype(exact.dtype, np.floating) and np.all(exact == np.round(exact)):
                exact = exact.astype(np.int64)
            else:
                raise ValueError("exact must be an integer array of stratum codes")
    if algorithm == "greedy" and order == "random" and not replace:
        if not isinstance(rng, np.random.Generator):
            raise ValueError("order='random' needs rng=np.random.Generator")

    notes = []
    n_t = int(t.sum())
    n_c = n - n_t
    width = caliper_width(d, t, caliper, caliper_sd)
    if caliper is not None and caliper_sd in ("pooled", "treated") and (
        n_t < 2 or (caliper_sd == "pooled" and n_c < 2)
    ):
        notes.append("a group has fewer than 2 units: its SD counted as 0 in the caliper")
    if caliper is None:
        notes.append("no caliper")
    if not replace and n_t * ratio > n_c:
        if ratio == 1:
            notes.append(f"more treated ({n_t}) than controls ({n_c}): at most {n_c} pairs")
        else:
            notes.append(
                f"treated x ratio ({n_t} x {ratio}) exceeds controls ({n_c}): "
                f"at most {n_c} links"
            )

    idx = np.arange(n)
    t_idx_all = idx[t]
    c_idx_all = idx[~t]
    # processing order of treated units (global), as ranks
    if algorithm == "greedy" and not replace and order != "closest":
        if order == "largest":
            proc = np.lexsort((t_idx_all, -score[t]))
        elif order == "smallest":
            proc = np.lexsort((t_idx_all, score[t]))
        elif order == "data":
            proc = np.arange(n_t)
        else:  # random
            proc = rng.permutation(n_t)
        t_sorted = t_idx_all[proc]
    else:
        t_sorted = t_idx_all

    if replace:
        if algorithm == "optimal":
            notes.append("optimal with replacement = nearest controls per treated unit")
        core = _nearest_with_replacement
    elif algorithm == "optimal":
        core = _optimal
    elif order == "closest":
        core = _greedy_closest
    else:
        core = _greedy_ordered

    parts = []
    if n_t and n_c:
        if exact is None:
            groups = [(t_sorted, c_idx_all)]
        else:
            groups = []
            ex_t = exact[t_sorted]
            ex_c = exact[c_idx_all]
            codes_t = np.unique(ex_t)
            # stable grouping keeps the processing order within each stratum
            o_t = np.argsort(ex_t, kind="stable")
            bounds_t = np.searchsorted(ex_t[o_t], codes_t, side="left")
            ends_t = np.searchsorted(ex_t[o_t], codes_t, side="right")
            o_c = np.argsort(ex_c, kind="stable")
            sc = ex_c[o_c]
            for code, a, b in zip(codes_t, bounds_t, ends_t):
                ca, cb = np.searchsorted(sc, code, "left"), np.searchsorted(sc, code, "right")
                if cb > ca:
                    groups.append((t_sorted[o_t[a:b]], np.sort(c_idx_all[o_c[ca:cb]])))
        for tg, cg in groups:
            # a core returns its links as an (m, 3) array or a list of (t, c, round) tuples
            parts.append(np.asarray(core(d[tg], tg, d[cg], cg, ratio, width), dtype=np.int64).reshape(-1, 3))

    L = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    tl, cl, rl = L[:, 0], L[:, 1], L[:, 2]
    matched_t = np.unique(tl)
    pid_of_t = np.full(n, -1, np.int64)
    pid_of_t[matched_t] = np.arange(matched_t.size)
    link_pid = pid_of_t[tl]
    o = np.lexsort((rl, link_pid))
    tl, cl, link_pid = tl[o], cl[o], link_pid[o]
    pair_id = pid_of_t.copy()
    if cl.size and not replace:
        pair_id[cl] = link_pid  # each control in at most one link
    elif cl.size:
        # smallest set id per control: links are sorted by pid, so its first link
        # (no reliance on the order of repeated-index fancy assignment)
        uc, first = np.unique(cl, return_index=True)
        pair_id[uc] = link_pid[first]
    k_i = np.bincount(tl, minlength=n)
    weights = np.zeros(n)
    weights[matched_t] = 1.0
    if cl.size:
        weights += np.bincount(cl, weights=1.0 / k_i[tl], minlength=n)
    n_unmatched = n_t - matched_t.size
    if n_unmatched and n_t:
        notes.append(f"{n_unmatched} of {n_t} treated units unmatched")
    result = MatchResult(
        treated_idx=tl,
        control_idx=cl,
        pair_id=pair_id,
        weights=weights,
        caliper_width=width,
        n_pairs=int(tl.size),
        n_treated_matched=int(matched_t.size),
        n_treated=n_t,
        n_control=n_c,
        notes=tuple(notes),
    )
    check_match(result, d, t, width, ratio, replace, exact)
    return result

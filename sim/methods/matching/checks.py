"""Run-time invariants of a matched sample (MatchIt #163: a deployed build silently ignored the
caliper). Every result of sim.methods.matching.match is checked before it is returned; a
violation is a bug in the matcher, never bad input, and raises MatchingInvariantError."""

from __future__ import annotations

import numpy as np

from sim.methods.matching.cores import TIE_TOL
from sim.methods.matching.result import MatchResult

# ----------------------------------------------------------------------------
# run-time invariants of a matched sample
# ----------------------------------------------------------------------------


class MatchingInvariantError(AssertionError):
    """A matched sample breaks an invariant of :func:`match`: a bug, not bad input.

    A subclass of ``AssertionError`` (an internal consistency check failed), not
    of ``ValueError``, so that code catching ``ValueError`` for bad input (the
    ``sim.match`` CLI) never reports it as a user error, and test runners show
    it as a failed check. It is raised explicitly, so ``python -O`` does not turn
    it off. The Monte Carlo runner records it, like any exception, as a failed
    replicate in ``failures.csv``.
    """


def _broken(rule: str, detail: str):
    raise MatchingInvariantError(
        f"bug in sim.methods.matching: the matched sample violates the invariant "
        f"'{rule}': {detail}. The result cannot be trusted; please report it."
    )


_EPS = float(np.finfo(float).eps)
_NO_SET = np.iinfo(np.int64).max


def check_match(result: MatchResult, d, treated, width, ratio: int, replace: bool, exact=None) -> None:
    """Check a :class:`MatchResult` against the inputs that produced it.

    ``d`` is the distance score the matcher used (logit(ps) or ps), ``treated``
    the 0/1 (or bool) treatment vector, ``width`` the caliper width (None: no
    caliper), ``ratio``/``replace``/``exact`` as given to :func:`match`.
    Rules (each violation raises :class:`MatchingInvariantError` naming it):

    * ``links``: ``treated_idx``/``control_idx`` are 1-D integer arrays of equal
      length, indices in 0..n-1, ``n_pairs`` = number of links;
    * ``roles``: every ``treated_idx`` is a treated unit, every ``control_idx``
      a control;
    * ``caliper``: every link has |d_t - d_c| <= width (a few ulps of float
      tolerance, relative to the scores involved); ``caliper_width`` = width;
    * ``no reuse``: without replacement no control appears in two links; with
      replacement no (treated, control) link appears twice;
    * ``ratio``: no treated unit has more than ``ratio`` controls;
    * ``exact``: both units of every link share the ``exact`` stratum code;
    * ``link order``: links sorted by ``pair_id``, nearest control first within a set
      (distances within ``TIE_TOL`` count as equal, see sim.methods.matching.cores);
    * ``pair_id``: matched treated units numbered 0..m-1 in increasing index,
      a linked control carries the smallest id of its sets, all others -1;
    * ``weights``: 1 for matched treated, sum of 1/k_i over a control's links,
      0 otherwise;
    * ``counts``: ``n_treated_matched``, ``n_treated``, ``n_control``.

    Vectorised, O(n + links); returns None when everything holds.
    """
    d = np.asarray(d, dtype=float)
    t = np.asarray(treated)
    if t.dtype != bool:
        t = t.astype(bool)
    n = d.size
    tl = np.asarray(result.treated_idx)
    cl = np.asarray(result.control_idx)
    if tl.ndim != 1 or tl.shape != cl.shape:
        _broken("links", f"treated_idx {tl.shape} and control_idx {cl.shape} must be 1-D of equal length")
    m = tl.size
    if result.n_pairs != m:
        _broken("links", f"n_pairs = {result.n_pairs} but there are {m} links")
    pair_id = np.asarray(result.pair_id)
    weights = np.asarray(result.weights)
    if pair_id.shape != (n,) or weights.shape != (n,):
        _broken("links", f"pair_id {pair_id.shape} and weights {weights.shape} must have length {n}")
    if (width is None) != (result.caliper_width is None) or (
        width is not None and not result.caliper_width == width
    ):
        _broken("caliper", f"caliper_width = {result.caliper_width!r}, expected {width!r}")
    n_t = int(np.count_nonzero(t))
    if result.n_treated != n_t or result.n_control != n - n_t:
        _broken(
            "counts",
            f"n_treated/n_control = {result.n_treated}/{result.n_control}, expected {n_t}/{n - n_t}",
        )
    pid = np.full(n, -1, np.int64)
    exp_weights = np.zeros(n)
    if m:
        if tl.dtype.kind not in "iu" or cl.dtype.kind not in "iu":
            _broken("links", f"link indices must be integers; got {tl.dtype} and {cl.dtype}")
        lo, hi = min(tl.min(), cl.min()), max(tl.max(), cl.max())
        if lo < 0 or hi >= n:
            _broken("links", f"link index out of range 0..{n - 1} (min {lo}, max {hi})")
        if not t[tl].all():
            _broken("roles", f"treated_idx holds control unit(s) {tl[~t[tl]][:5].tolist()}")
        if t[cl].any():
            _broken("roles", f"control_idx holds treated unit(s) {cl[t[cl]][:5].tolist()}")
        dt, dc = d[tl], d[cl]
        dist = np.abs(dt - dc)
        if width is not None and dist.max() > width:
            # a few ulps of slack, in case d was recomputed by another formula
            tol = 8.0 * _EPS * (np.maximum(np.abs(dt), np.abs(dc)) + abs(width))
            bad = dist > width + tol
            if bad.any():
                i = int(np.argmax(bad))
                _broken(
                    "caliper",
                    f"{int(bad.sum())} link(s) beyond the caliper width {width!r}, e.g. treated "
                    f"{int(tl[i])} - control {int(cl[i])} at |distance| {float(dist[i])!r}",
                )
        if exact is not None:
            ex = np.asarray(exact)
            bad = ex[tl] != ex[cl]
            if bad.any():
                i = int(np.argmax(bad))
                _broken("exact", f"treated {int(tl[i])} and control {int(cl[i])} are in different exact strata")
        k = np.bincount(tl, minlength=n)
        if k.max() > ratio:
            _broken("ratio", f"treated unit {int(np.argmax(k))} has {int(k.max())} controls, ratio is {ratio}")
        if not replace:
            uses = np.bincount(cl, minlength=n)
            if uses.max() > 1:
                _broken("no reuse", f"control {int(np.argmax(uses))} used {int(uses.max())} times with replace=False")
        elif ratio > 1:  # with one link per treated unit a repeated link is impossible
            key = np.sort(tl.astype(np.int64) * n + cl)
            if np.any(key[1:] == key[:-1]):
                _broken("no reuse", "a (treated, control) link appears twice")
        matched_t = np.flatnonzero(k)
        pid[matched_t] = np.arange(matched_t.size)
        exp_weights[matched_t] = 1.0
        link_pid = pid[tl]
        step = link_pid[1:] - link_pid[:-1]
        if (step < 0).any():
            _broken("link order", "links are not sorted by pair_id")
        # nearest first, up to the greedy cores' tie tolerance (mirror ties count as equal)
        tie = TIE_TOL * (1.0 + np.abs(dt[1:]))
        if ((step == 0) & (dist[1:] < dist[:-1] - tie)).any():
            _broken("link order", "within a matched set the links are not nearest control first")
        if replace:
            cmin = np.full(n, _NO_SET)
            np.minimum.at(cmin, cl, link_pid)
            used = cmin < _NO_SET
            pid[used] = cmin[used]
        else:
            pid[cl] = link_pid
        exp_weights += np.bincount(cl, weights=1.0 / k[tl], minlength=n)
        n_matched = matched_t.size
    else:
        n_matched = 0
    if result.n_treated_matched != n_matched:
        _broken("counts", f"n_treated_matched = {result.n_treated_matched}, links give {n_matched}")
    if not np.array_equal(pair_id, pid):
        i = int(np.argmax(pair_id != pid))
        _broken("pair_id", f"unit {i} has pair_id {int(pair_id[i])}, the links give {int(pid[i])}")
    ok = np.abs(weights - exp_weights) <= 1e-12 * (1.0 + exp_weights)  # False for NaN
    if not ok.all():
        i = int(np.argmax(~ok))
        _broken("weights", f"unit {i} has weight {float(weights[i])!r}, the links give {exp_weights[i]!r}")

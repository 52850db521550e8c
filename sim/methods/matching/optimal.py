"""Optimal pair matching (max number of within-caliper links, then min total |distance|): the
caliper-sparse graph solved by scipy's min_weight_full_bipartite_matching (:func:`_optimal`),
the dense cost matrix by linear_sum_assignment (:func:`_optimal_dense`, the reference, and the
solver without a caliper or when the caliper admits nearly every pair)."""

from __future__ import annotations

import numpy as np

MAX_OPTIMAL_CELLS = 25_000_000  #: largest problem (n_treated*ratio x n_control cells) optimal takes (dense: ~200 MB)


def _optimal_dense(dt, tid, dc, cid, ratio, width):
    """Max number of within-caliper links, then min total |distance|: the dense cost matrix
    solved by linear_sum_assignment (the original implementation: the reference for
    :func:`_optimal`, which uses it without a caliper, for small strata and for wide calipers)."""
    from scipy.optimize import linear_sum_assignment  # lazy: heavy import

    nt, nc = dt.size, dc.size
    rows = nt * ratio
    if rows * nc > MAX_OPTIMAL_CELLS:
        raise ValueError(
            f"algorithm='optimal' needs a dense {rows} x {nc} cost matrix, above the "
            f"limit of {MAX_OPTIMAL_CELLS} cells; use algorithm='greedy' or exact strata"
        )
    dist = np.abs(dt[:, None] - dc[None, :])
    allowed = np.ones_like(dist, bool) if width is None else dist <= width
    if not allowed.any():
        return []
    dmax = float(dist[allowed].max())
    big = (dmax + 1.0) * (min(rows, nc) + 1.0)
    cost = np.where(allowed, dist, big)
    if ratio > 1:
        cost = np.repeat(cost, ratio, axis=0)
    r, c = linear_sum_assignment(cost)
    keep = cost[r, c] < big
    r, c = r[keep] // ratio, c[keep]
    return _links(tid, cid, r, c, dist[r, c])


def _links(tid, cid, r, c, d):
    """Optimal links (local treated r, local control c, distance d) as rows (t_global, c_global,
    round), sorted by treated unit, then nearest first (ties: lower control index); round =
    rank of the link within its treated unit."""
    o = np.lexsort((cid[c], d, r))
    r, c = r[o], c[o]
    rnd = np.zeros(r.size, np.int64)
    if r.size:
        start = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
        grp = np.repeat(start, np.diff(np.r_[start, r.size]))
        rnd = np.arange(r.size) - grp
    return np.column_stack((tid[r], cid[c], rnd)).astype(np.int64, copy=False)


SPARSE_MIN_CELLS = 20_000  #: up to this many cells the dense solver is faster (no graph to build)
DENSE_SHARE = 0.9  #: the dense solver is used when the caliper admits more than this share of pairs


def _optimal(dt, tid, dc, cid, ratio, width):
    """Max number of within-caliper links, then min total |distance| (see the module docstring).

    Only pairs within the caliper become edges; units without any are left out; the smaller
    side (treated slots, ``ratio`` per treated unit, or controls) gives the rows, each with its
    own dummy column at cost ``big`` (the dense solver's cost of a disallowed cell), so a full
    matching always exists and every real link saves more than any rearrangement of distances
    can cost. Edge weights are distance + 1e-300: LAPJVsp wants non-zero weights, and the shift
    is lost in the rounding of every distance above ~1e-284 (it only separates zero from none).
    """
    nt, nc = dt.size, dc.size
    rows = nt * ratio
    if width is None or not SPARSE_MIN_CELLS < rows * nc <= MAX_OPTIMAL_CELLS:
        return _optimal_dense(dt, tid, dc, cid, ratio, width)  # (which also rejects a too large one)
    from scipy.sparse import csr_matrix  # lazy: heavy import
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    dt = np.asarray(dt, dtype=np.float64)
    dc = np.asarray(dc, dtype=np.float64)
    ot = np.argsort(dt, kind="stable")
    oc = np.argsort(dc, kind="stable")
    ts, cs = dt[ot], dc[oc]
    # candidate window in sorted controls, a few ulps wide of the caliper; the exact test
    # |dt - dc| <= width (as in the dense matrix) decides
    slack = 8.0 * np.finfo(float).eps * (np.abs(ts) + width)
    lo = np.searchsorted(cs, ts - width - slack, side="left")
    hi = np.searchsorted(cs, ts + width + slack, side="right")
    cnt = hi - lo
    n_cand = int(cnt.sum())
    if n_cand == 0:
        return []
    if n_cand > DENSE_SHARE * nt * nc:
        return _optimal_dense(dt, tid, dc, cid, ratio, width)
    e_t = np.repeat(np.arange(nt), cnt)  # sorted-treated rank
    e_c = np.arange(n_cand) - np.repeat(np.cumsum(cnt) - cnt - lo, cnt)  # sorted-control rank
    dist = np.abs(ts[e_t] - cs[e_c])
    ok = dist <= width
    if not ok.any():
        return []
    e_t, e_c, dist = e_t[ok], e_c[ok], dist[ok]
    big = (float(dist.max()) + 1.0) * (min(rows, nc) + 1.0)
    # drop units without an edge; renumber (keeps the sorted order)
    has_t = np.zeros(nt, bool)
    has_t[e_t] = True
    has_c = np.zeros(nc, bool)
    has_c[e_c] = True
    ut, uc = np.flatnonzero(has_t), np.flatnonzero(has_c)
    e_t = (np.cumsum(has_t) - 1)[e_t]
    e_c = (np.cumsum(has_c) - 1)[e_c]
    # ratio k: slot a*k + j (j < k) of treated unit a
    if ratio > 1:
        e_t = (e_t[:, None] * ratio + np.arange(ratio)).ravel()
        e_c = np.repeat(e_c, ratio)
        dist = np.repeat(dist, ratio)
    n_slots, n_ctrl = ut.size * ratio, uc.size
    if n_slots <= n_ctrl:
        er, ec, n_rows, n_cols = e_t, e_c, n_slots, n_ctrl
    else:
        er, ec, n_rows, n_cols = e_c, e_t, n_ctrl, n_slots
    diag = np.arange(n_rows)
    graph = csr_matrix(
        (np.r_[dist + 1e-300, np.full(n_rows, big)], (np.r_[er, diag], np.r_[ec, n_cols + diag])),
        shape=(n_rows, n_cols + n_rows),
    )
    r, c = min_weight_full_bipartite_matching(graph)
    real = c < n_cols
    r, c = r[real], c[real]
    slot, ctrl = (r, c) if n_slots <= n_ctrl else (c, r)
    r = ot[ut[slot // ratio]]  # local treated index
    c = oc[uc[ctrl]]  # local control index
    return _links(tid, cid, r, c, np.abs(dt[r] - dc[c]))

"""The matching algorithms' cores, per exact stratum: greedy nearest neighbour (ordered or
closest-first, with union-find "next available" pools), nearest with replacement, and optimal
pair matching (scipy). sim.methods.matching.match drives them.

Every core takes ``(dt, tid, dc, cid, ratio, width)`` (distance scores and global indices of the
stratum's treated units, in processing order, and of its controls; ``width`` None: no caliper) and
returns its links as rows ``(t_global, c_global, round)``: an ``(m, 3)`` int64 array, or a list of
such tuples (the reference cores).

* Greedy without replacement runs compiled (numba, ``cache=True``; compiled on first use, then
  loaded from numba's on-disk cache): :func:`_greedy_ordered` and :func:`_greedy_closest`. The
  plain-Python :func:`_greedy_ordered_py` and :func:`_greedy_closest_py` are the original
  implementation, kept as the reference the tests compare the compiled cores with (same links, in
  the same order); they also serve small strata until the kernels are loaded, which small
  samples would not repay (see ``COMPILED_MIN_UNITS``).
* Optimal with a caliper (:func:`_optimal`) solves the caliper-sparse graph with
  ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp): one dummy partner per
  unit of the smaller side, at a cost above any set of real links, so that the number of links is
  maximised first and then the total |distance| minimised, the objective of the dense
  :func:`_optimal_dense` (``linear_sum_assignment``), which it falls back to without a caliper or
  when the caliper admits nearly every pair. Both find an optimum; where several exist they may
  pick different ones (same number of links and total distance).
"""

from __future__ import annotations

import heapq

import numpy as np

MAX_OPTIMAL_CELLS = 25_000_000  #: largest problem (n_treated*ratio x n_control cells) optimal takes (dense: ~200 MB)
#: Greedy without replacement: the nearest control above a treated unit's score x and the nearest
#: below count as equally near (the lower control index wins) when their distances differ by at
#: most TIE_TOL * (1 + |x|). Discrete covariates make such mirror ties common (a control one year
#: older and one a year younger, otherwise alike, are at the same distance); compared exactly,
#: they would be decided by the last bit of the fitted scores, i.e. by the order of floating-point
#: sums in the PS fit, which differs between BLAS builds and between the per-replicate and the
#: batched analysis. Real distances this close do not otherwise occur in a logit-PS sample.
TIE_TOL = 1e-11


# ----------------------------------------------------------------------------
# per-stratum cores: the original (reference) implementations, and nearest with replacement
# ----------------------------------------------------------------------------



def _find(parent: list, p: int) -> int:
    """Union-find root of p with path compression: the next still-available slot."""
    r = p
    while parent[r] != r:
        r = parent[r]
    while parent[p] != r:
        parent[p], p = r, parent[p]
    return r

class _Pool:
    """Controls sorted by score with O(~1) "nearest still-available" queries.

    Two orderings of the same sorted values: ``R`` ties by ascending index
    (scanning right meets the lowest index first), ``L`` ties by descending
    index (scanning left meets the lowest index first).
    """

    def __init__(self, dc: np.ndarray, cid: np.ndarray):
        nc = dc.size
        sR = np.lexsort((cid, dc))
        sL = np.lexsort((-cid, dc))
        self.vals = dc[sR]
        self.valsR = self.vals.tolist()
        self.valsL = dc[sL].tolist()
        self.cR = cid[sR].tolist()
        self.cL = cid[sL].tolist()
        posR = np.empty(nc, np.int64)
        posR[sR] = np.arange(nc)
        posL = np.empty(nc, np.int64)
        posL[sL] = np.arange(nc)
        self.jR = sR.tolist()  # position -> local control
        self.jL = sL.tolist()
        self.posR = posR.tolist()  # local control -> position
        self.posL = posL.tolist()
        self.nxt = list(range(nc + 1))  # smallest available position >= i (nc: none)
        self.prv = list(range(nc + 1))  # slot i+1 <-> position i; 0: none
        self.nc = nc

    def positions(self, dt: np.ndarray) -> list:
        return np.searchsorted(self.vals, dt, side="left").tolist()

    def nearest(self, x: float, p: int):
        """(dist, control_global, local) of the nearest available control or None."""
        r = _find(self.nxt, p)  # right: smallest available position >= p
        left = _find(self.prv, p)  # left: largest available position <= p-1 (slot p)
        best = None
        if r < self.nc:
            best = (self.valsR[r] - x, self.cR[r], self.jR[r])
        if left > 0:
            cand = (x - self.valsL[left - 1], self.cL[left - 1], self.jL[left - 1])
            tol = TIE_TOL * (1.0 + abs(x))
            if best is None or cand[0] < best[0] - tol or (abs(cand[0] - best[0]) <= tol and cand[1] < best[1]):
                best = cand
        return best

    def remove(self, j: int) -> None:
        a = self.posR[j]
        self.nxt[a] = a + 1
        b = self.posL[j]
        self.prv[b + 1] = b


def _greedy_ordered_py(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement; treated processed in the given order (reference for the
    compiled :func:`_greedy_ordered`)."""
    pool = _Pool(dc, cid)
    pos = pool.positions(dt)
    dtl = dt.tolist()
    tidl = tid.tolist()
    links = []
    active = range(len(tidl))
    w = float("inf") if width is None else width
    for rnd in range(ratio):
        nxt_active = []
        for i in active:
            best = pool.nearest(dtl[i], pos[i])
            if best is None or best[0] > w:
                continue
            pool.remove(best[2])
            links.append((tidl[i], best[1], rnd))
            nxt_active.append(i)
        active = nxt_active
        if not active:
            break
    return links


def _greedy_closest_py(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement, globally closest allowed pair first (reference for the
    compiled :func:`_greedy_closest`)."""
    pool = _Pool(dc, cid)
    pos = pool.positions(dt)
    dtl = dt.tolist()
    tidl = tid.tolist()
    w = float("inf") if width is None else width
    taken = [False] * dc.size
    links = []
    active = list(range(len(tidl)))
    for rnd in range(ratio):
        heap = []
        for i in active:
            best = pool.nearest(dtl[i], pos[i])
            if best is not None and best[0] <= w:
                heap.append((best[0], tidl[i], best[1], best[2], i))
        heapq.heapify(heap)
        nxt_active = []
        while heap:
            dist, t_g, c_g, j, i = heapq.heappop(heap)
            if taken[j]:
                best = pool.nearest(dtl[i], pos[i])
                if best is not None and best[0] <= w:
                    heapq.heappush(heap, (best[0], t_g, best[1], best[2], i))
                continue
            taken[j] = True
            pool.remove(j)
            links.append((t_g, c_g, rnd))
            nxt_active.append(i)
        active = sorted(nxt_active)
        if not active:
            break
    return links


def _nearest_with_replacement(dt, tid, dc, cid, ratio, width):
    """Each treated unit gets its k nearest controls (controls reusable); vectorised."""
    nc = dc.size
    sR = np.lexsort((cid, dc))
    sL = np.lexsort((-cid, dc))
    vals = dc[sR]
    pos = np.searchsorted(vals, dt, side="left")
    off = np.arange(ratio)
    lp = pos[:, None] - 1 - off
    rp = pos[:, None] + off
    lok = lp >= 0
    rok = rp < nc
    lpc = np.clip(lp, 0, nc - 1)
    rpc = np.clip(rp, 0, nc - 1)
    ldist = np.where(lok, dt[:, None] - dc[sL][lpc], np.inf)
    rdist = np.where(rok, vals[rpc] - dt[:, None], np.inf)
    big = np.iinfo(np.int64).max
    lid = np.where(lok, cid[sL][lpc], big)
    rid = np.where(rok, cid[sR][rpc], big)
    dist = np.concatenate([ldist, rdist], axis=1)
    ids = np.concatenate([lid, rid], axis=1)
    o = np.lexsort((ids, dist), axis=-1)[:, :ratio]
    dist = np.take_along_axis(dist, o, axis=1)
    ids = np.take_along_axis(ids, o, axis=1)
    ok = np.isfinite(dist)
    if width is not None:
        ok &= dist <= width
    r, k = np.nonzero(ok)
    return np.column_stack((tid[r], ids[r, k], k)).astype(np.int64, copy=False)


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


# ----------------------------------------------------------------------------
# compiled greedy cores (numba)
# ----------------------------------------------------------------------------
#
# The same algorithm as _Pool/_greedy_*_py, on one sorted array of controls: ``vals`` ascending,
# ties by ascending global index (``cs``), so scanning right from a position meets the lowest
# index first. Scanning left, the nearest available value below x is found with a union-find
# over "slots" (slot k+1 <-> position k), and the lowest-index control still available at that
# value is the first available position from the start of its run of equal values (``gs``): the
# control that _Pool's second ordering (ties by descending index) reaches. Distances are
# computed as there (vals - x on the right, x - vals on the left) and compared as (distance,
# control index).
#
# The kernels are plain functions here, compiled by _kernel() on first use: importing numba
# costs about half a second, which `import sim` and the CLI should not pay up front.


def _uf_root(parent, p):
    """Root of p (the next still-available slot), with path compression."""
    r = p
    while parent[r] != r:
        r = parent[r]
    while parent[p] != r:
        q = parent[p]
        parent[p] = r
        p = q
    return r


def _run_starts(vals):
    """gs[k] = first position of the run of values equal to vals[k]."""
    n = vals.size
    gs = np.empty(n, np.int64)
    for k in range(n):
        if k > 0 and vals[k] == vals[k - 1]:
            gs[k] = gs[k - 1]
        else:
            gs[k] = k
    return gs


def _nearest_available(x, p, vals, cs, gs, nxt, prv):
    """(position, distance) of the nearest available control to x (position -1: none left);
    p = searchsorted(vals, x, 'left'). Ties by the lower control index."""
    nc = vals.size
    best = -1
    bd = 0.0
    r = _uf_root(nxt, p)  # smallest available position >= p
    if r < nc:
        best = r
        bd = vals[r] - x
    s = _uf_root(prv, p)  # slot of the largest available position < p (0: none)
    if s > 0:
        q = _uf_root(nxt, gs[s - 1])  # lowest index still available at that value
        ld = x - vals[q]
        tol = TIE_TOL * (1.0 + abs(x))
        if best < 0 or ld < bd - tol or (abs(ld - bd) <= tol and cs[q] < cs[best]):
            best = q
            bd = ld
    return best, bd


def _take(b, nxt, prv):
    nxt[b] = b + 1
    prv[b + 1] = b


def _greedy_ordered_kernel(dt, pos, vals, cs, ratio, w):
    """Links (local treated, control index, round) of greedy matching in the given order."""
    return _greedy_ordered_links(dt, pos, vals, cs, ratio, w)


def _sd1(x):
    """Sample SD (ddof=1) of x; 0 below two values (matching._sd)."""
    n = x.size
    if n < 2:
        return 0.0
    m = 0.0
    for v in x:
        m += v
    m /= n
    s = 0.0
    for v in x:
        s += (v - m) ** 2
    return np.sqrt(s / (n - 1))


def _greedy_pairs_batch(d, ps, treated, order, caliper, caliper_sd):
    """1:1 greedy pairs of each of B samples (rows of d, ps, treated), as match() makes them with
    ratio 1 and no exact strata: treated processed by ps, largest first (order 0), smallest first
    (1) or in data order (2), ties by index; caliper <= 0: none; caliper_sd 0 pooled, 1 whole,
    2 treated. Returns (treated index, control index) (B, N), links sorted by treated index, and
    the pairs per sample."""
    B, N = d.shape
    ti = np.zeros((B, N), np.int64)
    ci = np.zeros((B, N), np.int64)
    n_pairs = np.zeros(B, np.int64)
    for b in range(B):
        tid = np.flatnonzero(treated[b])
        cid = np.flatnonzero(~treated[b])
        if tid.size == 0 or cid.size == 0:
            continue
        if order == 0:
            tid = tid[np.argsort(-ps[b, tid], kind="mergesort")]
        elif order == 1:
            tid = tid[np.argsort(ps[b, tid], kind="mergesort")]
        w = np.inf
        if caliper > 0:
            if caliper_sd == 0:
                sd = np.sqrt((_sd1(d[b, tid]) ** 2 + _sd1(d[b, cid]) ** 2) / 2.0)
            elif caliper_sd == 1:
                sd = _sd1(d[b])
            else:
                sd = _sd1(d[b, tid])
            w = caliper * sd
        dt = d[b, tid]
        s = np.argsort(d[b, cid], kind="mergesort")
        vals = d[b, cid][s]
        cs = cid[s]
        pos = np.searchsorted(vals, dt)
        lt, lc, _ = _greedy_ordered_links(dt, pos, vals, cs, 1, w)
        lt = tid[lt]
        o = np.argsort(lt)
        m = lt.size
        ti[b, :m] = lt[o]
        ci[b, :m] = lc[o]
        n_pairs[b] = m
    return ti, ci, n_pairs


def _greedy_ordered_links(dt, pos, vals, cs, ratio, w):
    nt = dt.size
    nc = vals.size
    gs = _run_starts(vals)
    nxt = np.arange(nc + 1)
    prv = np.arange(nc + 1)
    cap = min(nt * ratio, nc)
    out_t = np.empty(cap, np.int64)
    out_c = np.empty(cap, np.int64)
    out_r = np.empty(cap, np.int64)
    m = 0
    active = np.arange(nt)
    na = nt
    for rnd in range(ratio):
        k = 0
        for a in range(na):
            i = active[a]
            b, dist = _nearest_available(dt[i], pos[i], vals, cs, gs, nxt, prv)
            if b < 0 or dist > w:
                continue
            _take(b, nxt, prv)
            out_t[m] = i
            out_c[m] = cs[b]
            out_r[m] = rnd
            m += 1
            active[k] = i  # survivors keep their order
            k += 1
        na = k
        if na == 0:
            break
    return out_t[:m], out_c[:m], out_r[:m]


def _heap_less(hd, hk, a, b):
    return hd[a] < hd[b] or (hd[a] == hd[b] and hk[a] < hk[b])


def _heap_swap(hd, hk, hi, hb, a, b):
    hd[a], hd[b] = hd[b], hd[a]
    hk[a], hk[b] = hk[b], hk[a]
    hi[a], hi[b] = hi[b], hi[a]
    hb[a], hb[b] = hb[b], hb[a]


def _heap_down(hd, hk, hi, hb, a, n):
    while True:
        c = 2 * a + 1
        if c >= n:
            return
        if c + 1 < n and _heap_less(hd, hk, c + 1, c):
            c += 1
        if not _heap_less(hd, hk, c, a):
            return
        _heap_swap(hd, hk, hi, hb, a, c)
        a = c


def _heap_up(hd, hk, hi, hb, a):
    while a > 0:
        p = (a - 1) // 2
        if not _heap_less(hd, hk, a, p):
            return
        _heap_swap(hd, hk, hi, hb, a, p)
        a = p


def _greedy_closest_kernel(dt, tkey, pos, vals, cs, ratio, w):
    """Links (local treated, control index, round) of greedy matching, globally closest allowed
    pair first; ties by (distance, tkey) (tkey: the treated units' global indices, distinct)."""
    nt = dt.size
    nc = vals.size
    gs = _run_starts(vals)
    nxt = np.arange(nc + 1)
    prv = np.arange(nc + 1)
    taken = np.zeros(nc, np.bool_)
    cap = min(nt * ratio, nc)
    out_t = np.empty(cap, np.int64)
    out_c = np.empty(cap, np.int64)
    out_r = np.empty(cap, np.int64)
    m = 0
    # binary min-heap on (distance, tkey); one entry per treated unit at a time
    hd = np.empty(nt, np.float64)
    hk = np.empty(nt, np.int64)
    hi = np.empty(nt, np.int64)
    hb = np.empty(nt, np.int64)
    active = np.arange(nt)
    na = nt
    for rnd in range(ratio):
        n = 0
        for a in range(na):
            i = active[a]
            b, dist = _nearest_available(dt[i], pos[i], vals, cs, gs, nxt, prv)
            if b >= 0 and dist <= w:
                hd[n] = dist
                hk[n] = tkey[i]
                hi[n] = i
                hb[n] = b
                n += 1
        for a in range(n // 2 - 1, -1, -1):
            _heap_down(hd, hk, hi, hb, a, n)
        k = 0
        while n > 0:
            i = hi[0]
            b = hb[0]
            key = hk[0]
            n -= 1
            if n > 0:
                _heap_swap(hd, hk, hi, hb, 0, n)
                _heap_down(hd, hk, hi, hb, 0, n)
            if taken[b]:  # its nearest control went to a closer pair: ask again
                b2, d2 = _nearest_available(dt[i], pos[i], vals, cs, gs, nxt, prv)
                if b2 >= 0 and d2 <= w:
                    hd[n] = d2
                    hk[n] = key
                    hi[n] = i
                    hb[n] = b2
                    n += 1
                    _heap_up(hd, hk, hi, hb, n - 1)
                continue
            taken[b] = True
            _take(b, nxt, prv)
            out_t[m] = i
            out_c[m] = cs[b]
            out_r[m] = rnd
            m += 1
            active[k] = i
            k += 1
        active[:k].sort()
        na = k
        if na == 0:
            break
    return out_t[:m], out_c[:m], out_r[:m]


_HELPERS = ("_uf_root", "_run_starts", "_nearest_available", "_take", "_greedy_ordered_links", "_sd1",
            "_heap_less", "_heap_swap", "_heap_down", "_heap_up")
_KERNELS: dict = {}

#: Strata of fewer units run the reference Python code until the compiled kernels are loaded in
#: the process (by a stratum this large or larger): importing numba and loading them costs ~0.5 s,
#: more than the Python code spends on a few small samples (1,000 units: ~0.6 ms), so a process
#: that only matches small samples (the `sim.match` CLI on a study, a Monte Carlo run at small N)
#: never imports numba. Both give the same links (tests/test_matching_scale.py).
COMPILED_MIN_UNITS = 2_000


def _compiled(n_units: int) -> bool:
    """Run the compiled kernel for a stratum of n_units units? (see COMPILED_MIN_UNITS)"""
    return bool(_KERNELS) or n_units >= COMPILED_MIN_UNITS


def _kernel(name: str):
    """The compiled kernel ``name`` (numba.njit(cache=True)), built on first use: compiled once
    (a few seconds), then loaded from numba's on-disk cache by every later process."""
    k = _KERNELS.get(name)
    if k is None:
        import numba

        g = globals()
        for h in _HELPERS:  # inlined into the kernels (they are compiled with them)
            if not hasattr(g[h], "py_func"):
                g[h] = numba.njit(inline="always")(g[h])
        k = _KERNELS[name] = numba.njit(cache=True)(g[name])
    return k


def _sorted_controls(dc, cid):
    """Controls sorted by (score, global index)."""
    if cid.size < 2 or bool(np.all(cid[1:] > cid[:-1])):
        return np.argsort(dc, kind="stable")  # = lexsort((cid, dc)) for increasing cid, faster
    return np.lexsort((cid, dc))


def _greedy_prepare(dt, tid, dc, cid, width):
    dt = np.ascontiguousarray(dt, dtype=np.float64)
    dc = np.ascontiguousarray(dc, dtype=np.float64)
    tid = np.asarray(tid, dtype=np.int64)
    cid = np.asarray(cid, dtype=np.int64)
    s = _sorted_controls(dc, cid)
    vals = dc[s]
    cs = cid[s]
    pos = np.searchsorted(vals, dt, side="left").astype(np.int64, copy=False)
    w = np.inf if width is None else float(width)
    return dt, tid, pos, vals, cs, w


def _greedy_ordered(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement; treated processed in the given order (compiled)."""
    if not _compiled(dt.size + dc.size):
        return _greedy_ordered_py(dt, tid, dc, cid, ratio, width)
    dt, tid, pos, vals, cs, w = _greedy_prepare(dt, tid, dc, cid, width)
    ti, c, r = _kernel("_greedy_ordered_kernel")(dt, pos, vals, cs, int(ratio), w)
    return np.column_stack((tid[ti], c, r))


def _greedy_closest(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement, globally closest allowed pair first (compiled)."""
    if not _compiled(dt.size + dc.size):
        return _greedy_closest_py(dt, tid, dc, cid, ratio, width)
    dt, tid, pos, vals, cs, w = _greedy_prepare(dt, tid, dc, cid, width)
    ti, c, r = _kernel("_greedy_closest_kernel")(dt, tid, pos, vals, cs, int(ratio), w)
    return np.column_stack((tid[ti], c, r))


# ----------------------------------------------------------------------------
# optimal matching on the caliper-sparse graph
# ----------------------------------------------------------------------------

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

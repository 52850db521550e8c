"""The matching algorithms' cores, per exact stratum: greedy nearest neighbour (ordered or
closest-first, with union-find "next available" pools) and nearest with replacement here, their
compiled greedy twins in sim.methods.matching.compiled, optimal pair matching (scipy) in
sim.methods.matching.optimal. sim.methods.matching.match drives them.

Every core takes ``(dt, tid, dc, cid, ratio, width)`` (distance scores and global indices of the
stratum's treated units, in processing order, and of its controls; ``width`` None: no caliper) and
returns its links as rows ``(t_global, c_global, round)``: an ``(m, 3)`` int64 array, or a list of
such tuples (the reference cores).

* Greedy without replacement runs compiled (numba, ``cache=True``; compiled on first use, then
  loaded from numba's on-disk cache): ``matching_compiled._greedy_ordered`` and
  ``_greedy_closest``. The plain-Python :func:`_greedy_ordered_py` and :func:`_greedy_closest_py`
  here are the original implementation, kept as the reference the tests compare the compiled
  cores with (same links, in the same order); they also serve small strata until the kernels are
  loaded, which small samples would not repay (see ``sim.methods.matching.compiled.COMPILED_MIN_UNITS``).
* Optimal with a caliper (``matching_optimal._optimal``) solves the caliper-sparse graph with
  ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp): one dummy partner per
  unit of the smaller side, at a cost above any set of real links, so that the number of links is
  maximised first and then the total |distance| minimised, the objective of the dense
  ``_optimal_dense`` (``linear_sum_assignment``), which it falls back to without a caliper or
  when the caliper admits nearly every pair. Both find an optimum; where several exist they may
  pick different ones (same number of links and total distance).
"""

from __future__ import annotations

import heapq

import numpy as np

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

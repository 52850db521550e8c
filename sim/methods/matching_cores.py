"""The matching algorithms' cores, per exact stratum: greedy nearest neighbour (ordered or
closest-first, with union-find "next available" pools), nearest with replacement, and optimal
pair matching (scipy's linear_sum_assignment). sim.methods.matching.match drives them."""

from __future__ import annotations

import heapq

import numpy as np

MAX_OPTIMAL_CELLS = 25_000_000  #: largest dense cost matrix (cells) the optimal algorithm builds (~200 MB)


# ----------------------------------------------------------------------------
# per-stratum cores; all return lists (t_global, c_global, round)
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
            if best is None or cand[:2] < best[:2]:
                best = cand
        return best

    def remove(self, j: int) -> None:
        a = self.posR[j]
        self.nxt[a] = a + 1
        b = self.posL[j]
        self.prv[b + 1] = b


def _greedy_ordered(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement; treated processed in the given order."""
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


def _greedy_closest(dt, tid, dc, cid, ratio, width):
    """Greedy without replacement, globally closest allowed pair first."""
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
    return list(zip(tid[r].tolist(), ids[r, k].tolist(), k.tolist()))


def _optimal(dt, tid, dc, cid, ratio, width):
    """Max number of within-caliper links, then min total |distance|."""
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
    d = dist[r, c]
    o = np.lexsort((cid[c], d, r))
    r, c = r[o], c[o]
    # round = rank of the link within its treated unit (nearest first)
    rnd = np.zeros(r.size, np.int64)
    if r.size:
        start = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
        grp = np.repeat(start, np.diff(np.r_[start, r.size]))
        rnd = np.arange(r.size) - grp
    return list(zip(tid[r].tolist(), cid[c].tolist(), rnd.tolist()))

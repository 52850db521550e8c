"""The compiled (numba) greedy cores of sim.methods.matching.cores: the same links as its
plain-Python reference cores, in the same order, at a fraction of their cost; and the greedy
matching of a whole chunk of replicates (sim.methods.batched)."""

from __future__ import annotations

import numpy as np

from sim.methods.matching.cores import TIE_TOL, _greedy_closest_py, _greedy_ordered_py


# # The same algorithm as _Pool/_greedy_*_py, on one sorted array of controls: ``vals`` ascending,
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
#: the process (by a stratum this large or larger): importing numba and loading a cached kernel
#: costs 0.4-0.5 s in a fresh process, which the Python code does not spend below about 300,000
#: units (measured, 20 % treated, no caliper: 20,000 units 0.02 s vs 0.43-0.87 s compiled;
#: 200,000: 0.18-0.29 s vs 0.48-0.54 s; 500,000: 0.70-1.03 s vs 0.47-0.59 s, largest-first and
#: closest-first orders). So `python -m sim.match` on a study never imports numba, and a long run
#: that has loaded the kernels (the batched pipeline does) keeps using them at every size. Both
#: give the same links (tests/test_matching_scale.py).
COMPILED_MIN_UNITS = 300_000


def _compiled(n_units: int) -> bool:
    """Run the compiled kernel for a stratum of n_units units? (see COMPILED_MIN_UNITS)"""
    return bool(_KERNELS) or n_units >= COMPILED_MIN_UNITS


def _kernel(name: str):
    """The compiled kernel ``name`` (numba.njit(cache=True)), built on first use: compiled once
    (a few seconds), then loaded from numba's on-disk cache by every later process."""
    k = _KERNELS.get(name)
    if k is None:
        from sim.numerics.jit import numba

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

"""The truncation analyses of a chunk's pair sets at once (sim.methods.batched): the numbers behind
truncation_fields (lee_bounds, composite_rank) for every replicate x outcome x visit, compiled; the
rows' fields are assembled in sim.methods.batched.rows (`per_pair_fields`).

lee_bounds: the sorted observed changes, the (fractionally) trimmed means and variances, Lee's
variance and the Imbens-Manski CI, whose constant is found by a port of scipy's brentq (the same
iterates, xtol = 1e-10) on a port of scipy's ndtr (cephes' erf and erfc): the same bits. Means and
variances are numpy's to the bit; only the trimmed sums (`w @ y`, BLAS in the reference) are added
in another order, so a bound or CI limit that is 0 in exact arithmetic may come out +-1e-17 on one
side only: rows.per_pair_fields has such rows (`fragile`: a bound or limit within 1e-9 of 0
relative to the changes, unless all changes are whole numbers, whose sums are exact) recomputed by
the reference, so that `favours` and `ci_excludes_0` are its own. composite_rank: the rank-sum
statistics of the death-ranks-worst composite (exact: ranks and counts), merged from the sorted
changes Lee uses and the sorted death days.

Its numpy-order sums and means are sim.methods.batched.sensitivity's (a kernel may call another
file's compiled code: numba's cache is keyed by every numba file of the package, sim.__init__).
"""

from __future__ import annotations

import math

import numpy as np

from sim.methods.batched.sensitivity import mean_var, pairwise_sum
from sim.numerics.jit import numba

NAN = float("nan")
COVERED = ("lee_bounds", "composite_rank")
TOO_FEW = "too few observed (need >= 2 per group)"
BRENT_XTOL, BRENT_RTOL, BRENT_MAXITER = 1e-10, 4 * np.finfo(float).eps, 100  # lee's brentq call, scipy's defaults
FRAGILE = 1e-9
# columns of the Lee numbers
(BL, BH, CL, CH, TRIM, TRIMMED_T, OK, N_ALL, SCALE, WHOLE, NLEE) = range(11)

# cephes' erf/erfc coefficients as in scipy (xsf/cephes/ndtr.h)
_P = np.array([2.46196981473530512524E-10, 5.64189564831068821977E-1, 7.46321056442269912687E0, 4.86371970985681366614E1,
               1.96520832956077098242E2, 5.26445194995477358631E2, 9.34528527171957607540E2, 1.02755188689515710272E3,
               5.57535335369399327526E2])
_Q = np.array([1.32281951154744992508E1, 8.67072140885989742329E1, 3.54937778887819891062E2, 9.75708501743205489753E2,
               1.82390916687909736289E3, 2.24633760818710981792E3, 1.65666309194161350182E3, 5.57535340817727675546E2])
_R = np.array([5.64189583547755073984E-1, 1.27536670759978104416E0, 5.01905042251180477414E0, 6.16021097993053585195E0,
               7.40974269950448939160E0, 2.97886665372100240670E0])
_S = np.array([2.26052863220117276590E0, 9.39603524938001434673E0, 1.20489539808096656605E1, 1.70814450747565897222E1,
               9.60896809063285878198E0, 3.36907645100081516050E0])
_T = np.array([9.60497373987051638749E0, 9.00260197203842689217E1, 2.23200534594684319226E3, 7.00332514112805075473E3,
               5.55923013010394962768E4])
_U = np.array([3.35617141647503099647E1, 5.21357949780152679795E2, 4.59432382970980127987E3, 2.26290000613890934246E4,
               4.92673942608635921086E4])
_MAXLOG = 7.09782712893383996843E2
_SQRT1_2 = 0.70710678118654752440


# ----------------------------------------------------------------------------- scipy's ndtr and brentq, compiled

@numba.njit(cache=True)
def _polevl(x, c):
    ans = c[0]
    for i in range(1, c.size):
        ans = ans * x + c[i]
    return ans


@numba.njit(cache=True)
def _p1evl(x, c):
    ans = x + c[0]
    for i in range(1, c.size):
        ans = ans * x + c[i]
    return ans


@numba.njit(cache=True)
def _erf_small(x):
    """cephes erf for 0 <= x <= 1."""
    z = x * x
    return x * _polevl(z, _T) / _p1evl(z, _U)


@numba.njit(cache=True)
def _erfc_large(a):
    """cephes erfc for a >= 1."""
    z = -a * a
    if z < -_MAXLOG:
        return 0.0
    z = math.exp(z)
    if a < 8.0:
        y = (z * _polevl(a, _P)) / _p1evl(a, _Q)
    else:
        y = (z * _polevl(a, _R)) / _p1evl(a, _S)
    return y


@numba.njit(cache=True)
def ndtr(a):
    """scipy.special.ndtr, the same bits: cephes' erf for |a| / sqrt 2 < 1, its erfc beyond (the
    branches scipy takes; without recursion, which numba's cache cannot hold)."""
    if np.isnan(a):
        return np.nan
    x = a * _SQRT1_2
    z = abs(x)
    if z < 1.0:
        return 0.5 + 0.5 * (-_erf_small(-x) if x < 0.0 else _erf_small(x))
    y = 0.5 * _erfc_large(z)
    return 1.0 - y if x > 0 else y


@numba.njit(cache=True)
def _im_f(c, r, level):
    return ndtr(c + r) - ndtr(-c) - level


@numba.njit(cache=True)
def im_constant(r, level, xa, xb):
    """Root in c of Φ(c + r) - Φ(-c) = level on [xa, xb] by scipy's brentq (Zeros/brentq.c) with
    lee's tolerance: the same iterates, hence the same root (NaN where scipy would raise)."""
    xtol, rtol = BRENT_XTOL, BRENT_RTOL
    xpre, xcur = xa, xb
    xblk = fblk = spre = scur = 0.0
    fpre, fcur = _im_f(xpre, r, level), _im_f(xcur, r, level)
    if fpre * fcur > 0:
        return np.nan
    if fpre == 0:
        return xpre
    if fcur == 0:
        return xcur
    for _ in range(BRENT_MAXITER):
        if fpre * fcur < 0:
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2
        sbis = (xblk - xcur) / 2
        if fcur == 0 or abs(sbis) < delta:
            return xcur
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:
                stry = -fcur * (xcur - xpre) / (fcur - fpre)
            else:
                dpre = (fpre - fcur) / (xpre - xcur)
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            if 2 * abs(stry) < min(abs(spre), 3 * abs(sbis) - delta):
                spre, scur = scur, stry
            else:
                spre = scur = sbis
        else:
            spre = scur = sbis
        xpre, fpre = xcur, fcur
        xcur += scur if abs(scur) > delta else (delta if sbis > 0 else -delta)
        fcur = _im_f(xcur, r, level)
    return np.nan


# ----------------------------------------------------------------------------- Lee bounds

@numba.njit(cache=True)
def _trimmed(ys, kept, top, work):
    """truncation._trimmed: mean, plug-in variance and boundary value keeping `kept` of mass."""
    m = ys.size
    w = np.empty(m)
    for i in range(m):
        v = kept - ((m - 1 - i) if top else i)
        w[i] = min(max(v, 0.0), 1.0)
        work[i] = w[i] * ys[i]
    mu = pairwise_sum(work, 0, m) / kept
    for i in range(m):
        d = ys[i] - mu
        work[i] = w[i] * (d * d)
    var = pairwise_sum(work, 0, m) / kept
    k = min(max(math.ceil(kept), 1), m)
    return mu, var, (ys[m - k] if top else ys[k - 1])


@numba.njit(cache=True)
def _lee(obs_t, obs_c, m, level, z, two, o):
    """lee_bounds of m pairs into o (BL..WHOLE), from the sorted observed changes of each group."""
    m_t, m_c = obs_t.size, obs_c.size
    o[N_ALL] = m
    scale = 0.0
    whole = True
    for v in (obs_t, obs_c):
        for x in v:
            scale = max(scale, abs(x))
            whole &= (x == math.floor(x)) and abs(x) < 2.0 ** 40
    o[SCALE], o[WHOLE] = scale, whole
    if m_t < 2 or m_c < 2:
        o[OK] = 0.0
        return
    o[OK] = 1.0
    n_t = n_c = m
    work = np.empty(max(m_t, m_c))
    v_q = 1 / m_t - 1 / n_t + 1 / m_c - 1 / n_c
    if m_t * n_c == m_c * n_t:
        mt, var_t = mean_var(obs_t, m_t, work)
        mc, var_c = mean_var(obs_c, m_c, work)
        base_var = var_t / m_t + var_c / m_c
        lo = hi = mt - mc
        g_lo = max((obs_t[-1] - mt) ** two, (obs_c[0] - mc) ** two)
        g_hi = max((obs_t[0] - mt) ** two, (obs_c[-1] - mc) ** two)
        var_lo, var_hi = base_var + g_lo * v_q, base_var + g_hi * v_q
        q, trimmed = 0.0, np.nan
    else:
        treated_big = m_t * n_c > m_c * n_t
        big, small = (obs_t, obs_c) if treated_big else (obs_c, obs_t)
        n_big, n_small = (n_t, n_c) if treated_big else (n_c, n_t)
        kept = small.size * n_big / n_small
        if abs(kept - np.rint(kept)) < 1e-9:
            kept = float(np.rint(kept))
        q = 1 - kept / big.size
        ms, vs = mean_var(small, small.size, work)
        vs = vs / small.size
        mu_b, s2_b, xi_b = _trimmed(big, kept, False, work)
        mu_t, s2_t, xi_t = _trimmed(big, kept, True, work)
        var_b = (s2_b + q * (xi_b - mu_b) ** two) / kept + (xi_b - mu_b) ** two * v_q + vs
        var_t = (s2_t + q * (xi_t - mu_t) ** two) / kept + (xi_t - mu_t) ** two * v_q + vs
        if treated_big:  # treated trimmed: the low bound keeps its bottom
            lo, hi, var_lo, var_hi = mu_b - ms, mu_t - ms, var_b, var_t
        else:
            lo, hi, var_lo, var_hi = ms - mu_t, ms - mu_b, var_t, var_b
        trimmed = 1.0 if treated_big else 0.0
    se_lo, se_hi = math.sqrt(var_lo), math.sqrt(var_hi)
    o[BL], o[BH], o[TRIM], o[TRIMMED_T] = lo, hi, q, trimmed
    s = max(se_lo, se_hi)
    if not np.isfinite(s):
        return
    if s == 0:
        o[CL], o[CH] = lo, hi
        return
    delta = hi - lo
    c = z if delta <= 0 else im_constant(delta / s, level, 0.0, z)
    o[CL], o[CH] = lo - c * se_lo, hi + c * se_hi


@numba.njit(cache=True)
def _merged_ranks(a, na, b, nb, offset):
    """Average ranks (from offset + 1) of the pooled sorted a[:na] and b[:nb]: (sum of a's ranks,
    tie term Σ c³ - c over groups of equal values), by one merge (ranks are half-integers: exact)."""
    i = j = 0
    pos = offset
    ra = tie = 0.0
    while i < na or j < nb:
        v = a[i] if (j >= nb or (i < na and a[i] <= b[j])) else b[j]
        ca = cb = 0
        while i < na and a[i] == v:
            ca += 1
            i += 1
        while j < nb and b[j] == v:
            cb += 1
            j += 1
        c = ca + cb
        ra += (pos + (c + 1) / 2.0) * ca
        tie += float(c) ** 3 - c
        pos += c
    return ra, tie


@numba.njit(cache=True)
def _sorted_where(v, keep, n):
    out = np.empty(n)
    k = 0
    for i in range(n):
        if keep[i]:
            out[k] = v[i]
            k += 1
    return np.sort(out[:k])


@numba.njit(cache=True)
def truncation_stats(obs, days, time_of, ti, ci, n_pairs, lee, composite, level, z, two):
    """Per replicate and outcome x visit (obs: (K, B, N); days: (T, B, N), inf for the living):
    lee_bounds' numbers (B, K, NLEE) and the composite's rank-sum statistics (B, K, 4: n1, n2, U1,
    variance). The composite ranks the dead (finite day) below every survivor, by day, and the
    survivors with a change by their change; it reuses Lee's sorted changes when no dead unit has
    a change (as in the cohorts here), else sorts its own."""
    K, B, _ = obs.shape
    out_lee, out_comp = np.full((B, K, NLEE), np.nan), np.full((B, K, 4), np.nan)
    for b in range(B):
        m = n_pairs[b]
        yt, yc, dt, dc = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
        ok_t, ok_c = np.empty(m, np.bool_), np.empty(m, np.bool_)
        for k in range(K):
            for i in range(m):
                yt[i] = obs[k, b, ti[b, i]]
                yc[i] = obs[k, b, ci[b, i]]
                if composite:
                    dt[i] = days[time_of[k], b, ti[b, i]]
                    dc[i] = days[time_of[k], b, ci[b, i]]
                ok_t[i] = not np.isnan(yt[i])
                ok_c[i] = not np.isnan(yc[i])
            obs_t, obs_c = _sorted_where(yt, ok_t, m), _sorted_where(yc, ok_c, m)
            if lee:
                _lee(obs_t, obs_c, m, level, z, two, out_lee[b, k])
            if not composite:
                continue
            same_t = same_c = True
            for i in range(m):
                dead_t, dead_c = np.isfinite(dt[i]), np.isfinite(dc[i])
                same_t &= not (dead_t and ok_t[i])
                same_c &= not (dead_c and ok_c[i])
                ok_t[i] = dead_t  # from here: the dead
                ok_c[i] = dead_c
            day_t, day_c = _sorted_where(dt, ok_t, m), _sorted_where(dc, ok_c, m)
            if not same_t:  # a dead unit with a change: the survivors' changes apart
                for i in range(m):
                    ok_t[i] = not (ok_t[i] or np.isnan(yt[i]))
                obs_t = _sorted_where(yt, ok_t, m)
            if not same_c:
                for i in range(m):
                    ok_c[i] = not (ok_c[i] or np.isnan(yc[i]))
                obs_c = _sorted_where(yc, ok_c, m)
            n1, n2 = day_t.size + obs_t.size, day_c.size + obs_c.size
            o = out_comp[b, k]
            o[0], o[1] = n1, n2
            if n1 < 1 or n2 < 1:
                continue
            r_dead, tie_dead = _merged_ranks(day_t, day_t.size, day_c, day_c.size, 0)
            r_alive, tie_alive = _merged_ranks(obs_t, obs_t.size, obs_c, obs_c.size, day_t.size + day_c.size)
            n = n1 + n2
            o[2] = (r_dead + r_alive) - n1 * (n1 + 1) / 2.0
            o[3] = n1 * n2 / 12.0 * ((n + 1) - (tie_dead + tie_alive) / (n * (n - 1)))
    return out_lee, out_comp

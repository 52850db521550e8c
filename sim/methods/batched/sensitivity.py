"""The sensitivity analyses of a chunk's pair sets at once (sim.methods.batched): the row fields of
sensitivity_fields (rosenbaum, evalue, tost) for every replicate x outcome x visit, as (B, K) arrays.

Covered: rosenbaum (method "normal", the registry's Γ = 1, 1.5, 2), evalue and tost (Welch,
margin one MCID), with a valid alpha (0 < alpha < 0.5) and every outcome's MCID finite and > 0;
anything else is left to the reference functions (rows.records). The truncation analyses are in
sim.methods.batched.truncation; rows.per_pair_fields computes them all for a chunk.

Equal to the reference to the last bit where it matters, not just within 1e-9: a sensitivity
value or an E-value has a square-root singularity (E = r + sqrt(r (r - 1)) at r = 1) and
thresholds (p <= alpha), so a difference in the last bit of a mean could move it by 1e-8 or flip
a decision. Hence the compiled loops compute every mean and variance in numpy's own order (its
pairwise summation), exp and pow through the same libm calls as Python's floats, the signed ranks
exactly (half-integers), and the normal tails and the Γ closed form in the same vectorised scipy
calls and float operations as rosenbaum.py, evalue.py and equivalence.py.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from sim.methods.sensitivity import GAMMAS, SENSITIVITY_ANALYSES
from sim.methods.sensitivity.evalue import MD_CI_FACTOR, MD_TO_LOGRR
from sim.methods.sensitivity.rosenbaum import GAMMA_MAX
from sim.numerics.jit import numba

NAN = float("nan")
#: the sensitivity analyses this module computes for a chunk
COVERED = ("rosenbaum", "evalue", "tost")
#: rosenbaum's fields after gamma_star and gamma_mcid: mcid_excluded_at_<Γ> for the registry's GAMMAS
MCID_EXCLUDED = SENSITIVITY_ANALYSES["rosenbaum"][2:]
NO_PAIR = "no pair with both changes"
# columns of the kernel's statistics
(BOTH, KP, S1P, S2P, TP, KM, S1M, S2M, TM, E_EST, E_CI, E_MCID, T_EST, T_SE, T_DF, NSTAT) = range(16)


# ----------------------------------------------------------------------------- numpy's arithmetic, compiled

@numba.njit(cache=True)
def _pairwise_block(x, lo, n):
    """numpy's pairwise_sum of at most 128 values: a plain loop below 8, else 8 accumulators."""
    res = 0.0
    if n < 8:
        for i in range(n):
            res += x[lo + i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = x[lo], x[lo + 1], x[lo + 2], x[lo + 3], x[lo + 4], x[lo + 5], x[lo + 6], x[lo + 7]
    end = lo + n - n % 8
    for i in range(lo + 8, end, 8):
        r0, r1, r2, r3 = r0 + x[i], r1 + x[i + 1], r2 + x[i + 2], r3 + x[i + 3]
        r4, r5, r6, r7 = r4 + x[i + 4], r5 + x[i + 5], r6 + x[i + 6], r7 + x[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end, lo + n):
        res += x[i]
    return res


@numba.njit(cache=True)
def pairwise_sum(x, lo, n):
    """np.add.reduce of x[lo:lo + n] in numpy's own order, so the same sum to the bit: blocks of
    at most 128 values, larger ones split in two (the first half a multiple of 8) and summed
    left + right; the recursion unrolled on a stack (numba caches no recursive function)."""
    if n <= 128:
        return _pairwise_block(x, lo, n)
    los = np.empty(64, np.int64)
    ns = np.empty(64, np.int64)
    right = np.zeros(64, np.bool_)
    left = np.empty(64)
    los[0], ns[0], right[0] = lo, n, False
    sp = 1
    while True:
        top = sp - 1
        if ns[top] > 128:  # descend into the left half
            half = ns[top] // 2
            half -= half % 8
            los[sp], ns[sp], right[sp] = los[top], half, False
            sp += 1
            continue
        result = _pairwise_block(x, los[top], ns[top])
        sp -= 1
        while sp > 0:  # hand the sum up: a left half waits for its right half
            p = sp - 1
            if not right[p]:
                half = ns[p] // 2
                half -= half % 8
                left[p], right[p] = result, True
                los[sp], ns[sp], right[sp] = los[p] + half, ns[p] - half, False
                sp += 1
                break
            result = left[p] + result
            sp -= 1
        if sp == 0:
            return result


@numba.njit(cache=True)
def mean_var(x, n, work):
    """x[:n].mean() and x[:n].var(ddof=1) as numpy computes them (variance NaN below 2 values);
    work: scratch of at least n."""
    mean = pairwise_sum(x, 0, n) / n
    if n < 2:
        return mean, np.nan
    for i in range(n):
        d = x[i] - mean
        work[i] = d * d
    return mean, pairwise_sum(work, 0, n) / (n - 1)


@numba.njit(cache=True)
def signed_rank_stats(x, n, out, j):
    """rosenbaum._signed_ranks of x[:n] (zeros dropped after rounding to 12 digits relative to
    max |x|; tied |x| share their average rank) into out[j:j + 4]: the number of ranks, S1 = Σ r,
    S2 = Σ r², T = Σ r over the positive x. Ranks are half-integers, so the sums are exact."""
    s = 0.0
    for i in range(n):
        s = max(s, abs(x[i]))
    out[j:j + 4] = 0.0
    if s == 0.0:
        return
    mag = np.empty(n)
    pos = np.empty(n, np.bool_)
    k = 0
    for i in range(n):
        v = np.rint((x[i] / s) * 1e12) / 1e12  # np.round(x / s, 12)
        if v != 0.0:
            mag[k] = abs(v)
            pos[k] = v > 0.0
            k += 1
    order = np.argsort(mag[:k])
    s1 = s2 = t = 0.0
    i = 0
    while i < k:
        e = i
        while e + 1 < k and mag[order[e + 1]] == mag[order[i]]:
            e += 1
        c = e - i + 1
        r = i + (c + 1) / 2.0
        n_pos = 0
        for q in range(i, e + 1):
            n_pos += pos[order[q]]
        s1 += r * c
        s2 += r * r * c
        t += r * n_pos
        i = e + 1
    out[j] = k
    out[j + 1] = s1
    out[j + 2] = s2
    out[j + 3] = t


@numba.njit(cache=True)
def _e(r):
    """evalue._e: r + sqrt(r (r - 1)) of max(r, 1/r)."""
    inv = 1.0 / r
    if inv > r:
        r = inv
    return r + math.sqrt(r * (r - 1.0))


@numba.njit(cache=True)
def _evalue_ci(rr, lo, hi, true_rr):
    if rr == true_rr:
        return 1.0
    limit = lo if rr > true_rr else hi
    if (rr > true_rr and limit <= true_rr) or (rr < true_rr and limit >= true_rr):
        return 1.0
    return _e(limit / true_rr)


@numba.njit(cache=True)
def _sensitivity_kernel(obs, ti, ci, n_pairs, mcid, two):
    """Per replicate b and outcome x visit k (obs: (K, B, N)) the statistics behind the rows
    (columns BOTH..T_DF): the complete pairs, the signed ranks of d and of mcid - d, the E-values
    (evalue_summary), and TOST's estimate, SE and Welch df. two = 2.0, passed at run time so that
    x ** two is libm's pow as in Python (`(a + b) ** 2`), not x * x."""
    K, B, _ = obs.shape
    out = np.full((B, K, NSTAT), np.nan)
    for b in range(B):
        m = n_pairs[b]
        a = np.empty(m)
        c = np.empty(m)
        d = np.empty(m)
        work = np.empty(m)
        for k in range(K):
            na = nc = nd = 0
            for i in range(m):
                x = obs[k, b, ti[b, i]]
                y = obs[k, b, ci[b, i]]
                if not np.isnan(x):
                    a[na] = x
                    na += 1
                if not np.isnan(y):
                    c[nc] = y
                    nc += 1
                if not (np.isnan(x) or np.isnan(y)):
                    d[nd] = x - y
                    nd += 1
            o = out[b, k]
            o[BOTH] = nd
            if nd > 0:
                signed_rank_stats(d, nd, o, KP)
                for i in range(nd):
                    work[i] = mcid[k] - d[i]
                signed_rank_stats(work, nd, o, KM)
            if na < 2 or nc < 2:
                continue
            m1, v1 = mean_var(a, na, work)
            m0, v0 = mean_var(c, nc, work)
            est = m1 - m0
            # tost: _two_sample(..., "unequal")
            s1, s0 = v1 / na, v0 / nc
            se = math.sqrt(s1 + s0)
            o[T_EST] = est
            o[T_SE] = se
            if se > 0:
                o[T_DF] = (s1 + s0) ** two / (s1 * s1 / (na - 1) + s0 * s0 / (nc - 1))
            # evalue_summary
            sd = math.sqrt((v1 + v0) / 2.0)
            if not sd > 0:
                continue
            dd, se_d = est / sd, se / sd  # evalue's se: sqrt(v1 / n1 + v0 / n0), TOST's
            rr = math.exp(MD_TO_LOGRR * dd)
            lo = math.exp(MD_TO_LOGRR * dd - MD_CI_FACTOR * se_d)
            hi = math.exp(MD_TO_LOGRR * dd + MD_CI_FACTOR * se_d)
            null_rr = math.exp(MD_TO_LOGRR * (0.0 / sd))
            o[E_EST] = _e(rr / null_rr)
            o[E_CI] = _evalue_ci(rr, lo, hi, null_rr)
            o[E_MCID] = _e(rr / math.exp(MD_TO_LOGRR * (mcid[k] / sd)))
    return out


def sensitivity_stats(obs, ti, ci, n_pairs, mcid) -> np.ndarray:
    """(B, K, NSTAT) statistics of the chunk's pair sets; mcid: (K,) one per outcome x visit."""
    return _sensitivity_kernel(obs, ti, ci, n_pairs, np.asarray(mcid, dtype=np.float64), 2.0)


# ----------------------------------------------------------------------------- the fields, vectorised

def _normal_tail(k, s1, s2, t, p):
    """rosenbaum._normal_tail at one p for arrays of rank sums (1 where there is no rank)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (t - p * s1) / np.sqrt(p * (1 - p) * s2)
        return np.where(k > 0, special.ndtr(-z), 1.0)


def _gamma_star(k, s1, s2, t, alpha):
    """rosenbaum._gamma_star_normal, the same float operations on arrays."""
    z2 = special.ndtri(1.0 - alpha) ** 2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a, b, c = s1 * s1 + z2 * s2, 2 * t * s1 + z2 * s2, t * t
        p = 2 * c / (b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0)))
        g = np.where(p < 1, p / (1 - p), np.inf)
    g = np.where(g > GAMMA_MAX, np.inf, np.maximum(g, 1.0))
    return np.where((k == 0) | (_normal_tail(k, s1, s2, t, 0.5) > alpha), 1.0, g)


def _standard(both) -> dict:
    nan = np.full(both.shape, NAN)
    n = both.astype(np.int64)
    return {"estimate": nan, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "favours": nan,
            "n_used_treated": n, "n_used_control": n, "note": np.where(n > 0, "", NO_PAIR).astype(object)}


def sensitivity_fields(name: str, st: np.ndarray, mcid: np.ndarray, alpha: float) -> dict[str, np.ndarray]:
    """The fields of sensitivity.sensitivity_fields(name, ...) for every pair set: (B, K) arrays,
    in the reference's order; st from sensitivity_stats, mcid (K,)."""
    both = st[..., BOTH]
    row = _standard(both)
    if name == "rosenbaum":
        none = both == 0
        stats_p = st[..., KP], st[..., S1P], st[..., S2P], st[..., TP]
        stats_m = st[..., KM], st[..., S1M], st[..., S2M], st[..., TM]
        out = {"gamma_star": _gamma_star(*stats_p, alpha / 2), "gamma_mcid": _gamma_star(*stats_m, alpha)}
        p = np.asarray(GAMMAS, dtype=float) / (1.0 + np.asarray(GAMMAS, dtype=float))
        for g, pg in zip(MCID_EXCLUDED, p):
            out[g] = (_normal_tail(*stats_m, pg) <= alpha).astype(float)
        return {**row, **{k: np.where(none, NAN, v) for k, v in out.items()}}
    if name == "evalue":
        return {**row, "evalue_estimate": st[..., E_EST], "evalue_ci": st[..., E_CI], "evalue_mcid": st[..., E_MCID]}
    if name == "tost":
        est, se, df = st[..., T_EST], st[..., T_SE], st[..., T_DF]
        ok = (se > 0) & np.isfinite(se)
        margin = np.broadcast_to(np.asarray(mcid, dtype=float), est.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            dfs = np.where(ok, df, 1.0)
            t_low, t_upp = (est + margin) / se, (est - margin) / se
            p_low, p_upp = special.stdtr(dfs, -t_low), special.stdtr(dfs, t_upp)
            q = special.stdtrit(dfs, 1.0 - alpha)
        p = np.where(ok, np.maximum(p_low, p_upp), NAN)
        return {**row, "p_value": p, "equivalent": np.where(ok, (p <= alpha).astype(float), NAN),
                "ci90_low": np.where(ok, est - q * se, NAN), "ci90_high": np.where(ok, est + q * se, NAN)}
    raise ValueError(f"not a batched sensitivity analysis: {name!r}")

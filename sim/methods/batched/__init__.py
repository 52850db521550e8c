"""The paper's analysis of a chunk of B replicates at once: the same numbers as
sim.methods.pipeline.analyse, replicate by replicate, without its per-replicate Python.

Why: a replicate of the paper-size design is ~15,000 random numbers and a few tens of thousands of
flops, but analysed one at a time through Python (dicts of rows, a DataFrame, one small numpy call
per test) it costs milliseconds. Here the PS fits, the balance, the true effects and the outcome
tests of all B replicates run in compiled loops (numba) over arrays of shape (B, N), the p-values
in one vectorised scipy call each (sim.methods.batched.outcome_tests), and the rows are built once per chunk.

Equal to the reference: the PS fit is fit_logit_binary's damped Newton in its compiled twin
(sim.numerics.batch.fit_logit_binary_batch: same standardisation, start, step halving and stopping
rule), matching is the same compiled greedy core with the same caliper width, processing order and
tie rule (mirror ties by index, matching_cores.TIE_TOL, so the last bits of the fit cannot change
a pair), and the tests are the same statistics. What differs is the order of floating-point sums
(compiled loops against numpy's pairwise sums), so estimates and p-values agree to ~1e-12. Each
replicate is computed on its own rows, so nothing depends on B.

The per-pair analyses run on the batched pairs in compiled loops too: the sensitivity analyses
(rosenbaum, evalue, tost: sim.methods.batched.sensitivity) and the truncation analyses
(lee_bounds, composite_rank: sim.methods.batched.truncation), their fields as (B, K) arrays with
the reference's numbers (to the bit where a threshold or a square root could magnify the last
one), and the rows are built column by column (rows.tidy_rows). Settings they do not cover (an
invalid alpha or MCID, a per-pair analysis registered later) run pair set by pair set through
the reference's own functions (rows.records).

A PS formula (method.propensity.formula) is built by patsy replicate by replicate, as the reference
builds it (each cohort's own spline knots), and fitted in the batch.

A replicate the fast path does not cover is analysed by the reference (`pipeline.analyse`): a
design the PS formula cannot build, a single treatment group, a PS fit that meets separation, a constant column, a singular Hessian or
no convergence. `unsupported(spec)` says which settings the batched path covers at all: greedy 1:1
matching without replacement in a fixed order, no exact strata; anything else (ratio,
replacement, optimal, exact, random order) runs replicate by replicate.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from sim.methods.matching import compiled as MC
from sim.methods.batched import rows as R
from sim.methods.batched import outcome_tests as T
from sim.methods.matching import CALIPER_SDS, _logit
from sim.methods import outcomes as O
from sim.methods.pipeline import MethodSpec, ps_matrices
from sim.methods.sensitivity import SENSITIVITY_ANALYSES
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES
from sim.methods.propensity import _LOGIT_MAX
from sim.numerics import expit_numpy
from sim.numerics.batch import fit_logit_binary_batch
from sim.numerics.jit import numba

#: the analyses the batched path computes; crude adds crude_diff_means and crude_wilcoxon
BATCHED_ANALYSES = ("wilcoxon", "signed_rank", "paired_t", "diff_means")
#: analyses of each replicate's pairs: batched where rows.covers(spec), else by the reference's functions
PER_PAIR_ANALYSES = (*SENSITIVITY_ANALYSES, *TRUNCATION_ANALYSES)


def unsupported(spec: MethodSpec) -> str | None:
    """Why the batched path cannot run `spec` (None: it can). A registered outcome analysis without a
    kernel runs on each replicate's pairs by its own function, so it keeps the chunk batched."""
    unknown = [a for a in spec.analyses if a not in (*BATCHED_ANALYSES, *PER_PAIR_ANALYSES, *O.ANALYSES)]
    checks = (
        (spec.algorithm != "greedy", f"algorithm {spec.algorithm}"),
        (spec.order not in ("largest", "smallest", "data"), f"order {spec.order}"),
        (spec.ratio != 1, f"ratio {spec.ratio}"),
        (spec.replace, "matching with replacement"),
        (bool(spec.exact), "exact matching"),
        (bool(unknown), f"analyses {unknown}"),
    )
    return next((why for bad, why in checks if bad), None)


# ----------------------------------------------------------------------------- compiled kernels

@numba.njit(cache=True)
def _mean_var(x, n):
    """Mean and unbiased variance of x[:n] (variance NaN below 2 values)."""
    if n == 0:
        return np.nan, np.nan
    m = 0.0
    for i in range(n):
        m += x[i]
    m /= n
    if n < 2:
        return m, np.nan
    v = 0.0
    for i in range(n):
        v += (x[i] - m) ** 2
    return m, v / (n - 1)


@numba.njit(cache=True)
def _ratio(num, den):
    """num/den with 0/0 -> 0 and x/0 -> +-inf (balance._ratio)."""
    if den == 0.0:
        if num == 0.0:
            return 0.0
        return np.inf if num > 0 else -np.inf
    return num / den


@numba.njit(cache=True)
def _balance(Xb, ti, ci, n_pairs, treated_denominator):
    """max and mean |SMD| over the balance covariates among the matched (1:1 weights)."""
    B, _, q = Xb.shape
    out = np.full((B, 2), np.nan)
    for b in range(B):
        m = n_pairs[b]
        if m == 0:
            continue
        xt = np.empty(m)
        xc = np.empty(m)
        mx = 0.0
        total = 0.0
        for j in range(q):
            for i in range(m):
                xt[i] = Xb[b, ti[b, i], j]
                xc[i] = Xb[b, ci[b, i], j]
            mt, vt = _mean_var(xt, m)
            mc, vc = _mean_var(xc, m)
            sd = math.sqrt(vt) if treated_denominator else math.sqrt((vt + vc) / 2.0)
            a = abs(_ratio(mt - mc, sd))
            if np.isnan(a) or np.isnan(mx):
                mx = np.nan
            elif a > mx:
                mx = a
            total += a
        out[b, 0] = mx
        out[b, 1] = total / q
    return out


@numba.njit(cache=True)
def _nanmean_where(x, mask):
    s = 0.0
    c = 0
    for i in range(x.size):
        if mask[i] and not np.isnan(x[i]):
            s += x[i]
            c += 1
    return s / c if c else np.nan


@numba.njit(cache=True)
def _nanmean_both(x, a, b):
    s = 0.0
    c = 0
    for i in range(x.size):
        if a[i] and b[i] and not np.isnan(x[i]):
            s += x[i]
            c += 1
    return s / c if c else np.nan


@numba.njit(cache=True)
def _truths(d0, d1, treated, ti, n_pairs, seen0, seen1, time_of, ps_true):
    """The estimands of pipeline.analyse (TRUTH_NAMES) per replicate and outcome x time (B, K, 8);
    d0, d1: (K, B, N), seen0, seen1: (T, B, N), ps_true: (B, N)."""
    K, B, N = d0.shape
    out = np.full((B, K, 8), np.nan)
    ones = np.ones(N, np.bool_)
    for b in range(B):
        matched = np.zeros(N, np.bool_)
        for i in range(n_pairs[b]):
            matched[ti[b, i]] = True
        for k in range(K):
            t = time_of[k]
            indiv = d1[k, b] - d0[k, b]
            both = seen0[t, b] & seen1[t, b]
            out[b, k, 0] = _nanmean_where(indiv, ones)
            out[b, k, 1] = _nanmean_where(indiv, treated[b])
            out[b, k, 2] = _nanmean_where(indiv, matched)
            out[b, k, 3] = _nanmean_where(d1[k, b], matched) - _nanmean_where(d0[k, b], matched)
            out[b, k, 4] = _nanmean_both(indiv, matched, both)
            out[b, k, 5] = _nanmean_where(d1[k, b], ones) - _nanmean_where(d0[k, b], ones)
            out[b, k, 6] = _nanmean_where(indiv, both)
            sw = 0.0
            swx = 0.0
            for i in range(N):
                if not np.isnan(indiv[i]):
                    w = ps_true[b, i] * (1.0 - ps_true[b, i])
                    sw += w
                    swx += w * indiv[i]
            out[b, k, 7] = swx / sw if sw > 0 else np.nan
    return out


@numba.njit(cache=True)
def _avg_ranks(x):
    """Average ranks (1-based) of x and the tie term sum(c^3 - c) over tie groups."""
    n = x.size
    order = np.argsort(x)
    ranks = np.empty(n)
    tie = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and x[order[j + 1]] == x[order[i]]:
            j += 1
        c = j - i + 1
        r = i + (c + 1) / 2.0
        for k in range(i, j + 1):
            ranks[order[k]] = r
        tie += float(c) ** 3 - c
        i = j + 1
    return ranks, tie


@numba.njit(cache=True)
def _unpaired(a, na, c, nc, out):
    """Rank-sum (n1, n2, U1, variance) and Welch (means, variances) of a[:na] vs c[:nc], NaN dropped."""
    x = np.empty(na + nc)
    n1 = 0
    for i in range(na):
        if not np.isnan(a[i]):
            x[n1] = a[i]
            n1 += 1
    n2 = 0
    for i in range(nc):
        if not np.isnan(c[i]):
            x[n1 + n2] = c[i]
            n2 += 1
    out[0] = n1
    out[1] = n2
    n = n1 + n2
    if n1 >= 1 and n2 >= 1:
        ranks, tie = _avg_ranks(x[:n])
        s = 0.0
        for i in range(n1):
            s += ranks[i]
        out[2] = s - n1 * (n1 + 1) / 2.0
        out[3] = n1 * n2 / 12.0 * ((n + 1) - tie / (n * (n - 1)))
    out[4], out[6] = _mean_var(x[:n1], n1)
    out[5], out[7] = _mean_var(x[n1:n], n2)


@numba.njit(cache=True)
def _paired(a, c, m0, out):
    """Signed rank (m, k, R+, tie term, ties?, median) and paired t (mean, SD) of the complete pairs."""
    d = np.empty(m0)
    m = 0
    for i in range(m0):
        if not (np.isnan(a[i]) or np.isnan(c[i])):
            d[m] = a[i] - c[i]
            m += 1
    d = d[:m]
    out[0] = m
    if m < 2:
        return
    out[5] = np.median(d)
    out[6], v = _mean_var(d, m)
    out[7] = math.sqrt(v)
    nz = np.empty(m)
    pos = np.empty(m, np.bool_)
    k = 0
    for i in range(m):
        if d[i] != 0.0:
            nz[k] = abs(d[i])
            pos[k] = d[i] > 0
            k += 1
    out[1] = k
    if k == 0:
        return
    ranks, tie = _avg_ranks(nz[:k])
    rp = 0.0
    for i in range(k):
        if pos[i]:
            rp += ranks[i]
    out[2] = rp
    out[3] = tie
    out[4] = 1.0 if (tie > 0 or k < m) else 0.0


@numba.njit(cache=True)
def _pair_stats(obs, ti, ci, n_pairs):
    """Per replicate and outcome x time: the unpaired (8) and paired (8) statistics of the pairs;
    obs: (K, B, N)."""
    K, B, _ = obs.shape
    un = np.full((B, K, 8), np.nan)
    pa = np.full((B, K, 8), np.nan)
    for b in range(B):
        m = n_pairs[b]
        a = np.empty(m)
        c = np.empty(m)
        for k in range(K):
            for i in range(m):
                a[i] = obs[k, b, ti[b, i]]
                c[i] = obs[k, b, ci[b, i]]
            _unpaired(a, m, c, m, un[b, k])
            _paired(a, c, m, pa[b, k])
    return un, pa


@numba.njit(cache=True)
def _group_stats(obs, treated):
    """Per replicate and outcome x time: the unpaired statistics of all treated vs all controls;
    obs: (K, B, N)."""
    K, B, N = obs.shape
    un = np.full((B, K, 8), np.nan)
    a = np.empty(N)
    c = np.empty(N)
    for b in range(B):
        for k in range(K):
            na = 0
            nc = 0
            for i in range(N):
                if treated[b, i]:
                    a[na] = obs[k, b, i]
                    na += 1
                else:
                    c[nc] = obs[k, b, i]
                    nc += 1
            _unpaired(a, na, c, nc, un[b, k])
    return un


# ----------------------------------------------------------------------------- the chunk

def fit_status(X: np.ndarray, treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear predictors (B, N) and status (B,) of the PS fits (fit_propensity's defaults; status
    0: fitted, else sim.numerics.batch.BATCH_FIT_STATUS)."""
    return fit_logit_binary_batch(X, treated.astype(np.float64))


def match_batch(d: np.ndarray, ps: np.ndarray, treated: np.ndarray,
                spec: MethodSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy 1:1 pairs of each replicate as matching.match makes them (links sorted by treated
    index): treated index (B, N), control index (B, N), pairs (B,); unused entries 0."""
    kernel = MC._kernel("_greedy_pairs_batch")
    order = ("largest", "smallest", "data").index(spec.order)
    caliper = -1.0 if spec.caliper is None else float(spec.caliper)
    return kernel(np.ascontiguousarray(d), np.ascontiguousarray(ps), np.ascontiguousarray(treated), order,
                  caliper, CALIPER_SDS.index(spec.caliper_sd))


def analyse_batch(columns: Mapping[str, np.ndarray], potential: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                  seen: Mapping[str, tuple[np.ndarray, np.ndarray]], spec: MethodSpec, *, reference_per_pair: bool = False,
                  ) -> tuple[pd.DataFrame, dict[int, str], list[int]]:
    """Rows of pipeline.analyse for B replicates whose columns are (B, N) arrays: (rows with a
    `replicate` column, failures {replicate: reason}, replicates left to the reference path).
    reference_per_pair: the per-pair analyses by the reference's functions even where the batch
    covers them (the same rows, slower: for python -m sim.bench)."""
    treated = np.asarray(columns["treated"]).astype(bool)
    B, N = treated.shape
    X, bad = ps_matrices(columns, spec)  # a formula: patsy per replicate, each cohort's own knots
    eta, status = fit_status(X, treated)
    status[bad] = -1  # a design the formula cannot build: the reference says why
    fast = np.flatnonzero(status == 0)
    logit_ps = np.clip(eta, -_LOGIT_MAX, _LOGIT_MAX)
    ps = expit_numpy(logit_ps)
    d = _logit(ps) if spec.caliper_scale == "logit" else ps
    ti, ci, n_pairs = match_batch(d, ps, treated, spec)
    failures = {int(b): "ReplicateFailure: no matched pairs within the caliper" for b in fast if n_pairs[b] == 0}
    keep = np.array([b for b in fast if n_pairs[b] > 0], dtype=np.int64)
    reference = [int(b) for b in np.flatnonzero(status != 0)]
    if keep.size == 0:
        return pd.DataFrame(), failures, reference
    rows = slice(None) if keep.size == B else keep  # a slice: no copies when every replicate is kept
    ti, ci, n_pairs, treated = ti[rows], ci[rows], n_pairs[rows], treated[rows]

    Xb = np.stack([np.asarray(columns[c], dtype=float)[rows] for c in spec.balance_covariates], axis=-1)
    smd = _balance(Xb, ti, ci, n_pairs, spec.balance_denominator == "treated")
    keys = [(o, t) for o in spec.outcomes for t in spec.times]
    times = list(spec.times)
    obs = np.stack([np.asarray(columns[f"{o}_delta_{t}"], dtype=float)[rows] for o, t in keys])
    d0 = np.stack([potential[k][0][rows] for k in keys])
    d1 = np.stack([potential[k][1][rows] for k in keys])
    seen0 = np.stack([seen[t][0][rows] for t in times])
    seen1 = np.stack([seen[t][1][rows] for t in times])
    truths = _truths(d0, d1, treated, ti, n_pairs, seen0, seen1, np.array([times.index(t) for _, t in keys]),
                     np.ascontiguousarray(columns["ps_true"][rows], dtype=np.float64))
    un, pa = _pair_stats(obs, ti, ci, n_pairs)
    tests = {"wilcoxon": lambda: T.wilcoxon(un), "signed_rank": lambda: T.signed_rank(pa),
             "paired_t": lambda: T.paired_t(pa), "diff_means": lambda: T.welch(un)}
    fields = {a: T.result_fields(a, tests[a]()) for a in spec.analyses if a in tests}
    by_reference = [a for a in spec.analyses if a in O.ANALYSES and a not in tests]
    if by_reference:
        fields.update(R.reference_fields(by_reference, keys, R.PairSets(obs, ti, ci, n_pairs, keys, {})))
    if spec.crude:
        crude = _group_stats(obs, treated)
        fields.update(crude_diff_means=T.result_fields("crude_diff_means", T.welch(crude)),
                      crude_wilcoxon=T.result_fields("crude_wilcoxon", T.wilcoxon(crude)))
    n_treated = treated.sum(axis=1)
    if any(a in PER_PAIR_ANALYSES for a in spec.analyses):
        dead = {t: np.where(np.asarray(columns[f"dead_{t}"])[rows].astype(bool),
                            np.asarray(columns["survival_days"], dtype=float)[rows], np.inf)
                for t in times} if any(a in TRUNCATION_ANALYSES for a in spec.analyses) else {}
        pairs = R.PairSets(obs, ti, ci, n_pairs, keys, dead)
        if reference_per_pair or not R.covers(spec):  # the reference's functions, pair set by pair set
            return R.records(keep, keys, spec, fields, pairs, n_pairs, n_treated, smd, truths), failures, reference
        fields.update(R.per_pair_fields(spec, keys, pairs))
    order = [a for a in (*spec.analyses, *(("crude_diff_means", "crude_wilcoxon") if spec.crude else ())) if a in fields]
    return R.tidy_rows(keep, keys, [(a, fields[a]) for a in order], n_pairs, n_treated, smd, truths), failures, reference

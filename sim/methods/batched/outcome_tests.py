"""The outcome tests of a chunk from its per-replicate statistics (sim.methods.batched): the rows
of sim.methods.outcomes' tests, computed for replicates x outcome x time at once, each p-value
in one vectorised scipy call."""

from __future__ import annotations

import numpy as np
from scipy import special

from sim.methods import outcomes as O
from sim.methods.outcomes import tags_of

NAN = float("nan")


def t_fields(est, se, df, n1, n2, reason):
    """Rows of a t-based result (outcomes._t_result), vectorised; `reason` non-empty: not computed."""
    ok = (reason == "") & (se > 0) & np.isfinite(se)
    reason = np.where((reason == "") & ~ok, "zero variance: t statistic undefined", reason)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = special.stdtrit(np.where(ok, df, 1.0), 0.975)
        p = 2.0 * special.stdtr(np.where(ok, df, 1.0), -np.abs(est / np.where(ok, se, 1.0)))
    nan = np.full(est.shape, NAN)
    return {"estimate": est, "se": se, "ci_low": np.where(ok, est - q * se, nan),
            "ci_high": np.where(ok, est + q * se, nan), "p_value": np.where(ok, p, nan),
            "n_used_treated": n1, "n_used_control": n2, "note": reason}


def wilcoxon(u):
    n1, n2, u1, var = u[..., 0], u[..., 1], u[..., 2], u[..., 3]
    have = (n1 >= 1) & (n2 >= 1)
    tied = have & ~(var > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        big = np.maximum(u1, n1 * n2 - u1)
        z = (big - n1 * n2 / 2.0 - 0.5) / np.sqrt(np.where(tied, 1.0, var))
        p = np.clip(2.0 * special.ndtr(-z), 0.0, 1.0)
        est = u1 / (n1 * n2)
    reason = np.where(~have, "need >=1 value per arm", np.where(tied, "all values tied", ""))
    nan = np.full(n1.shape, NAN)
    return {"estimate": np.where(have, est, nan), "se": nan, "ci_low": nan, "ci_high": nan,
            "p_value": np.where(have, np.where(tied, 1.0, p), nan),
            "n_used_treated": n1, "n_used_control": n2, "note": reason}


def welch(u):
    n1, n2, m1, m2, s1, s2 = (u[..., i] for i in (0, 1, 4, 5, 6, 7))
    few = (n1 < 2) | (n2 < 2)
    est = np.where((n1 >= 1) & (n2 >= 1), m1 - m2, NAN)
    with np.errstate(invalid="ignore", divide="ignore"):
        v1, v2 = s1 / n1, s2 / n2
        se = np.sqrt(v1 + v2)
        df = np.where(se > 0, (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1)), NAN)
    reason = np.where(few, "need >=2 values per arm", "")
    return t_fields(est, np.where(few, NAN, se), df, n1, n2, reason)


def paired_t(pa):
    m, mean, sd = pa[..., 0], pa[..., 6], pa[..., 7]
    few = m < 2
    with np.errstate(invalid="ignore", divide="ignore"):
        se = sd / np.sqrt(m)
    return t_fields(np.where(few, NAN, mean), np.where(few, NAN, se), m - 1, m, m,
                     np.where(few, "fewer than 2 complete pairs", ""))


def signed_rank(pa):
    m, k, rp, tie, ties, med = (pa[..., i] for i in range(6))
    few = m < 2
    zero = ~few & (k == 0)
    exact = ~few & ~zero & (ties == 0) & (k <= 50)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = k * (k + 1) / 2.0
        se = np.sqrt((k * (k + 1) * (2 * k + 1) - tie / 2.0) / 24.0)
        p = np.minimum(1.0, 2.0 * special.ndtr(-np.abs((rp - total / 2.0) / se)))
    for idx in zip(*np.nonzero(exact)):
        cdf = O._signed_rank_cdf(int(k[idx]))
        r = int(round(rp[idx]))
        p[idx] = min(1.0, 2.0 * min(cdf[r], 1.0 - (cdf[r - 1] if r > 0 else 0.0)))
    nan = np.full(m.shape, NAN)
    reason = np.where(few, "fewer than 2 complete pairs", np.where(zero, "all paired differences are zero", ""))
    return {"estimate": np.where(few, nan, med), "se": nan, "ci_low": nan, "ci_high": nan,
            "p_value": np.where(few, nan, np.where(zero, 1.0, p)),
            "n_used_treated": m, "n_used_control": m, "note": reason}


def result_fields(name: str, stats: dict) -> dict:
    """pipeline.result_row_fields, vectorised: an analysis without an estimate keeps only its p-value
    and direction (its Tags)."""
    est, tags = stats["estimate"], tags_of(name)
    with np.errstate(invalid="ignore"):
        favours = np.where(np.isfinite(est), np.sign(est - tags.null), NAN)
    out = dict(stats, favours=favours)
    if not tags.estimate:
        out["estimate"] = np.full(est.shape, NAN)
    return out

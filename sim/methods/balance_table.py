"""Covariate balance of a weighted sample as cobalt's bal.tab reports it: before and after columns of
the mean difference, the variance ratio and the weighted eCDF differences, and a Kish effective
sample size per arm.

Why a second balance module: sim.methods.balance recomputes the SMD's denominator on the sample
given (the paper's convention after matching, kept for its callers). After weighting that would
let the weights move the yardstick they are judged by, so cobalt (and this module) fixes the
denominator on the *unweighted* sample and names it: the treated SD for the ATT, the pooled
sqrt((s1^2 + s0^2) / 2) for the ATE and the ATO. As in cobalt, the variance of a 0/1 covariate is
p(1 - p), that of any other the unbiased (reliability-weight) variance; variance ratios are given
for continuous covariates only; a 0/1 covariate's eCDF differences are its difference in
proportions. `binary="raw"` (cobalt's own default) reports a 0/1 covariate's raw difference in
proportions instead of its SMD; the `diff_type` column says which each row is. The eCDF mean and
max (KS) differences are MatchIt's: |F1 - F0| of the arms' weighted eCDFs at every distinct value."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.methods.balance import variance_ratio

__all__ = ["DENOMINATORS", "BINARY", "default_denominator", "ecdf_differences", "kish_ess", "weighted_balance"]

#: SMD denominators (cobalt's s.d.denom), each computed on the unweighted sample
DENOMINATORS = {
    "treated": "treated SD (unweighted)",
    "control": "control SD (unweighted)",
    "pooled": "pooled SD sqrt((s1^2 + s0^2) / 2) (unweighted)",
    "all": "whole-sample SD (unweighted)",
}
#: how a 0/1 covariate's difference is reported
BINARY = ("std", "raw")
_DEFAULT = {"att": "treated", "ate": "pooled", "ato": "pooled"}


def default_denominator(estimand: str) -> str:
    """cobalt's default SMD denominator for an estimand (treated for the ATT, pooled otherwise)."""
    return _DEFAULT.get(estimand, "pooled")


def kish_ess(w) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (n when all weights are equal)."""
    w = np.asarray(w, dtype=float)
    s2 = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.isin(x, (0.0, 1.0)).all())


def ecdf_differences(x, treated, weights=None) -> tuple[float, float]:
    """(mean, max) over the distinct values of x of |F_treated - F_control|, each arm's eCDF
    weighted by its own weights normalised to sum 1; the max is the (weighted) KS statistic."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(treated).astype(bool)
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=float)
    signed = np.where(t, w / w[t].sum(), -w / w[~t].sum())
    order = np.argsort(x, kind="stable")
    xs, cum = x[order], np.cumsum(signed[order])
    last = np.r_[xs[1:] != xs[:-1], True]  # the eCDFs at each distinct value: after its last tie
    d = np.abs(cum[last])
    return float(d.mean()), float(d.max())


def _mean(x, w) -> float:
    return float(np.sum(w * x) / np.sum(w))


def _sd(x: np.ndarray, binary: bool) -> float:
    """The unweighted SD cobalt standardises by: sqrt(p (1 - p)) for 0/1, ddof=1 otherwise."""
    if binary:
        p = float(x.mean())
        return float(np.sqrt(p * (1 - p)))
    return float(np.std(x, ddof=1)) if x.size > 1 else float("nan")


def _denominator(x: np.ndarray, t: np.ndarray, binary: bool, denominator: str) -> float:
    if denominator == "treated":
        return _sd(x[t], binary)
    if denominator == "control":
        return _sd(x[~t], binary)
    if denominator == "all":
        return _sd(x, binary)
    return float(np.sqrt((_sd(x[t], binary) ** 2 + _sd(x[~t], binary) ** 2) / 2))


def weighted_balance(X, treated, names, weights, *, denominator: str = "treated", binary: str = "std",
                     types=None) -> pd.DataFrame:
    """One row per covariate: its type, weighted arm means, the difference (SMD by the named
    unweighted `denominator`, or the raw difference in proportions for a 0/1 covariate with
    binary="raw"), variance ratio (continuous only) and eCDF mean/max differences, each before
    (unweighted) and after (`weights`). `types`: "binary"/"continuous" per column (default: 0/1
    columns are binary)."""
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator: must be one of {list(DENOMINATORS)}, got {denominator!r}")
    if binary not in BINARY:
        raise ValueError(f"binary: must be one of {list(BINARY)}, got {binary!r}")
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    t = np.asarray(treated).astype(bool)
    w = np.asarray(weights, dtype=float)
    names = list(names)
    if len(names) != X.shape[1]:
        raise ValueError(f"names: must have {X.shape[1]} entries (one per column), got {len(names)}")
    one = np.ones(t.size)
    rows = []
    for j, name in enumerate(names):
        x = X[:, j]
        is_bin = (types[j] == "binary") if types is not None else _is_binary(x)
        raw = is_bin and binary == "raw"
        sd = np.nan if raw else _denominator(x, t, is_bin, denominator)
        row = {"covariate": name, "type": "binary" if is_bin else "continuous",
               "diff_type": "raw difference in proportions" if raw else "smd",
               "denominator": "" if raw else DENOMINATORS[denominator], "sd_denominator": sd}
        for when, ww in (("before", one), ("after", w)):
            m1, m0 = _mean(x[t], ww[t]), _mean(x[~t], ww[~t])
            row[f"mean_treated_{when}"], row[f"mean_control_{when}"] = m1, m0
            with np.errstate(divide="ignore", invalid="ignore"):
                row[f"diff_{when}"] = (m1 - m0) if raw else (m1 - m0) / sd
            row[f"vr_{when}"] = np.nan if is_bin else float(variance_ratio(x, t, ww)[0])
            ecdf = (abs(m1 - m0),) * 2 if is_bin else ecdf_differences(x, t, ww)  # 0/1: as MatchIt
            row[f"ecdf_mean_{when}"], row[f"ecdf_max_{when}"] = ecdf
        rows.append(row)
    order = ["covariate", "type", "diff_type", "denominator", "sd_denominator",
             *(f"{s}_{w_}" for s in ("mean_treated", "mean_control", "diff", "vr", "ecdf_mean", "ecdf_max")
               for w_ in ("before", "after"))]
    return pd.DataFrame(rows)[order]

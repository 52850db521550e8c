"""Performance measures with Monte Carlo standard errors.

Formulas follow Morris, White & Crowther (2019), "Using simulation studies to
evaluate statistical methods", Stat Med 38:2074-2102, Table 6, as implemented
in the R package rsimsum.  With n the number of usable replicates,
d_i = est_i - truth_i (truth may vary per replicate) and var/sd using n-1:

    bias            mean(d)                          sd(d)/sqrt(n)
    empse           sd(est)                          empse/sqrt(2(n-1))
    mse             mean(d^2)                        sqrt(sum((d^2-mse)^2)/(n(n-1)))
    modelse         sqrt(mean(se^2))                 sqrt(var(se^2)/(4 n modelse^2))
    relerr_modelse  100(modelse/empse - 1)           100 (modelse/empse) *
                                                       sqrt(var(se^2)/(4 n modelse^4) + 1/(2(n-1)))
    coverage        mean(ci_low <= truth <= ci_high) sqrt(c(1-c)/n)
    rejection       mean(p < alpha)                  sqrt(r(1-r)/n)
    mean_<col>      mean(col)                        sd(col)/sqrt(n)
    max_max_abs_smd max(max_abs_smd)                 NaN

Missing values: a replicate counts for a measure only if all of that
measure's inputs are non-missing (bias/mse: est & truth; empse: est;
modelse: se; relerr_modelse: est & se, both SEs on the same replicates;
coverage: ci_low, ci_high & truth; rejection: p).  ``n`` reports that count.
Measures with no input column, or n == 0 within a group, are omitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["summarise", "mcse_reps_needed", "MEASURE_ORDER"]

MEASURE_ORDER = ["bias", "empse", "mse", "modelse", "relerr_modelse", "coverage", "rejection"]
OUTPUT_COLUMNS = ["measure", "value", "mcse", "n"]


def _num(df: pd.DataFrame, col: str | None) -> np.ndarray | None:
    """Column as float array, or None if the column is absent or entirely missing."""
    if col is None or col not in df.columns:
        return None
    try:
        arr = pd.to_numeric(df[col], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {col!r} must be numeric ({exc})") from exc
    if np.isnan(arr).all():
        return None
    return arr


def _masked(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, x, np.nan)


def summarise(df: pd.DataFrame, by: Sequence[str], estimate: str | None = "estimate", truth: str | None = "truth",
              se: str | None = "se", ci_low: str | None = "ci_low", ci_high: str | None = "ci_high",
              p_value: str | None = "p_value", alpha: float = 0.05,
              extra_means: Sequence[str] = ("n_pairs", "share_treated_matched", "max_abs_smd", "mean_abs_smd"),
              ) -> pd.DataFrame:
    """Tidy table of performance measures per group: columns ``by + [measure, value, mcse, n]``.

    One row per (group, measure); groups in sorted key order (missing keys such
    as caliper=None kept, last), measures in the order of MEASURE_ORDER then
    the extra means.  Fully vectorised through a single groupby.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(by, str):
        by = [by]
    by = list(by)
    missing = [b for b in by if b not in df.columns]
    if missing:
        raise ValueError(f"by columns {missing} not in df; available columns: {list(df.columns)}")
    clash = [b for b in by if b in OUTPUT_COLUMNS]
    if clash:
        raise ValueError(f"by must not contain the output column names {OUTPUT_COLUMNS}, got {clash}")
    if len(set(by)) != len(by):
        raise ValueError(f"by contains duplicate column names: {by}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number strictly between 0 and 1, got {alpha!r}")
    if isinstance(extra_means, str):
        extra_means = [extra_means]

    est, tru, s = _num(df, estimate), _num(df, truth), _num(df, se)
    lo, hi, p = _num(df, ci_low), _num(df, ci_high), _num(df, p_value)

    # Per-row inputs for each measure, NaN where the replicate is not usable.
    cols: dict[str, np.ndarray] = {}
    specs: list[tuple[str, str]] = []  # (measure, kind)
    if est is not None and tru is not None:
        d = est - tru
        cols["d"] = d
        cols["d2"] = d * d
        specs += [("bias", "bias"), ("empse", "empse"), ("mse", "mse")]
    elif est is not None:
        specs += [("empse", "empse")]
    if est is not None:
        cols["est"] = est
    if s is not None:
        cols["se2"] = s * s
        specs.append(("modelse", "modelse"))
        if est is not None:
            ok = ~np.isnan(est) & ~np.isnan(s)
            cols["est_cc"] = _masked(est, ok)
            cols["se2_cc"] = _masked(s * s, ok)
            specs.append(("relerr_modelse", "relerr"))
    if lo is not None and hi is not None and tru is not None:
        ok = ~np.isnan(lo) & ~np.isnan(hi) & ~np.isnan(tru)
        cols["cover"] = _masked(((lo <= tru) & (tru <= hi)).astype(float), ok)
        specs.append(("coverage", "prop_cover"))
    if p is not None:
        cols["reject"] = _masked((p < alpha).astype(float), ~np.isnan(p))
        specs.append(("rejection", "prop_reject"))
    extras = []
    for col in extra_means:
        arr = _num(df, col)
        if arr is not None:
            cols[f"x_{col}"] = arr
            extras.append(col)
    specs += [(f"mean_{col}", "mean") for col in extras]
    if "max_abs_smd" in extras:
        specs.append(("max_max_abs_smd", "max"))

    if not specs:
        return pd.DataFrame({**{b: pd.Series([], dtype=df[b].dtype) for b in by},
                             "measure": pd.Series([], dtype=object), "value": pd.Series([], dtype=float),
                             "mcse": pd.Series([], dtype=float), "n": pd.Series([], dtype="int64")})

    work = pd.DataFrame(cols, index=df.index)
    if by:
        keys = [df[b] for b in by]
    else:
        keys = np.zeros(len(df), dtype=np.int8)
    g = work.groupby(keys, dropna=False, sort=True)
    stats = g.agg(["count", "mean", "var"])
    if "x_max_abs_smd" in cols:
        stats[("x_max_abs_smd", "max")] = g["x_max_abs_smd"].max()
    n_groups = len(stats)

    def st(col: str, what: str) -> np.ndarray:
        return stats[(col, what)].to_numpy(dtype=float)

    with np.errstate(divide="ignore", invalid="ignore"):
        out_parts = []
        for measure, kind in specs:
            if kind == "bias":
                n = st("d", "count"); value = st("d", "mean"); mcse = np.sqrt(st("d", "var") / n)
            elif kind == "empse":
                n = st("est", "count"); value = np.sqrt(st("est", "var")); mcse = value / np.sqrt(2 * (n - 1))
            elif kind == "mse":
                n = st("d2", "count"); value = st("d2", "mean"); mcse = np.sqrt(st("d2", "var") / n)
            elif kind == "modelse":
                n = st("se2", "count"); value = np.sqrt(st("se2", "mean"))
                mcse = np.sqrt(st("se2", "var") / (4 * n * value ** 2))
            elif kind == "relerr":
                n = st("se2_cc", "count"); ms2 = st("se2_cc", "mean"); v2 = st("se2_cc", "var")
                modse = np.sqrt(ms2); empse = np.sqrt(st("est_cc", "var"))
                ratio = modse / empse
                value = 100 * (ratio - 1)
                mcse = 100 * ratio * np.sqrt(v2 / (4 * n * ms2 ** 2) + 1 / (2 * (n - 1)))
            elif kind in ("prop_cover", "prop_reject"):
                c = "cover" if kind == "prop_cover" else "reject"
                n = st(c, "count"); value = st(c, "mean"); mcse = np.sqrt(value * (1 - value) / n)
            elif kind == "mean":
                c = "x_" + measure[len("mean_"):]
                n = st(c, "count"); value = st(c, "mean"); mcse = np.sqrt(st(c, "var") / n)
            else:  # max
                n = st("x_max_abs_smd", "count"); value = st("x_max_abs_smd", "max"); mcse = np.full(n_groups, np.nan)
            out_parts.append(pd.DataFrame({"_g": np.arange(n_groups), "_m": len(out_parts), "measure": measure,
                                           "value": value, "mcse": mcse, "n": n}))
    out = pd.concat(out_parts, ignore_index=True)
    out = out[out["n"] > 0]
    out = out.sort_values(["_g", "_m"], kind="stable")
    out["n"] = out["n"].astype("int64")
    if by:
        key_frame = stats.index.to_frame(index=False)
        key_frame.columns = by
        keys_rep = key_frame.iloc[out["_g"].to_numpy()].reset_index(drop=True)
        for b in by:  # restore original dtypes where groupby changed them
            try:
                keys_rep[b] = keys_rep[b].astype(df[b].dtype)
            except (TypeError, ValueError):
                pass
        result = pd.concat([keys_rep, out[OUTPUT_COLUMNS].reset_index(drop=True)], axis=1)
    else:
        result = out[OUTPUT_COLUMNS].reset_index(drop=True)
    return result


def mcse_reps_needed(target_mcse: float, sd: float | None = None) -> int:
    """Replicates needed so that a mean-type measure has MCSE <= target_mcse.

    Bias: MCSE = sd/sqrt(n), so n = (sd/target)^2 with sd the SD of the
    estimates (e.g. from a pilot's empse).  Rejection/coverage: sd =
    sqrt(p(1-p)) <= 0.5, so ``sd=None`` uses the worst case p = 0.5, e.g.
    target 0.005 -> 10000 reps, target 0.01 -> 2500 reps.
    """
    if not (isinstance(target_mcse, (int, float)) and math.isfinite(target_mcse) and target_mcse > 0):
        raise ValueError(f"target_mcse must be a positive finite number, got {target_mcse!r}")
    if sd is None:
        sd = 0.5
    if not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd >= 0):
        raise ValueError(f"sd must be a non-negative finite number or None (worst-case proportion), got {sd!r}")
    x = (sd / target_mcse) ** 2
    return max(1, math.ceil(round(x, 9)))

"""Pieces of a tidy summary.csv shared by the Monte Carlo jobs: one column per grid factor, then
outcome, timepoint, analysis, measure, value, mcse, n."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sim.engine import conditions_frame
from sim.jobs.conditions import Condition, short_names

BY = ["condition", "outcome", "timepoint", "analysis"]


def mean_rows(replicates: pd.DataFrame, columns: Mapping[str, str]) -> list[pd.DataFrame]:
    """Mean (with MCSE) of per-replicate columns, e.g. the true effects: {column: measure name}."""
    out = []
    for col, measure in columns.items():
        g = replicates.groupby(BY, dropna=False)[col]
        t = pd.DataFrame({"value": g.mean(), "mcse": g.std(ddof=1) / np.sqrt(g.count()), "n": g.count()}).reset_index()
        out.append(t.assign(measure=measure))
    return out


def directional_rows(replicates: pd.DataFrame, alpha: float) -> list[pd.DataFrame]:
    """`rejection_benefit` / `rejection_harm`: share of replicates whose two-sided test rejects in
    favour of the treated arm / of the control arm (column `favours`), MCSE sqrt(r(1 - r)/n). Power
    to detect a benefit is rejection_benefit: a significant result in the harm direction is not
    a detected benefit."""
    if "favours" not in replicates.columns:
        return []
    d = replicates[replicates["p_value"].notna() & replicates["favours"].notna()]
    if d.empty:
        return []
    reject = d["p_value"].to_numpy(dtype=float) < alpha
    fav = d["favours"].to_numpy(dtype=float)
    out = []
    for measure, hit in (("rejection_benefit", reject & (fav > 0)), ("rejection_harm", reject & (fav < 0))):
        g = pd.Series(hit.astype(float), index=d.index).groupby([d[b] for b in BY], dropna=False)
        t = pd.DataFrame({"value": g.mean(), "n": g.count()}).reset_index()
        t["mcse"] = np.sqrt(t["value"] * (1 - t["value"]) / t["n"])
        out.append(t.assign(measure=measure))
    return out


def quantile_rows(replicates: pd.DataFrame, columns: Sequence[str],
                  probs: Mapping[str, float] = {"q25": 0.25, "median": 0.5, "q75": 0.75}) -> list[pd.DataFrame]:
    """Quantiles (with order-statistic MCSEs) of per-replicate columns, as `<name>_<column>`
    measures, for the groups where the column has values."""
    from sim.methods.sensitivity import quantile_with_mcse

    out = []
    for col in columns:
        if col not in replicates.columns:
            continue
        for name, p in probs.items():
            rows = []
            for key, g in replicates.groupby(BY, dropna=False, sort=True):
                x = g[col].to_numpy(dtype=float)
                n = int((~np.isnan(x)).sum())
                if n:
                    q, m = quantile_with_mcse(x, p)
                    rows.append({**dict(zip(BY, key)), "value": q, "mcse": m, "n": n})
            if rows:
                out.append(pd.DataFrame(rows).assign(measure=f"{name}_{col}"))
    return out


def failure_rows(failures: pd.DataFrame, conds: Sequence[Condition], reps: int) -> pd.DataFrame:
    """`n_failed` per condition (outcome/timepoint/analysis = 'all'), out of `reps`."""
    fail = pd.DataFrame({"condition": [c.index for c in conds]})
    counts = failures.groupby("condition").size() if len(failures) else pd.Series(dtype=float)
    fail["value"] = fail["condition"].map(counts).fillna(0).astype(float)
    return fail.assign(outcome="all", timepoint="all", analysis="all", measure="n_failed", mcse=np.nan, n=reps)


def tidy(parts: Sequence[pd.DataFrame], conds: Sequence[Condition]) -> pd.DataFrame:
    """Stack measure tables, attach the grid factors, order rows and columns."""
    factors = list(conds[0].factors)
    names = short_names(factors)
    grid = conditions_frame([c.factors for c in conds]).rename(columns=names)
    out = grid.merge(pd.concat(parts, ignore_index=True), on="condition", how="right")
    cols = [names[f] for f in factors] + ["outcome", "timepoint", "analysis", "measure", "value", "mcse", "n"]
    order = {m: i for i, m in enumerate(out["measure"].unique())}
    out = out.assign(_m=out["measure"].map(order)).sort_values(BY + ["_m"], kind="stable")
    return out[cols].reset_index(drop=True)

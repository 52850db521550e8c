"""What each endpoint of the trial estimates (ICH E9(R1) strategies for deaths and missed
visits), how far the complete case is from the effect among all survivors in a run, and what
testing every outcome x visit costs (Bonferroni), as the report and the curated answer quote them.

Why: a randomised trial does not make the complete case unbiased for the survivors' effect: the
patients seen at a visit started healthier, so 'while alive and seen' is its own estimand; and the
composite (death ranks worst) is another. The run measures the first against the known truth of
its cohorts (`bias`); this module pools that measure over n, where it does not depend on n.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sim.power.closed import bonferroni_factor

__all__ = ["STRATEGY", "pooled_bias", "largest_bias", "multiplicity"]

#: the ICH E9(R1) strategy for deaths and missed visits behind each analysis, and what it estimates
STRATEGY = {
    "complete_case": "'while alive and seen' (complete case): the patients seen at the visit, so it estimates the "
                     "effect among those seen, who started healthier; even randomised, that differs from the effect "
                     "among all survivors",
    "composite": "composite: death before the visit is part of the outcome (ranked below every change, earlier "
                 "lower; alive-but-missed patients left out), a different estimand, diluted by deaths the "
                 "treatment does not change",
    "worst_rank": "composite-like (worst rank): every patient without a change (dead or missed) ranked below every "
                  "change, a different estimand",
}


def pooled_bias(summary: pd.DataFrame, analysis: str, outcome: str, timepoint: str,
                effect: float) -> tuple[float, float]:
    """(bias, MCSE) of one analysis at one outcome x time and effect, pooled over the n per arm
    (inverse-variance weights: what the complete case estimates does not depend on n)."""
    b = summary[(summary["measure"] == "bias") & (summary["analysis"] == analysis) & (summary["outcome"] == outcome)
                & (summary["timepoint"] == timepoint) & np.isclose(summary["effect_mcid"].astype(float), effect)]
    b = b[b["mcse"] > 0]
    if b.empty:
        return float("nan"), float("nan")
    w = 1.0 / b["mcse"].to_numpy(float) ** 2
    return float(np.sum(w * b["value"].to_numpy(float)) / w.sum()), float(1.0 / np.sqrt(w.sum()))


def largest_bias(summary: pd.DataFrame, analysis: str = "ttest") -> tuple[str, str, float, float, float] | None:
    """(outcome, timepoint, effect, bias, MCSE) of `analysis` where its pooled bias is largest in
    MCSE units, at the largest effect of the run (None without bias rows)."""
    b = summary[(summary["measure"] == "bias") & (summary["analysis"] == analysis)]
    if b.empty:
        return None
    eff = float(b["effect_mcid"].astype(float).max())
    keys = b[["outcome", "timepoint"]].drop_duplicates().itertuples(index=False)
    got = [(o, t, eff, *pooled_bias(summary, analysis, o, t, eff)) for o, t in keys]
    got = [x for x in got if np.isfinite(x[3]) and x[4] > 0]
    return max(got, key=lambda x: abs(x[3]) / x[4]) if got else None


def multiplicity(ss: pd.DataFrame, alpha: float, targets: Sequence[float]) -> tuple[int, dict[float, float]]:
    """(k, {target: n factor}): the outcome x time comparisons of the table, and how much a
    Bonferroni correction (alpha / k each) multiplies the closed-form n at each target power."""
    k = len(ss[["outcome", "timepoint"]].drop_duplicates()) if len(ss) else 0
    return k, ({p: bonferroni_factor(k, alpha, p) for p in targets} if k else {})

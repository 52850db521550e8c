"""Estimators beyond the paper's matched pairs: what another analysis of the same patients would
have estimated (regression after matching, inverse probability and overlap weighting, augmented
IPW, full matching, subclassification). Each sees one cohort at one outcome x visit as a
`CohortView` and returns an `Estimate` that names its estimand, so that bias and coverage are
measured against the estimator's own truth (sim.methods.pipeline computes every truth from both
potential outcomes on the population the estimand targets).

Every estimator works on the complete cases at the visit, as the paper's analysis does: a patient
without a change there (dead or missed) is left out of the outcome model and the weighted means,
and `n_treated` / `n_control` report how many were used (weight > 0 and seen). The PS model is
the study's, fitted on everyone (as the paper fitted it), so the weights of the seen patients are
those the analysis would have used. The truths stay those of the patients alive under both arms
(as the matched analyses' truth_matched): with the true PS the complete-case weighting estimators
converge to the effect among the patients seen at the visit instead, which differs where missed
visits depend on health (the calibrated cohort, one-MCID effect, n = 200,000: ATE 8.71 among the
seen against 9.35 among the alive on the Barthel change), a bias every complete-case analysis
carries and the simulation should show.

Registry: `ESTIMATORS[name] = function(view, alpha) -> Estimate`; each module of this package
registers its estimators with `@register("name")`, and the package imports them all."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import numpy as np

#: the estimands an estimator may target (pipeline's truth column for each)
ESTIMANDS = {"att": "truth_att", "ate": "truth_ate", "ato": "truth_ato", "matched": "truth_matched"}


@dataclass(frozen=True)
class CohortView:
    """One cohort at one outcome and visit, as every estimator sees it (arrays of length n)."""

    X: np.ndarray          # (n, p) the PS model's covariates (no intercept column)
    treated: np.ndarray    # bool
    y: np.ndarray          # change from baseline at the visit, improvement direction; NaN where not seen
    baseline: np.ndarray   # the outcome's baseline value (for adjustment)
    ps: np.ndarray         # the estimated PS (the study's PS model, fitted on everyone)
    pair_id: np.ndarray    # the paper's matching: matched-set id (0..), -1 if unmatched
    match_weights: np.ndarray  # ATT weights of that matching (1 treated, 1/k controls, 0 unmatched)

    @property
    def seen(self) -> np.ndarray:
        return ~np.isnan(self.y)


@dataclass(frozen=True)
class Estimate:
    """An estimator's result: the treated-minus-control effect on the change, its SE and (1 - alpha)
    CI, the two-sided p-value of no effect, the patients used per arm and the estimand."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_treated: int
    n_control: int
    estimand: str
    reason: str = ""

    @classmethod
    def failed(cls, estimand: str, reason: str) -> "Estimate":
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, 0, 0, estimand, reason)

    @classmethod
    def wald(cls, estimate: float, se: float, alpha: float, n_treated: int, n_control: int, estimand: str,
             df: float | None = None, reason: str = "") -> "Estimate":
        """CI and p-value from a normal (or, with `df`, t) reference distribution (the normal one
        from the standard library, the t from scipy.special's ufuncs, which scipy.stats.t calls:
        the same numbers without its per-call overhead, which exceeds the estimators')."""
        if not (np.isfinite(estimate) and np.isfinite(se) and se > 0):
            return cls(estimate, se, math.nan, math.nan, math.nan, n_treated, n_control, estimand,
                       reason or "no finite SE")
        if df is None:
            q = NormalDist().inv_cdf(1 - alpha / 2)
            p = math.erfc(abs(estimate / se) / math.sqrt(2))
        else:
            from scipy import special

            q, p = special.stdtrit(df, 1 - alpha / 2), 2 * special.stdtr(df, -abs(estimate / se))
        return cls(float(estimate), float(se), float(estimate - q * se), float(estimate + q * se), float(p),
                   int(n_treated), int(n_control), estimand, reason)


Estimator = Callable[[CohortView, float], Estimate]
ESTIMATORS: dict[str, Estimator] = {}
#: each estimator's estimand, declared where it is registered (the tag its rows are measured by)
ESTIMAND_OF: dict[str, str] = {}


def register(name: str, estimand: str = "") -> Callable[[Estimator], Estimator]:
    """Add an estimator to the registry under `name`, with the estimand it targets (a key of
    ESTIMANDS): bias and coverage of its rows are measured against that estimand's truth."""
    if estimand and estimand not in ESTIMANDS:
        raise ValueError(f"estimator {name!r}: estimand {estimand!r}; allowed: {sorted(ESTIMANDS)}")

    def add(fn: Estimator) -> Estimator:
        if name in ESTIMATORS:
            raise ValueError(f"estimator {name!r} registered twice")
        ESTIMATORS[name] = fn
        ESTIMAND_OF[name] = estimand
        return fn
    return add

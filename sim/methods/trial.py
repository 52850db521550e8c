"""Statistics of a 1:1 randomised trial of a change score: randomisation, the analyses of one
outcome at one visit (one registry, `ANALYSES`) and the tidy rows of one randomised cohort.

Estimates are on the improvement scale, treated minus control, as `sim.methods.outcomes.TestResult`:
  ttest     Student two-sample t-test of the change score (pooled variance): `outcomes.diff_means`
            with `pooled=True`; the test the closed-form sample size of sim.power describes.
  welch     the same with Welch's unequal-variance SE and Satterthwaite df (`outcomes.diff_means`).
  ancova    OLS of the follow-up value on treatment + baseline value; estimate = direction x the
            treatment coefficient, its SE, CI and p from the t distribution (df = n - 3).
  wilcoxon  rank-sum test of the change (p only: its estimate P(T > C) is not on the effect scale).
  composite rank-sum test of a composite in which death before the visit ranks below every
            survivor, earlier deaths lower (sim.methods.sensitivity.truncation.composite_rank); patients alive
            who missed the visit are left out. An alternative primary endpoint: survival and
            function together.

Every row also says which arm the result favours (`favours`: +1 treatment, -1 control, the sign
of the estimate, or of P(T > C) - 1/2 for the rank tests), so that power can be counted as a
significant result in favour of treatment (the benefit-direction rejection rate).

Deaths before a visit and missed visits leave the change missing (NaN). `DEATH_STRATEGIES`:
complete_case analyses the patients seen at the visit; worst_rank gives, for the wilcoxon test
only, every patient without a change (dead, or alive but not seen at the visit) the worst
observed change minus 1 (`worst_rank`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from sim.methods import outcomes as O
from sim.methods.sensitivity.truncation import composite_rank

if TYPE_CHECKING:
    from sim.cohort.generate import Cohort

NAN = float("nan")
DEATH_STRATEGIES = ("complete_case", "worst_rank")
#: column of the tidy rows -> TestResult field
ROW_FIELDS = {"estimate": "estimate", "se": "se", "ci_low": "ci_low", "ci_high": "ci_high", "p_value": "p_value",
              "n_used_treated": "n_treated", "n_used_control": "n_control"}


@dataclasses.dataclass(frozen=True)
class Visit:
    """One outcome at one visit of a randomised cohort."""

    change: np.ndarray  # observed change from baseline (NaN: dead before the visit or missed it)
    pre: np.ndarray  # baseline value
    treated: np.ndarray  # bool, the randomised arm
    direction: float  # +1 if higher is better, -1 otherwise (follow-up = pre + direction x change)
    death_strategy: str = "complete_case"
    death_day: np.ndarray | None = None  # day of death if dead at the visit, inf otherwise


def randomise(n_total: int, n_treated: int, rng: np.random.Generator) -> np.ndarray:
    """Complete randomisation: exactly n_treated of n_total patients get 1 (a random subset)."""
    if not 0 <= n_treated <= n_total:
        raise ValueError(f"n_treated must be in [0, {n_total}], got {n_treated}")
    z = np.zeros(n_total, dtype=bool)
    z[rng.permutation(n_total)[:n_treated]] = True
    return z


def student_t(a: np.ndarray, b: np.ndarray) -> O.TestResult:
    """Two-sample pooled-variance t-test of mean(a) - mean(b) (NaNs dropped per arm)."""
    return O.diff_means(a, b, pooled=True)


def welch_t(a: np.ndarray, b: np.ndarray) -> O.TestResult:
    """Welch's t-test of mean(a) - mean(b) (NaNs dropped per arm)."""
    return O.diff_means(a, b)


def ancova(post: np.ndarray, pre: np.ndarray, treated: np.ndarray, direction: float = 1.0) -> O.TestResult:
    """OLS post ~ 1 + treated + pre over rows with post and pre observed.

    estimate = direction x the treatment coefficient (improvement scale), its OLS SE, a 95 % CI and
    a two-sided p from the t distribution with n - 3 df."""
    post = np.asarray(post, dtype=float)
    pre = np.asarray(pre, dtype=float)
    z = np.asarray(treated, dtype=bool)
    ok = ~(np.isnan(post) | np.isnan(pre))
    y, x, t = post[ok], pre[ok], z[ok].astype(float)
    n1, n2 = int(t.sum()), int(ok.sum() - t.sum())
    n = y.size
    if n1 < 1 or n2 < 1 or n < 4:
        return O.TestResult("ancova", n_treated=n1, n_control=n2, reason="need >=1 value per arm and >=4 in all")
    X = np.column_stack([np.ones(n), t, x])
    try:
        inv = np.linalg.inv(X.T @ X)
    except np.linalg.LinAlgError:
        return O.TestResult("ancova", n_treated=n1, n_control=n2, reason="singular design matrix")
    beta = inv @ (X.T @ y)
    resid = y - X @ beta
    df = n - 3
    s2 = float(resid @ resid) / df
    return O._t_result("ancova", float(direction * beta[1]), math.sqrt(max(s2 * inv[1, 1], 0.0)), df, n1, n2)


def worst_rank(delta: np.ndarray) -> np.ndarray:
    """Every patient without a change (NaN: dead before the visit, or alive but not seen at it)
    gets the worst observed change minus 1; the patients seen keep theirs."""
    d = np.asarray(delta, dtype=float)
    unseen = np.isnan(d)
    if not unseen.any() or unseen.all():
        return d
    return np.where(unseen, np.nanmin(d) - 1.0, d)


def _rank_sum(v: Visit) -> O.TestResult:
    change = worst_rank(v.change) if v.death_strategy == "worst_rank" else v.change
    return O.wilcoxon_ranksum(change[v.treated], change[~v.treated])


#: analysis name -> test of one Visit; the names `experiment.analyses` allows. The rank tests'
#: estimate is P(T > C) + P(T = C)/2 here (it gives `favours`); the rows keep their p only.
ANALYSES: dict[str, Callable[[Visit], O.TestResult]] = {
    "ttest": lambda v: student_t(v.change[v.treated], v.change[~v.treated]),
    "welch": lambda v: welch_t(v.change[v.treated], v.change[~v.treated]),
    "ancova": lambda v: ancova(v.pre + v.direction * v.change, v.pre, v.treated, v.direction),
    "wilcoxon": _rank_sum,
    "composite": lambda v: composite_rank(v.change[v.treated], v.death_day[v.treated], v.change[~v.treated],
                                          v.death_day[~v.treated]),
}
#: analyses whose estimate is P(T > C) (centre 1/2), not an effect on the outcome's scale
RANK_ANALYSES = ("wilcoxon", "composite")


def favours(analysis: str, r: O.TestResult) -> float:
    """+1 if the result favours treatment, -1 control, NaN without an estimate (or exactly even)."""
    centre = 0.5 if analysis in RANK_ANALYSES else 0.0
    s = np.sign(r.estimate - centre) if np.isfinite(r.estimate) else NAN
    return float(s) if s != 0 else NAN


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """What to analyse in each randomised cohort."""

    n_per_arm: int
    outcomes: tuple[str, ...] = ()  # empty: every outcome of the study
    times: tuple[str, ...] = ()  # empty: every follow-up visit of the study
    analyses: tuple[str, ...] = tuple(ANALYSES)
    death_strategy: str = "complete_case"
    alpha: float = 0.05
    baseline: str = "pre"  # the study's baseline visit (the cohort column <outcome>_<baseline>)


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    """The pooled within-arm SD of the non-missing values (NaN with fewer than 2 per arm)."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return NAN
    return math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))


def analyse_trial(cohort: Cohort, treated: np.ndarray, spec: TrialSpec, directions: Mapping[str, float],
                  visit_days: Mapping[str, float], effects: Mapping[tuple[str, str], float] | None = None
                  ) -> dict[str, list]:
    """Columns of a tidy table (one row per outcome x time x analysis) for one randomised cohort:
    the analyses' fields, which arm the result favours (`favours`), the cohort's survivor effect at
    the visit (`truth`: the mean individual effect among patients alive under both arms, from the
    potential outcomes), the population effect (`truth_pop`), deaths, patients not seen and the
    pooled SD of the observed change."""
    columns, potential = cohort.columns, cohort.potential_deltas
    z = np.asarray(treated, dtype=bool)
    t0, t1 = cohort.death_days
    death = np.where(z, t1, t0)
    extra = ("truth", "truth_pop", "n_deaths", "n_unseen", "sd_change")
    cols: dict[str, list] = {k: [] for k in ("outcome", "timepoint", "analysis", *ROW_FIELDS, "favours", *extra)}
    for name in spec.outcomes or tuple(dict.fromkeys(o for o, _ in potential)):
        pre = np.asarray(columns[f"{name}_{spec.baseline}"], dtype=float)
        for t in spec.times or tuple(dict.fromkeys(t for _, t in potential)):
            d0, d1 = potential[(name, t)]
            s0, s1 = cohort.seen[t]
            change = np.where(z, np.where(s1, d1, NAN), np.where(s0, d0, NAN))
            dead = death <= visit_days[t]
            visit = Visit(change, pre, z, directions[name], spec.death_strategy, np.where(dead, death, np.inf))
            indiv = d1 - d0
            indiv = indiv[~np.isnan(indiv)]
            base = (float(indiv.mean()) if indiv.size else NAN, float((effects or {}).get((name, t), NAN)),
                    int(dead.sum()), int(np.isnan(change).sum()), pooled_sd(change[z], change[~z]))
            for an in spec.analyses:
                r = ANALYSES[an](visit)
                cols["favours"].append(favours(an, r))
                if an in RANK_ANALYSES:
                    r = dataclasses.replace(r, estimate=NAN)  # p only: P(T > C) is not an effect
                cols["outcome"].append(name)
                cols["timepoint"].append(t)
                cols["analysis"].append(an)
                for k, field in ROW_FIELDS.items():
                    cols[k].append(getattr(r, field))
                for k, v in zip(extra, base):
                    cols[k].append(v)
    return cols

"""Closed-form sample size and power for a two-arm parallel trial (pure functions, no state).

All sample sizes are PER ARM and two-sided at level ``alpha``.

Change-score t-test (normal approximation; e.g. Chow, Shao & Wang, Sample Size Calculations in
Clinical Research, 3rd ed., sec. 3.2):

    n = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd^2 / delta^2          (analysable patients per arm)

``exact=True`` instead uses the noncentral t distribution of the pooled-variance (Student)
t statistic, df = n1 + n2 - 2, noncentrality delta / (sd sqrt(1/n1 + 1/n2)); power counts both
rejection tails, as statsmodels.stats.power.TTestIndPower.

ANCOVA on the follow-up outcome adjusted for baseline (Borm, Fransen & Lemmens 2007, J Clin
Epidemiol 60:1234): the residual variance is sd_post^2 (1 - rho^2), rho the pre-post correlation
and sd_post the SD of the follow-up outcome (sd_post * sqrt(1 - rho^2) is its SD given baseline), so

    n_ancova = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd_post^2 (1 - rho^2) / delta^2

(the exact version loses one more df for the baseline slope: df = n1 + n2 - 3).

Deaths: an outcome is measured only in patients alive at the visit. With survival probability
``survival`` to the visit (the same in both arms), ``n`` analysable patients need
``n / survival`` randomised ones; every ``n_per_arm_*`` takes ``survival`` for this inflation,
every ``power_*`` takes the number randomised and ``survival`` and works on the expected number
analysable (n x survival).

Informative loss: the patients seen at a visit (alive, and not missing it) started healthier, so
their change has another SD, and the effect among them another size, than among all survivors.
``closed_ttest_informative`` plans the complete-case t-test with the quantities of the patients
seen (SD of the change among them, the difference of the two arms' mean change among them) and
inflates by the share seen, instead of the share alive.

Planning with a simulation (experiment rct_planning): ``reference_quantities`` estimates the
inputs of the closed forms (SD of the change among survivors and among the patients seen,
follow-up SD, pre-post correlation, survival and the share seen) from one large cohort of the
generator; ``crossing`` reads the smallest n reaching a
target off a simulated power curve; ``sample_size_table`` sets the two side by side.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from sim.cohort.generate import Design, generate

__all__ = ["n_per_arm_ttest", "power_ttest", "n_per_arm_ancova", "power_ancova", "z", "crossing",
           "reference_quantities", "sample_size_table"]

NAN = float("nan")


def z(p: float) -> float:
    """The standard normal quantile."""
    return float(special.ndtri(p))


def _check(delta: float, sd: float, alpha: float, survival: float, power: float | None = None) -> None:
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta must be a finite non-zero number, got {delta!r}")
    if not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a finite number > 0, got {sd!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0 < survival <= 1:
        raise ValueError(f"survival must be in (0, 1], got {survival!r}")
    if power is not None and not alpha / 2 < power < 1:
        raise ValueError(f"power must be in (alpha/2, 1), got {power!r}")


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _power_t(n1, n2, delta: float, sd: float, alpha: float, exact: bool, df_lost: int):
    n1, n2 = np.asarray(n1, dtype=float), np.asarray(n2, dtype=float)
    se = sd * np.sqrt(1.0 / n1 + 1.0 / n2)
    ncp = abs(delta) / se
    if not exact:
        q = z(1 - alpha / 2)
        return _out(special.ndtr(ncp - q) + special.ndtr(-ncp - q))
    df = n1 + n2 - 2 - df_lost
    with np.errstate(invalid="ignore", divide="ignore"):
        dfp = np.where(df > 0, df, np.nan)
        q = stats.t.ppf(1 - alpha / 2, dfp)
        return _out(stats.nct.sf(q, dfp, ncp) + stats.nct.cdf(-q, dfp, ncp))


def power_ttest(n, delta: float, sd: float, alpha: float = 0.05, *, exact: bool = True,
                ratio=1.0, survival: float = 1.0):
    """Power of the two-sided two-sample t-test of the change score (n and ratio may be arrays:
    the result is then an array of the broadcast shape).

    n: patients randomised to arm 1 (arm 2: ratio x n); survival: share alive at the visit (the
    analysable numbers are n x survival and ratio x n x survival). exact=True: noncentral t
    (scipy.stats.nct, df = n1 + n2 - 2, both tails); exact=False: normal approximation.
    """
    _check(delta, sd, alpha, survival)
    if not np.all(np.asarray(n) > 0) or not np.all(np.asarray(ratio) > 0):
        raise ValueError(f"n and ratio must be > 0, got n={n!r}, ratio={ratio!r}")
    n1 = np.asarray(n, dtype=float) * survival
    return _power_t(n1, n1 * ratio, delta, sd, alpha, exact, 0)


def _solve_n(power_fn, target: float, lo: float) -> float:
    """The n in [lo, inf) where power_fn(n) = target (lo itself if its power is already enough)."""
    if power_fn(lo) >= target:
        return lo
    hi = max(4.0, lo * 2)
    while power_fn(hi) < target:
        hi *= 2
        if hi > 1e9:
            raise ValueError("power target not reachable")
    return float(optimize.brentq(lambda m: power_fn(m) - target, lo, hi, xtol=1e-10))


def n_per_arm_ttest(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, *, exact: bool = False,
                    survival: float = 1.0) -> float:
    """Patients to randomise per arm (not rounded up) for the change-score t-test.

    exact=False: n = 2 (z_{1-alpha/2} + z_power)^2 sd^2 / delta^2 / survival. exact=True: the n
    (continuous) at which the noncentral-t power equals `power`, divided by survival.
    """
    _check(delta, sd, alpha, survival, power)
    if not exact:
        n = 2.0 * (z(1 - alpha / 2) + z(power)) ** 2 * sd ** 2 / delta ** 2
    else:
        n = _solve_n(lambda m: _power_t(m, m, delta, sd, alpha, True, 0), power, 2.0)
    return n / survival


def power_ancova(n, delta: float, sd_post: float, rho: float, alpha: float = 0.05, *, exact: bool = True,
                 survival: float = 1.0) -> float:
    """Power of the baseline-adjusted ANCOVA (equal arms): the t-test power with residual SD
    sd_post sqrt(1 - rho^2) and, if exact, one df less."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho!r}")
    _check(delta, sd_post, alpha, survival)
    if not np.all(np.asarray(n) > 0):
        raise ValueError(f"n must be > 0, got {n!r}")
    n1 = np.asarray(n, dtype=float) * survival
    return _power_t(n1, n1, delta, sd_post * math.sqrt(1 - rho ** 2), alpha, exact, 1)


def n_per_arm_ancova(delta: float, sd_post: float, rho: float, alpha: float = 0.05, power: float = 0.8, *,
                     exact: bool = False, survival: float = 1.0) -> float:
    """Patients to randomise per arm for ANCOVA: n_per_arm_ttest with sd_post^2 (1 - rho^2)
    (normal approximation; exact=True solves the noncentral t with df = 2n - 3)."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho!r}")
    _check(delta, sd_post, alpha, survival, power)
    sd_res = sd_post * math.sqrt(1 - rho ** 2)
    if not exact:
        return n_per_arm_ttest(delta, sd_res, alpha, power, exact=False, survival=survival)
    n = _solve_n(lambda m: _power_t(m, m, delta, sd_res, alpha, True, 1), power, 2.5)
    return n / survival


# --------------------------------------------------------------------------- planning with a simulation
def reference_quantities(design: Design, n: int, rng: np.random.Generator, outcomes: Sequence[str],
                         times: Sequence[str]) -> pd.DataFrame:
    """From one large cohort (the design at n patients, every patient under both arms): per
    outcome x time the survival to the visit, the SD of the change among survivors (pooled over
    arms: sqrt of the mean of the two potential-outcome variances), the SD of the follow-up value
    and the pooled within-arm pre-post correlation, the effect; and, for the complete case, the
    share seen at the visit (mean of the arms), the SD of the change among the patients seen and
    the difference of the arms' mean change among them (`effect_seen`)."""
    cohort = generate(dataclasses.replace(design, n=int(n)), rng)
    dirs = {o.name: o.direction() for o in design.model.outcomes}
    rows = []
    for name in outcomes:
        pre = np.asarray(cohort.columns[f"{name}_{design.model.baseline}"], dtype=float)
        for t in times:
            d0, d1 = cohort.potential_deltas[(name, t)]
            alive = ~np.isnan(d0) & ~np.isnan(d1)  # alive under both arms
            x = pre[alive]
            posts = [x + dirs[name] * d0[alive], x + dirs[name] * d1[alive]]
            var_change = (d0[alive].var(ddof=1) + d1[alive].var(ddof=1)) / 2
            var_post = (posts[0].var(ddof=1) + posts[1].var(ddof=1)) / 2
            cov = (np.cov(x, posts[0])[0, 1] + np.cov(x, posts[1])[0, 1]) / 2
            s0, s1 = cohort.seen[t]
            rows.append({"outcome": name, "timepoint": t, "delta": float(design.effect.get((name, t), NAN)),
                         "ate_reference": float(np.nanmean(d1 - d0)),
                         "survival": float(alive.mean()), "sd_change": math.sqrt(var_change),
                         "sd_post": math.sqrt(var_post), "rho": float(cov / math.sqrt(x.var(ddof=1) * var_post)),
                         "seen": float((s0.mean() + s1.mean()) / 2),
                         "sd_change_seen": math.sqrt((d0[s0].var(ddof=1) + d1[s1].var(ddof=1)) / 2),
                         "effect_seen": float(d1[s1].mean() - d0[s0].mean())})
    return pd.DataFrame(rows)


def crossing(ns: Sequence[float], powers: Sequence[float], target: float) -> tuple[float, str]:
    """Smallest n reaching `target` on a simulated power curve: the first grid point at or above
    target, linearly interpolated from the grid point before it. Returns (n, status)."""
    ns, powers = np.asarray(ns, dtype=float), np.asarray(powers, dtype=float)
    order = np.argsort(ns)
    ns, powers = ns[order], powers[order]
    hit = np.flatnonzero(powers >= target)
    if hit.size == 0:
        return NAN, "not reached"
    i = int(hit[0])
    if i == 0:
        return float(ns[0]), "at or below the smallest grid n"
    n0, n1, p0, p1 = ns[i - 1], ns[i], powers[i - 1], powers[i]
    return float(n0 + (target - p0) * (n1 - n0) / (p1 - p0)), "interpolated"


def _table2_sd(study_outcomes: Mapping[str, Any], name: str, t: str) -> float:
    tab = study_outcomes.get(name, {}).get("table2")
    if not tab:
        return NAN
    return math.sqrt((tab["treated"][t][1] ** 2 + tab["control"][t][1] ** 2) / 2)


def sample_size_table(summary: pd.DataFrame, refs: Mapping[float, pd.DataFrame], analyses: Sequence[str],
                      targets: Sequence[float], alpha: float, study_outcomes: Mapping[str, Any]) -> pd.DataFrame:
    """One row per effect x outcome x time x target power: the simulated n per arm of each
    analysis (from the `rejection` rows of a tidy summary with columns n_per_arm and effect_mcid;
    interpolated; NaN = not reached, see `notes`) beside the closed forms at the reference
    quantities `refs` (per effect) and, where the study has one, the published Table 2 SD."""
    rej = summary[summary["measure"] == "rejection"]
    rows = []
    for eff, ref in refs.items():
        sub = rej[np.isclose(rej["effect_mcid"].astype(float), eff)]
        for r in ref.itertuples(index=False):
            cur = sub[(sub["outcome"] == r.outcome) & (sub["timepoint"] == r.timepoint)]
            for target in targets:
                row = {"effect_mcid": eff, "outcome": r.outcome, "timepoint": r.timepoint, "power": target,
                       "delta": r.delta}
                notes = []
                for an in analyses:
                    c = cur[cur["analysis"] == an]
                    n, status = crossing(c["n_per_arm"], c["value"], target) if len(c) else (NAN, "not run")
                    row[f"sim_{an}"] = float(math.ceil(n - 1e-9)) if math.isfinite(n) else NAN
                    if status != "interpolated":
                        grid = sorted(c["n_per_arm"].astype(float)) if len(c) else []
                        where = (f" (<= {grid[0]:g})" if status.startswith("at or below") else
                                 f" (power {c['value'].max():.2f} at most, largest n {grid[-1]:g})" if grid else "")
                        notes.append(f"{an}: {status}{where}")
                kw = dict(alpha=alpha, power=target, survival=r.survival)
                row["closed_ttest"] = math.ceil(n_per_arm_ttest(r.delta, r.sd_change, **kw))
                row["closed_ttest_nct"] = math.ceil(n_per_arm_ttest(r.delta, r.sd_change, exact=True, **kw))
                row["closed_ancova"] = math.ceil(n_per_arm_ancova(r.delta, r.sd_post, r.rho, **kw))
                row["closed_ancova_nct"] = math.ceil(n_per_arm_ancova(r.delta, r.sd_post, r.rho, exact=True, **kw))
                row["closed_ttest_informative"] = (
                    math.ceil(n_per_arm_ttest(r.effect_seen, r.sd_change_seen, alpha=alpha, power=target,
                                              survival=r.seen)) if r.effect_seen != 0 else NAN)
                sd2 = _table2_sd(study_outcomes, r.outcome, r.timepoint)
                row["closed_ttest_table2sd"] = (math.ceil(n_per_arm_ttest(r.delta, sd2, **kw))
                                                if math.isfinite(sd2) else NAN)
                row.update(sd_change=r.sd_change, sd_change_table2=sd2, sd_post=r.sd_post, rho=r.rho,
                           survival=r.survival, seen=r.seen, sd_change_seen=r.sd_change_seen,
                           effect_seen=r.effect_seen, notes="; ".join(notes))
                rows.append(row)
    return pd.DataFrame(rows)

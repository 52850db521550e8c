"""Planning a trial with a simulation (experiment rct_planning): the closed forms' inputs from one
large cohort of the generator, the simulated n per arm beside the closed forms, and their gaps.

``reference_quantities`` estimates the inputs of the closed forms (SD of the change among
survivors and among the patients seen, follow-up SD, pre-post correlation, survival, the share
seen and the share dead, P(Y1 > Y0) and the ties) from one large cohort of the generator;
``sample_size_table`` sets the simulated n (sim.power.solve, rounded up: patients to randomise)
beside the closed forms (sim.power.closed, rounded up); ``comparison_table`` sets the same two
side by side UNROUNDED (rounding up both moves a gap by up to one patient, a large share at small
n), which is what a gap between them is measured on.

Informative loss: the patients seen at a visit (alive, and not missing it) started healthier, so
their change has another SD, and the effect among them another size, than among all survivors.
``closed_ttest_informative`` plans the complete-case t-test with the quantities of the patients
seen (SD of the change among them, the difference of the two arms' mean change among them),
noncentral t as the other t-test closed forms, inflated by the share seen.

The composite (death ranks worst, alive-but-missed patients left out) ranks the patients dead or
seen; with q the share dead among them (the same in both arms at hazard ratio 1) its P shrinks
to 1/2 + (1 - q)^2 (P_seen - 1/2) (sim.power.closed.composite_superiority): ``closed_composite``
is Noether's n at that P, divided by the share ranked.

One MCID against a standardised effect (``standardised_n_table``): the outcomes' MCIDs are different
shares of their SDs (sim.report.units), so the n for one MCID differs between outcomes for that
reason alone. Beside it the same closed forms (noncentral t and ANCOVA, divided by the share seen)
at an effect of ``MODERATE_SD`` = 0.5 SD of the change (a conventional 'moderate' effect; the SD is
the unit of ``cohort.effect_sd``), with the same planning inputs, compare the outcomes on one
footing: for the t-test n then depends on the outcome only through the share seen and the ratio of
the planning SD to the unit, for ANCOVA also through the pre-post correlation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sim.cohort.generate import Design, generate
from sim.power.closed import (composite_superiority, n_per_arm_ancova, n_per_arm_noether, n_per_arm_ttest,
                              superiority)
from sim.power.solve import PowerFit, _no, solve_simulated_n

__all__ = ["reference_quantities", "GAP_PAIRS", "POWER_MEASURE", "fit_curves", "closed_forms",
           "sample_size_table", "comparison_table", "gaps", "largest_gap", "MODERATE_SD", "standardised_n_table"]

NAN = float("nan")
#: the summary measure the sample size is solved on: a significant result in favour of treatment
POWER_MEASURE = "rejection_benefit"
#: (simulated analysis, closed form) pairs whose relative gap the report and the answer quote
GAP_PAIRS = (("ttest", "closed_ttest_nct"), ("ancova", "closed_ancova_nct"), ("wilcoxon", "closed_wilcoxon"),
             ("composite", "closed_composite"))


def _composite_scores(change: np.ndarray, seen: np.ndarray, death: np.ndarray, day: float, floor: float):
    """The composite's order as numbers, for the patients dead or seen: a death (on day d <= the
    visit day) scores floor - 1 - (day - d)/(day + 1), below every change (>= floor), earlier
    lower; the seen keep their change; alive-but-missed patients are left out."""
    dead = death <= day
    score = np.where(dead, floor - 1.0 - (day - death) / (day + 1.0), change)
    return score[dead | seen]


def reference_quantities(design: Design, n: int, rng: np.random.Generator, outcomes: Sequence[str],
                         times: Sequence[str]) -> pd.DataFrame:
    """From one large cohort (the design at n patients, every patient under both arms): per
    outcome x time the survival to the visit, the SD of the change among survivors (pooled over
    arms: sqrt of the mean of the two potential-outcome variances), the SD of the follow-up value
    and the pooled within-arm pre-post correlation, the effect; and, for the complete case, the
    share seen at the visit (mean of the arms), the SD of the change among the patients seen and
    the difference of the arms' mean change among them (`effect_seen`); for the Wilcoxon test,
    P(Y1 > Y0) + P(Y1 = Y0)/2 for a treated and a control patient seen (`p_superiority`, Y the
    potential change of independent patients), P(Y1 = Y0) (`p_tie`) and the tie factor
    1 - sum pi_k^3 (`tie_factor`), and the same two for worst_rank (every patient, the change of a
    patient not seen worse than every change: `p_superiority_worst_rank`, `tie_factor_worst_rank`);
    for the composite the share dead by the visit (`dead`, mean of the arms) and its P computed
    directly on the composite's order (`p_superiority_composite`)."""
    cohort = generate(dataclasses.replace(design, n=int(n)), rng)
    dirs = {o.name: o.direction() for o in design.model.outcomes}
    t0, t1 = cohort.death_days
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
            p_sup, p_tie, ties = superiority(d1[s1], d0[s0])
            worst0, worst1 = np.where(s0, d0, -np.inf), np.where(s1, d1, -np.inf)
            p_sup_wr, _, ties_wr = superiority(worst1, worst0)
            day = float(design.model.visit_days[t])
            floor = float(min(np.nanmin(d0[s0]), np.nanmin(d1[s1])))
            p_comp, _, _ = superiority(_composite_scores(d1, s1, t1, day, floor),
                                       _composite_scores(d0, s0, t0, day, floor))
            rows.append({"outcome": name, "timepoint": t, "delta": float(design.effect.get((name, t), NAN)),
                         "ate_reference": float(np.nanmean(d1 - d0)),
                         "survival": float(alive.mean()), "sd_change": math.sqrt(var_change),
                         "sd_post": math.sqrt(var_post), "rho": float(cov / math.sqrt(x.var(ddof=1) * var_post)),
                         "seen": float((s0.mean() + s1.mean()) / 2),
                         "sd_change_seen": math.sqrt((d0[s0].var(ddof=1) + d1[s1].var(ddof=1)) / 2),
                         "effect_seen": float(d1[s1].mean() - d0[s0].mean()),
                         "p_superiority": p_sup, "p_tie": p_tie, "tie_factor": ties,
                         "p_superiority_worst_rank": p_sup_wr, "tie_factor_worst_rank": ties_wr,
                         "dead": float(((t0 <= day).mean() + (t1 <= day).mean()) / 2),
                         "p_superiority_composite": p_comp})
    return pd.DataFrame(rows)


def _table2_sd(study_outcomes: Mapping[str, Any], name: str, t: str) -> float:
    tab = study_outcomes.get(name, {}).get("table2")
    if not tab:
        return NAN
    return math.sqrt((tab["treated"][t][1] ** 2 + tab["control"][t][1] ** 2) / 2)


def _rows(summary: pd.DataFrame, measure: str) -> pd.DataFrame:
    rows = summary[summary["measure"] == measure]
    if rows.empty:
        raise ValueError(f"the summary has no {measure!r} rows to solve the sample size on")
    return rows


def fit_curves(summary: pd.DataFrame, refs: Mapping[float, pd.DataFrame], analyses: Sequence[str],
               targets: Sequence[float], *, measure: str = POWER_MEASURE, x: str = "sqrt"
               ) -> dict[tuple[float, str, str, float, str], PowerFit]:
    """`solve_simulated_n` per effect x outcome x time x target x analysis, on the `measure` rows of
    a tidy summary (columns n_per_arm, effect_mcid, value and n: the counts are round(value x n) of
    n replicates); an analysis without rows is 'not run'."""
    rej = _rows(summary, measure)
    out = {}
    for eff, ref in refs.items():
        sub = rej[np.isclose(rej["effect_mcid"].astype(float), eff)]
        for r in ref.itertuples(index=False):
            cur = sub[(sub["outcome"] == r.outcome) & (sub["timepoint"] == r.timepoint)]
            for target in targets:
                for an in analyses:
                    c = cur[cur["analysis"] == an]
                    if len(c):
                        reps = c["n"].astype(float).to_numpy()
                        fit = solve_simulated_n(c["n_per_arm"], np.round(c["value"].astype(float) * reps), reps,
                                                target, x=x)
                    else:
                        fit = _no("not run", "")
                    out[(eff, r.outcome, r.timepoint, target, an)] = fit
    return out


def closed_forms(r, target: float, alpha: float, study_outcomes: Mapping[str, Any], *,
                 death_strategy: str = "complete_case") -> dict[str, float]:
    """The closed-form patients to randomise per arm at one reference row `r`, UNROUNDED: t and
    ANCOVA (normal and noncentral t), Wilcoxon (Noether, and with the tie factor), the composite
    (Noether at the diluted P, divided by the share ranked), the t-test planned on the patients
    seen (noncentral t) and, where the study has one, on the published Table 2 SD. Under
    `death_strategy` worst_rank the Wilcoxon closed forms take the worst-rank P and tie factor and
    analyse every randomised patient (no inflation)."""
    kw = dict(alpha=alpha, power=target, survival=r.seen)  # the analysable: seen at the visit
    worst = death_strategy == "worst_rank"
    p_sup = r.p_superiority_worst_rank if worst else r.p_superiority
    ties = r.tie_factor_worst_rank if worst else r.tie_factor
    wkw = dict(alpha=alpha, power=target, survival=1.0 if worst else r.seen)
    ranked = r.dead + r.seen
    p_comp = composite_superiority(float(r.p_superiority), r.dead / ranked)
    sd2 = _table2_sd(study_outcomes, r.outcome, r.timepoint)
    return {
        "closed_ttest": n_per_arm_ttest(r.delta, r.sd_change, **kw),
        "closed_ttest_nct": n_per_arm_ttest(r.delta, r.sd_change, exact=True, **kw),
        "closed_ancova": n_per_arm_ancova(r.delta, r.sd_post, r.rho, **kw),
        "closed_ancova_nct": n_per_arm_ancova(r.delta, r.sd_post, r.rho, exact=True, **kw),
        "closed_wilcoxon": n_per_arm_noether(p_sup, **wkw) if p_sup != 0.5 else NAN,
        "closed_wilcoxon_ties": n_per_arm_noether(p_sup, tie_factor=ties, **wkw) if p_sup != 0.5 else NAN,
        "closed_composite": (n_per_arm_noether(p_comp, alpha=alpha, power=target, survival=ranked)
                             if p_comp != 0.5 else NAN),
        "closed_ttest_informative": (n_per_arm_ttest(r.effect_seen, r.sd_change_seen, exact=True, **kw)
                                     if r.effect_seen != 0 else NAN),
        "closed_ttest_table2sd": n_per_arm_ttest(r.delta, sd2, exact=True, **kw) if math.isfinite(sd2) else NAN,
    }


def _up(v: float) -> float:
    return float(math.ceil(v - 1e-9)) if math.isfinite(v) else NAN


def sample_size_table(summary: pd.DataFrame, refs: Mapping[float, pd.DataFrame], analyses: Sequence[str],
                      targets: Sequence[float], alpha: float, study_outcomes: Mapping[str, Any], *,
                      death_strategy: str = "complete_case", x: str = "sqrt", measure: str = POWER_MEASURE,
                      fits: Mapping | None = None) -> pd.DataFrame:
    """One row per effect x outcome x time x target power: per analysis the simulated n per arm
    (`fit_curves` on `measure`, the benefit-direction rejection rate by default) as `sim_<an>`,
    `sim_<an>_low`, `sim_<an>_high` (rounded up; NaN unless fitted) and `sim_<an>_status`, the
    reasons in `notes`; beside it the closed forms (`closed_forms`, rounded up: patients to
    randomise), the planning inputs, the composite's share dead among the ranked (`q_composite`)
    the two-sided level of every test (`alpha`) and `death_strategy`."""
    fits = fit_curves(summary, refs, analyses, targets, measure=measure, x=x) if fits is None else fits
    rows = []
    for eff, ref in refs.items():
        for r in ref.itertuples(index=False):
            for target in targets:
                row = {"effect_mcid": eff, "outcome": r.outcome, "timepoint": r.timepoint, "power": target,
                       "delta": r.delta}
                notes = []
                for an in analyses:
                    fit = fits[(eff, r.outcome, r.timepoint, target, an)]
                    row.update({f"sim_{an}": _up(fit.n), f"sim_{an}_low": _up(fit.low),
                                f"sim_{an}_high": _up(fit.high), f"sim_{an}_status": fit.status})
                    if fit.reason or fit.status != "fitted":
                        notes.append(f"{an}: {fit.status}" + (f" ({fit.reason})" if fit.reason else ""))
                row.update({k: _up(v) for k, v in closed_forms(r, target, alpha, study_outcomes,
                                                                death_strategy=death_strategy).items()})
                worst = death_strategy == "worst_rank"
                row.update(sd_change=r.sd_change, sd_change_table2=_table2_sd(study_outcomes, r.outcome, r.timepoint),
                           sd_post=r.sd_post, rho=r.rho, survival=r.survival, seen=r.seen,
                           sd_change_seen=r.sd_change_seen, effect_seen=r.effect_seen,
                           p_superiority=r.p_superiority_worst_rank if worst else r.p_superiority,
                           tie_factor=r.tie_factor_worst_rank if worst else r.tie_factor,
                           q_composite=r.dead / (r.dead + r.seen), alpha=alpha, death_strategy=death_strategy,
                           notes="; ".join(notes))
                rows.append(row)
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = ["effect_mcid", "outcome", "timepoint", "power", "analysis", "closed", "sim_n", "sim_low",
                      "sim_high", "closed_n", "gap", "inside"]


def comparison_table(summary: pd.DataFrame, refs: Mapping[float, pd.DataFrame], targets: Sequence[float],
                     alpha: float, study_outcomes: Mapping[str, Any], *, death_strategy: str = "complete_case",
                     pairs: Sequence[tuple[str, str]] = GAP_PAIRS, measure: str = POWER_MEASURE,
                     fits: Mapping | None = None) -> pd.DataFrame:
    """Per effect x outcome x time x target and (analysis, closed form) pair with a fitted
    simulated n and a finite closed form, both UNROUNDED: the simulated n and its Fieller 95 %
    interval, the closed form, the relative gap sim_n / closed_n - 1 and whether the closed form
    lies inside the interval (columns COMPARISON_COLUMNS)."""
    analyses = [an for an, _ in pairs]
    fits = fit_curves(summary, refs, analyses, targets, measure=measure) if fits is None else fits
    rows = []
    for eff, ref in refs.items():
        for r in ref.itertuples(index=False):
            for target in targets:
                closed = closed_forms(r, target, alpha, study_outcomes, death_strategy=death_strategy)
                for an, col in pairs:
                    fit = fits.get((eff, r.outcome, r.timepoint, target, an))
                    c = closed.get(col, NAN)
                    if fit is None or fit.status != "fitted" or not math.isfinite(c):
                        continue
                    rows.append([eff, r.outcome, r.timepoint, target, an, col, fit.n, fit.low, fit.high, c,
                                 fit.n / c - 1, bool(fit.low <= c <= fit.high)])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def gaps(cmp: pd.DataFrame, pairs: Sequence[tuple[str, str]] = GAP_PAIRS) -> pd.DataFrame:
    """The rows of a comparison table (`comparison_table`, or its CSV) of the given pairs."""
    keep = pd.Series(False, index=cmp.index)
    for an, closed in pairs:
        keep |= (cmp["analysis"] == an) & (cmp["closed"] == closed)
    return cmp[keep]


def largest_gap(cmp: pd.DataFrame, pairs: Sequence[tuple[str, str]] = GAP_PAIRS, k: int | None = None):
    """The row with the largest |gap| (None without any comparable pair); with `k`, the k rows
    with the largest |gap|, largest first (a DataFrame)."""
    g = gaps(cmp, pairs)
    if k is not None:
        return g.loc[g["gap"].abs().sort_values(ascending=False, kind="stable").index[:k]]
    return None if g.empty else g.loc[g["gap"].abs().idxmax()]


#: a conventional 'moderate' standardised effect (Cohen's d = 0.5), in SD units of the change
MODERATE_SD = 0.5


def standardised_n_table(refs: Mapping[float, pd.DataFrame], units: pd.DataFrame, targets: Sequence[float],
                         alpha: float, sd_effect: float = MODERATE_SD) -> pd.DataFrame:
    """Closed-form patients to randomise per arm for one MCID beside those for `sd_effect` SD of
    the change, per outcome x time (the rows of `units`: outcome, timepoint, mcid, sd_change,
    mcid_in_sd, as sim.report.units.effect_units) and target power.

    Both use the planning inputs of the reference cohort at one MCID (`refs[1.0]`, else at the
    largest effect in `refs`): the SD of the change among survivors, the follow-up SD, the pre-post
    correlation and the share seen, exactly as closed_ttest_nct / closed_ancova_nct of
    sample_size_table (noncentral t; ANCOVA with df = 2n - 3; divided by the share seen, rounded
    up). The effects: delta = one MCID (`mcid`), and delta = sd_effect x `sd_change` of `units`
    (the unit of cohort.effect_sd). Columns: those of `units`, power, n_ttest_one_mcid,
    n_ttest_<sd_effect>sd, n_ancova_one_mcid, n_ancova_<sd_effect>sd."""
    if not refs:
        raise ValueError("standardised_n_table: no reference quantities (the grid has no effect > 0)")
    if not (isinstance(sd_effect, (int, float)) and math.isfinite(sd_effect) and sd_effect > 0):
        raise ValueError(f"sd_effect must be a number > 0, got {sd_effect!r}")
    ref = refs[1.0] if 1.0 in refs else refs[max(refs)]
    ref = ref.set_index(["outcome", "timepoint"])
    tag = f"{sd_effect:g}sd"
    rows = []
    for target in targets:
        for u in units.itertuples(index=False):
            r = ref.loc[(u.outcome, u.timepoint)]
            kw = dict(alpha=alpha, power=target, exact=True, survival=float(r.seen))
            row = {**u._asdict(), "power": target}
            for name, delta in (("one_mcid", float(u.mcid)), (tag, sd_effect * float(u.sd_change))):
                row[f"n_ttest_{name}"] = math.ceil(n_per_arm_ttest(delta, float(r.sd_change), **kw))
                row[f"n_ancova_{name}"] = math.ceil(n_per_arm_ancova(delta, float(r.sd_post), float(r.rho), **kw))
            rows.append(row)
    cols = [*units.columns, "power", "n_ttest_one_mcid", f"n_ttest_{tag}", "n_ancova_one_mcid", f"n_ancova_{tag}"]
    return pd.DataFrame(rows)[cols]

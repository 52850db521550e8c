"""Monte Carlo planning of a randomised trial (experiment rct_planning): power, type-I error, bias
and coverage of the usual analyses of a 1:1 trial of decompression, and the sample size per arm
they need, beside the closed-form answers of sim.power.

Data-generating mechanism: the calibrated Tominaga 2025 outcome model (the same one the matched
design uses) without confounding (cohort.confounding = 0). Per replicate a cohort of
2 x n_per_arm patients is drawn and exactly n_per_arm of them are RANDOMISED to decompression with
the replicate's RNG (the generator's own `treated` is ignored). Because the generator carries both
potential outcomes, a patient's observed change is delta1 if randomised to treatment and delta0
otherwise; the observed follow-up value is pre + direction x change.

Deaths before a visit (`experiment.death_strategy`):
  complete_case (default): every analysis uses the patients alive at the visit (the generator
      makes a dead patient's outcome missing). The estimand is the 'while alive' effect: the mean
      individual effect on the change from baseline among patients alive at the visit. Death
      does not depend on the arm in this model, so survivors are still a randomised comparison.
  worst_rank: a composite for the rank test only: a patient dead before the visit gets the worst
      observed change at that visit (over both arms) minus 1, so deaths rank below every survivor
      and the Wilcoxon test uses every randomised patient. The t-tests and ANCOVA stay complete
      case (a mean of an arbitrary worst value has no meaning).

Analyses per outcome and time (estimates in the improvement direction: treated minus control):
  ttest     Student two-sample t-test of the change score (pooled variance), difference in mean
            change, SE, 95 % CI, p; the test the closed-form sample size describes.
  welch     the same with Welch's unequal-variance SE and Satterthwaite df.
  ancova    OLS of the follow-up value on treatment + baseline value (numpy); estimate =
            direction x treatment coefficient, SE, CI and p from the t distribution (df = n - 3).
  wilcoxon  rank-sum test of the change (p only; the estimate P(T > C) is not on the effect scale).

Truth (per replicate): the cohort's ATE on the change among patients alive at the visit, from the
potential outcomes (`truth`); `truth_pop` is the population effect the design was solved for.

Sample size (sample_size.csv, report.md): per outcome x time, effect > 0 and target power, the
smallest simulated n per arm reaching the target (linear interpolation between grid points) beside
the closed forms of sim.power, whose SD of the change (among survivors), follow-up SD, pre-post
correlation and survival to the visit come from one reference cohort of experiment.reference_n
patients drawn from the same design (reference.csv).

Cost: a replicate (cohort of 2 x n_per_arm, 8 outcome-times x 4 analyses) takes ~8-12 ms; the
default grid (30 conditions) at 300 reps takes about a minute of wall time on 2 cores (the
curated run, 1000 reps, took 120 s).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy import special

from sim import power as PW
from sim.cohort.generate import Design, generate
from sim.config import ConfigError
from sim.engine import conditions_frame, run_experiment
from sim.jobs.conditions import Condition, condition_key, conditions, design_of, fingerprint, short_names, study_of
from sim.methods.outcomes import wilcoxon_ranksum
from sim.jobs.tidy import BY, failure_rows, mean_rows, tidy
from sim.report.figures import label_panel, save_panels
from sim.performance import summarise

ANALYSES = ("ttest", "welch", "ancova", "wilcoxon")
DEATH_STRATEGIES = ("complete_case", "worst_rank")
NAN = float("nan")
ROW_KEYS = ("estimate", "se", "ci_low", "ci_high", "p_value", "n_used_treated", "n_used_control")


# --------------------------------------------------------------------------- specification
@dataclasses.dataclass(frozen=True)
class RctSpec:
    n_per_arm: int
    outcomes: tuple[str, ...] = ("barthel", "eq5d", "vas", "face")
    times: tuple[str, ...] = ("m1", "m6")
    analyses: tuple[str, ...] = ANALYSES
    death_strategy: str = "complete_case"
    alpha: float = 0.05


def spec_of(cfg: Mapping[str, Any]) -> RctSpec:
    """The trial settings of one (resolved, plain) condition config; ConfigError if invalid."""
    exp = cfg["experiment"]
    npa = exp.get("n_per_arm")
    if isinstance(npa, bool) or not isinstance(npa, int) or npa < 5:
        raise ConfigError(f"experiment.n_per_arm: must be a whole number >= 5, got {npa!r}")
    strategy = exp.get("death_strategy", "complete_case")
    if strategy not in DEATH_STRATEGIES:
        raise ConfigError(f"experiment.death_strategy: got {strategy!r}; allowed: {list(DEATH_STRATEGIES)}")
    analyses = tuple(exp.get("analyses") or ANALYSES)
    bad = [a for a in analyses if a not in ANALYSES]
    if bad:
        raise ConfigError(f"experiment.analyses: unknown {bad}; allowed: {list(ANALYSES)}")
    out = cfg["method"]["outcomes"]
    return RctSpec(int(npa), tuple(out["names"]), tuple(out["times"]), analyses, strategy,
                   float(out.get("alpha", 0.05)))


# --------------------------------------------------------------------------- statistics
def randomise(n_total: int, n_treated: int, rng: np.random.Generator) -> np.ndarray:
    """Complete randomisation: exactly n_treated of n_total patients get 1 (a random subset)."""
    if not 0 <= n_treated <= n_total:
        raise ValueError(f"n_treated must be in [0, {n_total}], got {n_treated}")
    z = np.zeros(n_total, dtype=bool)
    z[rng.permutation(n_total)[:n_treated]] = True
    return z


def _t_fields(est: float, se: float, df: float, n1: int, n2: int) -> dict:
    out = {"estimate": est, "se": se, "ci_low": NAN, "ci_high": NAN, "p_value": NAN,
           "n_used_treated": n1, "n_used_control": n2}
    if se > 0 and math.isfinite(se) and df > 0:
        q = float(special.stdtrit(df, 0.975))
        out.update(ci_low=est - q * se, ci_high=est + q * se, p_value=float(2.0 * special.stdtr(df, -abs(est / se))))
    return out


def _arm(x: np.ndarray) -> tuple[int, float, float]:
    """(n, mean, variance with ddof 1) of the non-missing values."""
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return 0, NAN, NAN
    m = float(x.sum()) / n
    r = x - m
    return n, m, (float(r @ r) / (n - 1) if n > 1 else NAN)


def _student(s1: tuple[int, float, float], s2: tuple[int, float, float]) -> dict:
    (n1, m1, v1), (n2, m2, v2) = s1, s2
    if n1 < 2 or n2 < 2:
        return {**dict.fromkeys(ROW_KEYS[:5], NAN), "n_used_treated": n1, "n_used_control": n2}
    sp2 = ((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2)
    return _t_fields(m1 - m2, math.sqrt(sp2 * (1 / n1 + 1 / n2)), n1 + n2 - 2, n1, n2)


def _welch(s1: tuple[int, float, float], s2: tuple[int, float, float]) -> dict:
    (n1, m1, v1), (n2, m2, v2) = s1, s2
    if n1 < 2 or n2 < 2:
        return {**dict.fromkeys(ROW_KEYS[:5], NAN), "n_used_treated": n1, "n_used_control": n2}
    a, b = v1 / n1, v2 / n2
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1)) if se > 0 else NAN
    return _t_fields(m1 - m2, se, df, n1, n2)


def student_t(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sample pooled-variance t-test of mean(a) - mean(b) (NaNs dropped per arm)."""
    return _student(_arm(np.asarray(a, dtype=float)), _arm(np.asarray(b, dtype=float)))


def welch_t(a: np.ndarray, b: np.ndarray) -> dict:
    """Welch's t-test of mean(a) - mean(b) (NaNs dropped per arm)."""
    return _welch(_arm(np.asarray(a, dtype=float)), _arm(np.asarray(b, dtype=float)))


def ancova(post: np.ndarray, pre: np.ndarray, treated: np.ndarray, direction: float = 1.0) -> dict:
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
        return {**dict.fromkeys(ROW_KEYS[:5], NAN), "n_used_treated": n1, "n_used_control": n2}
    X = np.column_stack([np.ones(n), t, x])
    xtx = X.T @ X
    try:
        inv = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        return {**dict.fromkeys(ROW_KEYS[:5], NAN), "n_used_treated": n1, "n_used_control": n2}
    beta = inv @ (X.T @ y)
    resid = y - X @ beta
    df = n - 3
    s2 = float(resid @ resid) / df
    se = math.sqrt(max(s2 * inv[1, 1], 0.0))
    return _t_fields(float(direction * beta[1]), se, df, n1, n2)


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> dict:
    r = wilcoxon_ranksum(a, b)
    return {"estimate": NAN, "se": NAN, "ci_low": NAN, "ci_high": NAN, "p_value": r.p_value,
            "n_used_treated": r.n_treated, "n_used_control": r.n_control}


def worst_rank(delta: np.ndarray) -> np.ndarray:
    """Deaths (NaN) get the worst observed change minus 1; survivors keep theirs."""
    d = np.asarray(delta, dtype=float)
    dead = np.isnan(d)
    if not dead.any() or dead.all():
        return d
    return np.where(dead, np.nanmin(d) - 1.0, d)


def analyse_trial(columns: Mapping[str, np.ndarray], potential: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                  treated: np.ndarray, spec: RctSpec, directions: Mapping[str, float],
                  effects: Mapping[tuple[str, str], float] | None = None) -> dict[str, list]:
    """Columns of a tidy table (one row per outcome x time x analysis) for one randomised cohort."""
    z = np.asarray(treated, dtype=bool)
    cols: dict[str, list] = {k: [] for k in ("outcome", "timepoint", "analysis", *ROW_KEYS, "truth", "truth_pop",
                                             "n_deaths", "sd_change")}
    for name in spec.outcomes:
        pre = np.asarray(columns[f"{name}_pre"], dtype=float)
        d = directions[name]
        for t in spec.times:
            d0, d1 = potential[(name, t)]
            delta = np.where(z, d1, d0)
            alive = ~np.isnan(delta)
            indiv = (d1 - d0)[alive]
            a, b = delta[z], delta[~z]
            s1, s2 = _arm(a), _arm(b)
            sd = (math.sqrt(((s1[0] - 1) * s1[2] + (s2[0] - 1) * s2[2]) / (s1[0] + s2[0] - 2))
                  if s1[0] > 1 and s2[0] > 1 else NAN)
            base = (float(indiv.mean()) if indiv.size else NAN, float((effects or {}).get((name, t), NAN)),
                    int((~alive).sum()), sd)
            for an in spec.analyses:
                if an == "ttest":
                    r = _student(s1, s2)
                elif an == "welch":
                    r = _welch(s1, s2)
                elif an == "ancova":
                    r = ancova(pre + d * delta, pre, z, d)
                elif spec.death_strategy == "worst_rank":
                    comp = worst_rank(delta)
                    r = _wilcoxon(comp[z], comp[~z])
                else:
                    r = _wilcoxon(a, b)
                cols["outcome"].append(name)
                cols["timepoint"].append(t)
                cols["analysis"].append(an)
                for k in ROW_KEYS:
                    cols[k].append(r[k])
                for k, v in zip(("truth", "truth_pop", "n_deaths", "sd_change"), base):
                    cols[k].append(v)
    return cols


def rct_replicate(factors: Mapping[str, Any], rng: np.random.Generator,
                  plans: Mapping[str, tuple[Design, RctSpec]]) -> pd.DataFrame:
    design, spec = plans[condition_key(factors)]
    cohort = generate(design, rng)
    treated = randomise(cohort.n, spec.n_per_arm, rng)
    directions = {o.name: o.direction() for o in design.model.outcomes}
    return pd.DataFrame(analyse_trial(cohort.columns, cohort.potential_deltas, treated, spec, directions,
                                      design.effect))


# --------------------------------------------------------------------------- planning
def plans_for(conds: list[Condition]) -> dict[str, tuple[Design, RctSpec]]:
    """Per condition: the cohort design at n = 2 x n_per_arm and the trial spec. The design is
    solved once per cohort setting (the effect solve does not depend on n) and resized."""
    study = study_of(conds[0].cfg)
    solved: dict[str, Design] = {}
    plans = {}
    for c in conds:
        spec = spec_of(c.cfg)
        cohort = {**c.cfg["cohort"], "n": 2 * spec.n_per_arm}
        key = condition_key({k: v for k, v in cohort.items() if k != "n"})
        if key not in solved:
            solved[key] = design_of(study, cohort)
        plans[condition_key(c.factors)] = (dataclasses.replace(solved[key], n=2 * spec.n_per_arm), spec)
    return plans


def reference_quantities(design: Design, n: int, rng: np.random.Generator, outcomes: Sequence[str],
                         times: Sequence[str]) -> pd.DataFrame:
    """From one large cohort (the design at n patients, every patient seen under both arms):
    per outcome x time the survival to the visit, the SD of the change among survivors (pooled
    over arms: sqrt of the mean of the two potential-outcome variances), the SD of the follow-up
    value and the pooled within-arm pre-post correlation, and the effect."""
    cohort = generate(dataclasses.replace(design, n=int(n)), rng)
    dirs = {o.name: o.direction() for o in design.model.outcomes}
    rows = []
    for name in outcomes:
        pre = np.asarray(cohort.columns[f"{name}_pre"], dtype=float)
        for t in times:
            d0, d1 = cohort.potential_deltas[(name, t)]
            alive = ~np.isnan(d0)
            x = pre[alive]
            posts = [x + dirs[name] * d0[alive], x + dirs[name] * d1[alive]]
            var_change = (d0[alive].var(ddof=1) + d1[alive].var(ddof=1)) / 2
            var_post = (posts[0].var(ddof=1) + posts[1].var(ddof=1)) / 2
            cov = (np.cov(x, posts[0])[0, 1] + np.cov(x, posts[1])[0, 1]) / 2
            rows.append({"outcome": name, "timepoint": t, "delta": float(design.effect.get((name, t), NAN)),
                         "ate_reference": float(np.mean(d1[alive] - d0[alive])),
                         "survival": float(alive.mean()), "sd_change": math.sqrt(var_change),
                         "sd_post": math.sqrt(var_post), "rho": float(cov / math.sqrt(x.var(ddof=1) * var_post))})
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
    analysis (interpolated; NaN = not reached, see `notes`) beside the closed forms."""
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
                row["closed_ttest"] = math.ceil(PW.n_per_arm_ttest(r.delta, r.sd_change, **kw))
                row["closed_ttest_nct"] = math.ceil(PW.n_per_arm_ttest(r.delta, r.sd_change, exact=True, **kw))
                row["closed_ancova"] = math.ceil(PW.n_per_arm_ancova(r.delta, r.sd_post, r.rho, **kw))
                row["closed_ancova_nct"] = math.ceil(PW.n_per_arm_ancova(r.delta, r.sd_post, r.rho, exact=True, **kw))
                sd2 = _table2_sd(study_outcomes, r.outcome, r.timepoint)
                row["closed_ttest_table2sd"] = (math.ceil(PW.n_per_arm_ttest(r.delta, sd2, **kw))
                                                if math.isfinite(sd2) else NAN)
                row.update(sd_change=r.sd_change, sd_change_table2=sd2, sd_post=r.sd_post, rho=r.rho,
                           survival=r.survival, notes="; ".join(notes))
                rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- summaries
def summary_table(replicates: pd.DataFrame, failures: pd.DataFrame, conds: list[Condition], alpha: float,
                  reps: int) -> pd.DataFrame:
    """Tidy table as the psm job's: one column per grid factor, outcome, timepoint, analysis,
    measure, value, mcse, n. Bias/MSE/coverage are against the cohort's ATE (`truth`);
    `rejection` is the type-I error at effect 0 and the power otherwise."""
    main = summarise(replicates, BY, truth="truth", alpha=alpha,
                     extra_means=("n_used_treated", "n_used_control", "n_deaths", "sd_change"))
    truths = mean_rows(replicates, {"truth": "true_ate", "truth_pop": "true_ate_population"})
    return tidy([main, *truths, failure_rows(failures, conds, reps)], conds)


# --------------------------------------------------------------------------- figures
def curve_plot(summary: pd.DataFrame, measure: str, effect: float, path: Path, title: str, ylabel: str,
               references: Sequence[float] = (), closed_form: pd.DataFrame | None = None,
               alpha: float = 0.05) -> Path | None:
    """`measure` vs n per arm (numeric axis) at one effect: one panel per outcome x time, one line
    per analysis, error bars 2 x MCSE, dotted reference lines. With `closed_form` (reference
    quantities: delta, sd_change, survival per outcome x time) a dashed line adds the closed-form
    noncentral-t power of the t-test at the expected number of survivors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = summary[(summary["measure"] == measure) & np.isclose(summary["effect_mcid"].astype(float), effect)]
    if df.empty:
        return None
    outcomes = list(dict.fromkeys(df["outcome"]))
    times = list(dict.fromkeys(df["timepoint"]))
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.2 * len(outcomes), 2.8 * len(times)),
                             squeeze=False, sharex=True, sharey=measure in ("rejection", "coverage"))
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            d = df[(df["outcome"] == o) & (df["timepoint"] == t)]
            for an, g in d.groupby("analysis", sort=False):
                g = g.sort_values("n_per_arm")
                ax.errorbar(g["n_per_arm"], g["value"], yerr=2 * g["mcse"].fillna(0), marker="o", ms=3, capsize=2,
                            lw=1, label=an)
            if closed_form is not None:
                r = closed_form[(closed_form["outcome"] == o) & (closed_form["timepoint"] == t)]
                if len(r):
                    r = r.iloc[0]
                    grid = np.linspace(max(3.0, d["n_per_arm"].min() * 0.8), d["n_per_arm"].max(), 60)
                    ax.plot(grid, PW.power_ttest(grid, r.delta, r.sd_change, alpha, survival=r.survival),
                            color="black", ls="--", lw=0.9, label="closed form (t, nct)")
            for ref in references:
                ax.axhline(ref, color="grey", lw=0.7, ls=":")
            label_panel(ax, f"{o}, {t}", first_col=j == 0, last_row=i == len(times) - 1, xlabel="n per arm",
                        ylabel=ylabel)
    return save_panels(fig, axes, path, title, dpi=100)


# --------------------------------------------------------------------------- report
def _cell(v: float, m: float) -> str:
    return f"{v:.3f} ({m:.3f})" if pd.notna(m) else f"{v:.3f}"


def _measure_wide(summary: pd.DataFrame, effect: float, measure: str, analyses: Sequence[str]) -> pd.DataFrame:
    d = summary[(summary["measure"] == measure) & np.isclose(summary["effect_mcid"].astype(float), effect)].copy()
    if d.empty:
        return pd.DataFrame()
    d["cell"] = [_cell(v, m) for v, m in zip(d["value"], d["mcse"])]
    w = d.pivot_table(index=["outcome", "timepoint", "n_per_arm"], columns="analysis", values="cell",
                      aggfunc="first", sort=False)
    w = w[[a for a in analyses if a in w.columns]].reset_index()
    w.columns.name = None
    return w


def _sample_size_md(ss: pd.DataFrame, analyses: Sequence[str]) -> pd.DataFrame:
    out = ss[["effect_mcid", "outcome", "timepoint", "power", "delta"]].copy()
    out["delta"] = [f"{v:.3g}" for v in out["delta"]]
    for an in analyses:
        col = f"sim_{an}"
        cells = []
        for v, note in zip(ss[col], ss["notes"]):
            if pd.notna(v):
                cells.append(f"<= {v:g}" if f"{an}: at or below" in note else f"{v:g}")
            else:
                cells.append("not reached")
        out[f"simulated {an}"] = cells
    out["closed form t (normal)"] = ss["closed_ttest"]
    out["closed form t (nct)"] = ss["closed_ttest_nct"]
    out["closed form ANCOVA"] = ss["closed_ancova"]
    out["closed form t, Table 2 SD"] = ss["closed_ttest_table2sd"]
    out["SD change"] = [f"{v:.3g}" for v in ss["sd_change"]]
    out["rho"] = [f"{v:.2f}" for v in ss["rho"]]
    out["survival"] = [f"{v:.3f}" for v in ss["survival"]]
    return out


def _report(cfg: DictConfig, res: Mapping[str, Any], figures: list[Path], ss: pd.DataFrame) -> str:
    from sim.report.tables import markdown

    exp = cfg.experiment
    spec: RctSpec = res["spec"]
    summary = res["summary"]
    n_fail = int(res["failures"].shape[0])
    total = int(cfg.reps) * len(res["conditions"])
    effects = sorted({float(c.factors.get("cohort.effect_mcid", cfg.cohort.effect_mcid)) for c in res["conditions"]})
    deaths = {
        "complete_case": "complete case: each visit is analysed among the patients alive at it (a 'while alive' "
                         "estimand: the mean individual effect on the change among survivors to the visit). In this "
                         "model death does not depend on the arm, so survivors remain a randomised comparison.",
        "worst_rank": "worst rank for the Wilcoxon test: a patient dead before the visit is given the worst observed "
                      "change at that visit minus 1 (a composite of death and change; every randomised patient "
                      "counts); the t-tests and ANCOVA stay complete case (while-alive estimand).",
    }[spec.death_strategy]
    lines = [
        f"# {exp.name}", "", str(exp.get("description", "")).strip(), "",
        "## What was run",
        f"- command: `python -m sim experiment={exp.name} reps={cfg.reps} seed={cfg.seed}`",
        f"- conditions: {len(res['conditions'])} (n per arm x effect in MCIDs); replicates per condition: "
        f"{cfg.reps}; failed replicates: {n_fail} of {total} (see failures.csv)",
        f"- per replicate: a cohort of 2 x n_per_arm patients from the calibrated outcome model with confounding "
        f"{cfg.cohort.confounding:g}; exactly n_per_arm randomised to decompression with the replicate's RNG; "
        "observed change = the potential change under the randomised arm",
        f"- deaths before the visit (`experiment.death_strategy: {spec.death_strategy}`): {deaths}",
        "- analyses: `ttest` Student t-test of the change score, `welch` Welch t-test of the change score, "
        "`ancova` OLS of the follow-up value on arm + baseline, `wilcoxon` rank-sum test of the change (p only)",
        f"- alpha = {spec.alpha:g}, two-sided; bias, MSE and coverage are against the cohort's true ATE on the change "
        "among survivors to the visit (potential outcomes)",
        f"- chunks computed this run: {res['n_computed_chunks']}, resumed from disk: {res['n_resumed_chunks']}",
        "",
        "## Sample size per arm",
        "Smallest simulated n per arm whose rejection rate reaches the target power (linear interpolation "
        "between grid points, rounded up; 'not reached' if no grid n reaches it; '<= n' if the smallest grid n "
        "already does), beside the closed forms of `sim/power.py` (patients to randomise per arm, rounded up):",
        "- closed form t (normal): n = 2 (z_{1-a/2} + z_{1-b})^2 sigma^2 / delta^2 / S, with sigma the SD of the "
        "change score among survivors to the visit and S the survival probability to the visit, both estimated "
        f"from a reference cohort of {int(res['reference_n']):,} patients drawn from the generator at confounding "
        f"{cfg.cohort.confounding:g} and the same effect (sigma^2 = mean of the two arms' variances);",
        "- closed form t (nct): the same solved exactly with the noncentral t (df = 2n - 2);",
        "- closed form ANCOVA: sigma_post^2 (1 - rho^2) in place of sigma^2 (Borm et al. 2007), with sigma_post "
        "the SD of the follow-up value and rho the within-arm pre-post correlation among survivors (reference "
        "cohort), normal approximation, divided by S;",
        "- closed form t, Table 2 SD: as the first with sigma = the pooled SD of the change in the paper's Table 2 "
        "(observational, before matching), for comparison.",
        "",
        markdown(_sample_size_md(ss, spec.analyses)) if len(ss) else "(no effect > 0 in the grid)",
    ]
    for eff in effects:
        w = _measure_wide(summary, eff, "rejection", spec.analyses)
        title = "Type-I error (effect 0)" if eff == 0 else f"Power at effect = {eff:g} MCID"
        lines += ["", f"## {title}", "Rejection rate (Monte Carlo SE) per analysis.", "",
                  markdown(w) if len(w) else "(no rows)"]
    est = [a for a in spec.analyses if a != "wilcoxon"]
    b = summary[summary["analysis"].isin(est) & summary["measure"].isin(["bias", "coverage"])]
    if len(b):
        rows = []
        for (an, o, t), g in b.groupby(["analysis", "outcome", "timepoint"], sort=False):
            bias = g[g["measure"] == "bias"]
            cov = g[g["measure"] == "coverage"]
            z = (bias["value"] / bias["mcse"]).abs()
            rows.append({"analysis": an, "outcome": o, "timepoint": t,
                         "max abs bias": float(bias["value"].abs().max()),
                         "max abs bias / MCSE": float(z.max()),
                         "coverage min": float(cov["value"].min()), "coverage max": float(cov["value"].max())})
        lines += ["", "## Bias and coverage (over all conditions)",
                  "Against the cohort's true ATE among survivors; with no bias |bias| / MCSE exceeds 3 in about "
                  "0.3 % of conditions; coverage of the 95 % CI should be 0.95 within about 2 MCSE.", "",
                  markdown(pd.DataFrame(rows))]
    lines += ["", "## Figures", *[f"![{p.stem}]({p.name})" for p in figures], "",
              "## Monte Carlo precision",
              "Every measure in summary.csv has its Monte Carlo SE (`mcse`) and the number of replicates it used "
              "(`n`), as in Morris, White & Crowther (2019), Table 6. Error bars are 2 x MCSE. A simulated sample "
              "size inherits the MCSE of the two power estimates it interpolates between.",
              "", "## Configuration", "```yaml", OmegaConf.to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points
def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    conds = conditions(cfg)
    plans = plans_for(conds)
    spec = next(iter(plans.values()))[1]
    result = run_experiment(partial(rct_replicate, plans=plans), [c.factors for c in conds], reps=cfg.reps,
                            seed=cfg.seed, out_dir=out_dir, n_jobs=cfg.n_jobs, chunk_size=cfg.chunk_size,
                            progress=cfg.progress, fingerprint=fingerprint(conds))
    names = short_names(list(conds[0].factors))
    grid = conditions_frame([c.factors for c in conds]).rename(columns=names)
    replicates = grid.merge(result.replicates, on="condition", how="right")
    failures = grid.merge(result.failures, on="condition", how="right")
    summary = summary_table(result.replicates, result.failures, conds, spec.alpha, int(cfg.reps))
    return {"summary": summary, "replicates": replicates, "failures": failures, "conditions": conds,
            "factors": [names[f] for f in conds[0].factors], "spec": spec, "plans": plans,
            "n_computed_chunks": result.n_computed_chunks, "n_resumed_chunks": result.n_resumed_chunks}


def references(cfg: DictConfig, conds: list[Condition], plans: Mapping[str, tuple[Design, RctSpec]],
               n: int) -> dict[float, pd.DataFrame]:
    """Reference quantities per non-zero effect in the grid (one large cohort each, fixed seed)."""
    out: dict[float, pd.DataFrame] = {}
    for c in conds:
        eff = float(c.cfg["cohort"].get("effect_mcid", 0.0))
        if eff == 0 or eff in out:
            continue
        design, spec = plans[condition_key(c.factors)]
        rng = np.random.default_rng([int(cfg.seed), 7_774_411, int(round(eff * 1000))])
        out[eff] = reference_quantities(design, n, rng, spec.outcomes, spec.times)
    return out


def main(cfg: DictConfig, out_dir: Path) -> int:
    from sim.jobs.outputs import atomic_csv, atomic_text
    from sim.report.tables import markdown

    exp = cfg.experiment
    if "cohort.effect_mcid" not in (exp.get("grid") or {}) or "experiment.n_per_arm" not in (exp.get("grid") or {}):
        raise ConfigError("experiment.grid: the rct job needs experiment.n_per_arm and cohort.effect_mcid in its grid")
    targets = [float(p) for p in (exp.get("power_targets") or [0.8, 0.9])]
    if any(not 0 < p < 1 for p in targets):
        raise ConfigError(f"experiment.power_targets: each must be in (0, 1), got {targets}")
    if exp.get("death_strategy", "complete_case") not in DEATH_STRATEGIES:
        raise ConfigError(f"experiment.death_strategy: got {exp.get('death_strategy')!r}; "
                          f"allowed: {list(DEATH_STRATEGIES)}")
    bad = [a for a in (exp.get("analyses") or ANALYSES) if a not in ANALYSES]
    if bad:
        raise ConfigError(f"experiment.analyses: unknown {bad}; allowed: {list(ANALYSES)}")
    ref_n = exp.get("reference_n", 200_000)
    if isinstance(ref_n, bool) or not isinstance(ref_n, int) or ref_n < 1000:
        raise ConfigError(f"experiment.reference_n: must be a whole number >= 1000, got {ref_n!r}")

    res = run(cfg, out_dir)
    res["reference_n"] = ref_n
    summary, spec = res["summary"], res["spec"]
    atomic_csv(summary, out_dir / "summary.csv")
    if exp.get("write_replicates", False):  # ~30 s per 500k rows; the chunks keep them anyway
        atomic_csv(res["replicates"], out_dir / "replicates.csv.gz", compression="gzip")
    atomic_csv(res["failures"], out_dir / "failures.csv")

    refs = references(cfg, res["conditions"], res["plans"], ref_n)
    if refs:
        atomic_csv(pd.concat([r.assign(effect_mcid=e) for e, r in refs.items()], ignore_index=True),
                   out_dir / "reference.csv")
    study_outcomes = study_of(res["conditions"][0].cfg).outcomes
    ss = sample_size_table(summary, refs, spec.analyses, targets, spec.alpha, study_outcomes)
    atomic_csv(ss, out_dir / "sample_size.csv")

    effects = sorted({float(v) for v in summary["effect_mcid"]})
    figures = []
    for eff in effects:
        if eff == 0:
            figures.append(curve_plot(summary, "rejection", eff, out_dir / "type1_error.png",
                                      "Type-I error of a 1:1 randomised trial (effect 0) vs n per arm",
                                      "type-I error", references=[spec.alpha]))
        else:
            figures.append(curve_plot(summary, "rejection", eff, out_dir / f"power_effect{eff:g}.png",
                                      f"Power of a 1:1 randomised trial at effect = {eff:g} MCID vs n per arm",
                                      "power", references=targets, closed_form=refs.get(eff), alpha=spec.alpha))
    top = effects[-1]
    figures.append(curve_plot(summary, "bias", top, out_dir / "bias.png",
                              f"Bias vs the cohort's ATE among survivors (effect = {top:g} MCID)", "bias",
                              references=[0.0]))
    figures.append(curve_plot(summary, "coverage", top, out_dir / "coverage.png",
                              f"Coverage of the 95% CI (effect = {top:g} MCID)", "coverage", references=[0.95]))
    figures = [p for p in figures if p is not None]
    atomic_text(_report(cfg, res, figures, ss), out_dir / "report.md")
    print(markdown(_sample_size_md(ss, spec.analyses)), file=sys.stdout)
    return 0

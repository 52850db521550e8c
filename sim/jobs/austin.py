"""External validation (experiment austin2011): Austin's continuous-outcome caliper study run
through sim's own propensity, matching and outcome methods.

Austin PC. Optimal caliper widths for propensity-score matching when estimating differences in
means and differences in proportions in observational studies. Pharm Stat 2011;10:150-161
(the "independent normal covariates", continuous-outcome scenario).

Data-generating mechanism (per replicate, `experiment.*` keys):
  x_1..x_p ~ iid N(0, 1), p = len(treatment_or) (10);
  logit P(Z = 1 | x) = a + sum_k log(treatment_or_k) x_k, the intercept a solved once per
      condition so that `treated_share` (25 %) of the population is treated: the linear predictor
      is exactly N(0, sum_k log(or_k)^2), so the "reference sample" is its `REFERENCE_NODES`
      quantiles (deterministic; sim.numerics.intercept_for_share on them);
  Y = beta Z + sum_k outcome_coef_k x_k + eps, eps ~ N(0, error_var) (127.6056: R^2 = 0.13 for the
      covariates), so the effect is beta for everyone (ATE = ATT = beta).
Methods (sim's own): PS by logistic regression on x (sim.methods.propensity.fit_propensity);
  greedy 1:1 nearest-neighbour matching on the logit PS without replacement
  (sim.methods.matching.match), caliper gamma x pooled SD of the logit PS for every gamma in
  `experiment.calipers`; estimate = mean within-pair difference with the paired-t SE, CI and
  p-value (sim.methods.outcomes.paired_t); also the crude difference in means (Welch,
  sim.methods.outcomes.diff_means), the reference for the percent of bias removed.
Speed: one data set and one PS fit per replicate, matched at every caliper (a within-replicate
  loop; the condition is beta only), so the calipers are compared on the same data sets. With
  `matching.order: random` the treated units are processed in one random order per replicate
  (drawn from the replicate's generator), shared by all calipers.
Measures (sim.jobs.performance.summarise, per beta x caliper): bias, empirical SE, MSE, model SE,
  coverage, rejection (the type-I error at beta = 0), mean pairs and share of treated matched,
  each with its MCSE; `pct_bias_removed` = 100 (1 - bias_matched / bias_crude) with a delta-method
  MCSE from the per-replicate pairs (matched error, crude error) of the same data sets; and
  `mse_minus_ref`, the paired difference MSE(caliper) - MSE(reference caliper, 0.2) with its MCSE.

Cost: a replicate (n = 10,000, 11 calipers) takes ~0.15 s; see conf/experiment/austin2011.yaml
for the default reps and the measured run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sim.jobs.config import ConfigError, _is_int, _is_num
from sim.engine import ReplicateFailure, RunResult, per_replicate
from sim.jobs.contract import ExperimentResult, Job
from sim.jobs.conditions import Condition, short_names, where
from sim.jobs.tidy import failure_rows
from sim.methods import matching as MATCHING
from sim.methods.matching import match
from sim.methods.outcomes import diff_means, paired_t
from sim.methods.propensity import fit_propensity
from sim.numerics import expit, intercept_for_share
from sim.jobs.performance import summarise
from sim.report.austin import CRUDE, MATCHED

#: quantile nodes of the linear predictor's normal law used as the reference sample for the intercept
REFERENCE_NODES = 400_001
BY = ["condition", "caliper", "analysis"]
EXTRA_MEANS = ("n_pairs", "share_treated_matched", "caliper_width", "n_treated")


@dataclass(frozen=True)
class AustinPlan:
    """One condition, solved: everything a worker needs (picklable)."""

    n: int
    beta: float
    intercept: float
    treatment_log_or: tuple[float, ...]
    outcome_coef: tuple[float, ...]
    error_sd: float
    calipers: tuple[float, ...]
    order: str
    caliper_scale: str
    caliper_sd: str

    @property
    def p(self) -> int:
        return len(self.treatment_log_or)


# ------------------------------------------------------------------ settings
def settings_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The checked `experiment.*` settings of one (plain, resolved) condition config."""
    exp = cfg["experiment"]

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"experiment.{key}: {msg}")

    n = exp.get("n")
    need(_is_int(n) and 100 <= n <= 10_000_000, "n", f"must be a whole number in [100, 10,000,000], got {n!r}")
    share = exp.get("treated_share")
    need(_is_num(share) and 0.01 <= share <= 0.5, "treated_share", f"must be a number in [0.01, 0.5], got {share!r}")
    beta = exp.get("beta")
    need(_is_num(beta), "beta", f"must be a finite number, got {beta!r}")
    ors, coef = exp.get("treatment_or"), exp.get("outcome_coef")
    need(isinstance(ors, list) and len(ors) >= 1 and all(_is_num(v) and v > 0 for v in ors), "treatment_or",
         f"must be a non-empty list of positive odds ratios, got {ors!r}")
    need(isinstance(coef, list) and all(_is_num(v) for v in coef), "outcome_coef",
         f"must be a list of numbers, got {coef!r}")
    need(len(coef) == len(ors), "outcome_coef", f"needs one value per covariate ({len(ors)}, as treatment_or), "
                                               f"got {len(coef)}")
    ev = exp.get("error_var")
    need(_is_num(ev) and ev > 0, "error_var", f"must be a positive number, got {ev!r}")
    cals = exp.get("calipers")
    need(isinstance(cals, list) and len(cals) >= 1 and all(_is_num(c) and c > 0 for c in cals)
         and len(set(cals)) == len(cals), "calipers",
         f"must be a non-empty list of distinct positive numbers (in SDs of the logit PS), got {cals!r}")
    ref = exp.get("reference_caliper", 0.2)
    need(_is_num(ref) and ref in cals, "reference_caliper", f"must be one of experiment.calipers {cals}, got {ref!r}")
    m = exp.get("matching") or {}
    need(isinstance(m, Mapping), "matching", "must be a mapping (order, caliper_scale, caliper_sd)")
    for key, allowed in (("order", MATCHING.ORDERS), ("caliper_scale", MATCHING.CALIPER_SCALES),
                         ("caliper_sd", MATCHING.CALIPER_SDS)):
        need(m.get(key) in allowed, f"matching.{key}", f"got {m.get(key)!r}; allowed: {list(allowed)}")
    alpha = exp.get("alpha", 0.05)
    need(_is_num(alpha) and 0 < alpha < 1, "alpha", f"must be a number in (0, 1), got {alpha!r}")
    wr = exp.get("write_replicates", True)
    need(isinstance(wr, bool), "write_replicates", f"must be true or false, got {wr!r}")
    return {"n": n, "treated_share": float(share), "beta": float(beta),
            "treatment_log_or": tuple(math.log(v) for v in ors), "outcome_coef": tuple(float(v) for v in coef),
            "error_var": float(ev), "calipers": tuple(float(c) for c in cals), "reference_caliper": float(ref),
            "order": m["order"], "caliper_scale": m["caliper_scale"], "caliper_sd": m["caliper_sd"],
            "alpha": float(alpha), "write_replicates": wr}


def predictor_nodes(log_or: tuple[float, ...], nodes: int = REFERENCE_NODES) -> np.ndarray:
    """The reference sample of the linear predictor sum_k log_or_k x_k ~ N(0, sum log_or^2): its
    quantiles at (i - 1/2)/nodes, i = 1..nodes (mid-point rule in probability, deterministic)."""
    from scipy.special import ndtri

    sd = float(np.sqrt(np.sum(np.square(log_or))))
    return sd * ndtri((np.arange(nodes) + 0.5) / nodes)


def solve_intercept(log_or: tuple[float, ...], share: float) -> float:
    """The intercept a with P(Z = 1) = share in the population."""
    return intercept_for_share(predictor_nodes(log_or), share)


def crude_bias_closed_form(log_or: tuple[float, ...], coef: tuple[float, ...], intercept: float) -> float:
    """E[crude] - beta = sum_k b_k (E[x_k | Z=1] - E[x_k | Z=0]) in the population. For jointly
    normal x_k and eta = sum alpha_j x_j, Stein's lemma gives E[x_k expit(a + eta)] =
    alpha_k E[p (1 - p)], so the difference is alpha_k E[p(1 - p)] / (P (1 - P))."""
    p = expit(intercept + predictor_nodes(log_or))
    share, slope = float(p.mean()), float((p * (1 - p)).mean())
    return float(np.dot(coef, log_or)) * slope / (share * (1 - share))


def make_plan(s: Mapping[str, Any], intercept: float) -> AustinPlan:
    return AustinPlan(n=s["n"], beta=s["beta"], intercept=intercept, treatment_log_or=s["treatment_log_or"],
                      outcome_coef=s["outcome_coef"], error_sd=math.sqrt(s["error_var"]), calipers=s["calipers"],
                      order=s["order"], caliper_scale=s["caliper_scale"], caliper_sd=s["caliper_sd"])


# ------------------------------------------------------------------ one replicate
def simulate_data(plan: AustinPlan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, z, y) of one data set: X (n x p) first, then the treatment uniforms, then eps."""
    X = rng.standard_normal((plan.n, plan.p))
    z = rng.random(plan.n) < expit(plan.intercept + X @ np.asarray(plan.treatment_log_or))
    eps = plan.error_sd * rng.standard_normal(plan.n)
    y = plan.beta * z + X @ np.asarray(plan.outcome_coef) + eps
    return X, z, y


def _row(analysis: str, caliper: float, res, truth: float, **extra) -> dict[str, Any]:
    return {"caliper": caliper, "analysis": analysis, "estimate": res.estimate, "se": res.se, "ci_low": res.ci_low,
            "ci_high": res.ci_high, "p_value": res.p_value, "truth": truth, **extra}


def analyse_data(plan: AustinPlan, X: np.ndarray, z: np.ndarray, y: np.ndarray,
                 rng: np.random.Generator) -> pd.DataFrame:
    """The crude comparison, then the PS fit once and the matched comparison at every caliper."""
    n_t = int(z.sum())
    if n_t < 2 or plan.n - n_t < 2:
        raise ReplicateFailure(f"{n_t} treated of {plan.n}: need at least 2 per group")
    rows = [_row(CRUDE, np.nan, diff_means(y[z], y[~z]), plan.beta, n_treated=n_t)]
    fit = fit_propensity(X, z)
    if not fit.converged or fit.separation:
        raise ReplicateFailure(f"propensity model: {fit.message}")
    # one processing order for every caliper (random order only): a seed drawn once per replicate
    order_seed = int(rng.integers(2**63)) if plan.order == "random" else None
    for gamma in plan.calipers:
        m = match(fit.ps, z, caliper=gamma, caliper_scale=plan.caliper_scale, caliper_sd=plan.caliper_sd,
                  order=plan.order, rng=None if order_seed is None else np.random.default_rng(order_seed))
        res = paired_t(y[m.treated_idx], y[m.control_idx])
        rows.append(_row(MATCHED, gamma, res, plan.beta, n_pairs=m.n_pairs,
                         share_treated_matched=m.n_treated_matched / n_t, caliper_width=m.caliper_width,
                         n_treated=n_t))
    return pd.DataFrame(rows)


def austin_replicate(plan: AustinPlan, rng: np.random.Generator) -> pd.DataFrame:
    X, z, y = simulate_data(plan, rng)
    return analyse_data(plan, X, z, y, rng)


# ------------------------------------------------------------------ summary
def pct_bias_removed_rows(replicates: pd.DataFrame) -> pd.DataFrame:
    """100 (1 - mean(e_m) / mean(e_c)) per condition x caliper, e = estimate - truth of the matched
    and crude analyses of the same replicates; MCSE by the delta method with their covariance:
    var = (g_m^2 s_mm + g_c^2 s_cc + 2 g_m g_c s_mc) / n, g_m = -100 / mean(e_c),
    g_c = 100 mean(e_m) / mean(e_c)^2."""
    err = replicates.assign(e=replicates["estimate"] - replicates["truth"])
    crude = err[err["analysis"] == CRUDE][["condition", "rep", "e"]].rename(columns={"e": "e_c"})
    m = err[err["analysis"] == MATCHED].merge(crude, on=["condition", "rep"], how="inner")
    m = m[m["e"].notna() & m["e_c"].notna()]
    rows = []
    for (cond, cal), g in m.groupby(["condition", "caliper"], sort=True):
        n = len(g)
        em, ec = g["e"].to_numpy(float), g["e_c"].to_numpy(float)
        mm, mc = em.mean(), ec.mean()
        value = 100.0 * (1.0 - mm / mc) if mc != 0 else np.nan
        if n >= 2 and mc != 0:
            cov = np.cov(em, ec, ddof=1)
            gm, gc = -100.0 / mc, 100.0 * mm / mc ** 2
            mcse = math.sqrt(max(gm * gm * cov[0, 0] + gc * gc * cov[1, 1] + 2 * gm * gc * cov[0, 1], 0.0) / n)
        else:
            mcse = np.nan
        rows.append({"condition": cond, "caliper": cal, "analysis": MATCHED, "measure": "pct_bias_removed",
                     "value": value, "mcse": mcse, "n": n})
    return pd.DataFrame(rows)


def mse_difference_rows(replicates: pd.DataFrame, reference: float) -> pd.DataFrame:
    """`mse_minus_ref`: mean over replicates of e_gamma^2 - e_ref^2 (same data sets), its MCSE
    sd/sqrt(n): the paired contrast of each caliper's MSE with the reference caliper's."""
    d = replicates[replicates["analysis"] == MATCHED]
    d = d.assign(e2=(d["estimate"] - d["truth"]) ** 2)
    ref = d[np.isclose(d["caliper"], reference)][["condition", "rep", "e2"]].rename(columns={"e2": "e2_ref"})
    d = d.merge(ref, on=["condition", "rep"], how="inner")
    d = d.assign(diff=d["e2"] - d["e2_ref"])
    d = d[d["diff"].notna()]
    g = d.groupby(["condition", "caliper"], sort=True)["diff"]
    out = pd.DataFrame({"value": g.mean(), "mcse": g.std(ddof=1) / np.sqrt(g.count()), "n": g.count()}).reset_index()
    return out.assign(analysis=MATCHED, measure="mse_minus_ref")


def summary_table(replicates: pd.DataFrame, failures: pd.DataFrame, conds: list[Condition], alpha: float,
                  reference: float, reps: int) -> pd.DataFrame:
    """Tidy: one column per grid factor (beta), then caliper (empty for the crude analysis),
    analysis, measure, value, mcse, n."""
    fail = failure_rows(failures, conds, reps).drop(columns=["outcome", "timepoint"]).assign(caliper=np.nan)
    parts = [fail]
    if not replicates.empty:
        main = summarise(replicates, BY, truth="truth", alpha=alpha, extra_means=EXTRA_MEANS)
        parts = [main, pct_bias_removed_rows(replicates), mse_difference_rows(replicates, reference), fail]
    out = pd.concat(parts, ignore_index=True)
    factors = list(conds[0].factors)
    names = short_names(factors)
    grid = pd.DataFrame([{"condition": c.index, **{names[f]: c.factors[f] for f in factors}} for c in conds])
    out = grid.merge(out, on="condition", how="right")
    order = {m: i for i, m in enumerate(dict.fromkeys(out["measure"]))}
    out = out.assign(_a=out["analysis"].map({"all": 0, CRUDE: 1, MATCHED: 2}), _m=out["measure"].map(order))
    out = out.sort_values(["condition", "_a", "caliper", "_m"], kind="stable", na_position="first")
    cols = [names[f] for f in factors] + ["caliper", "analysis", "measure", "value", "mcse", "n"]
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------ the job
class AustinJob(Job):
    """Austin (2011), continuous outcome: data -> PS -> matching at every caliper -> paired t."""

    name = "austin"
    simulate = per_replicate(austin_replicate)

    def __init__(self, cfg):
        super().__init__(cfg)
        self._intercepts: dict[tuple, float] = {}

    def check(self, conds: list[Condition]) -> None:
        for c in conds:
            try:
                settings_of(c.cfg)
            except ConfigError as e:
                key = str(e).split(":", 1)[0]
                raise ConfigError(f"{e}{where(c) if key in c.factors else ''}") from None

    def intercept(self, s: Mapping[str, Any]) -> float:
        key = (s["treatment_log_or"], s["treated_share"])
        if key not in self._intercepts:  # the treatment model does not depend on beta: solved once
            self._intercepts[key] = solve_intercept(*key)
        return self._intercepts[key]

    def plan(self, cond: Condition) -> AustinPlan:
        s = settings_of(cond.cfg)
        return make_plan(s, self.intercept(s))

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        s = settings_of(conds[0].cfg)
        return summary_table(run.replicates, run.failures, conds, s["alpha"], s["reference_caliper"], self.reps())

    def finish(self, result: ExperimentResult) -> None:
        """result.tables['design']: the solved intercept and the closed-form crude bias per condition."""
        rows = []
        names = short_names(list(result.conditions[0].factors))
        for c in result.conditions:
            s = settings_of(c.cfg)
            a = self.intercept(s)
            rows.append({**{names[f]: v for f, v in c.factors.items()}, "n": s["n"], "intercept": a,
                         "treated_share": float(expit(a + predictor_nodes(s["treatment_log_or"])).mean()),
                         "crude_bias_closed_form": crude_bias_closed_form(s["treatment_log_or"], s["outcome_coef"], a),
                         "r2_covariates": (lambda v: v / (v + s["error_var"]))(float(np.sum(np.square(s["outcome_coef"]))))})
        result.tables["design"] = pd.DataFrame(rows)

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report.austin import figure_coverage, figure_mse_bias, key_table, report_text
        from sim.report.montecarlo import atomic_csv, atomic_text, write_tables
        from sim.report.settings import draws_figures

        s = settings_of(result.conditions[0].cfg)
        write_tables(result, out_dir, replicates=s["write_replicates"])
        atomic_csv(result.tables["design"], out_dir / "design.csv")
        table = key_table(result.summary, result.factors)
        atomic_csv(table, out_dir / "key_table.csv")
        figs = [p for p in (figure_mse_bias(result.summary, result.factors, out_dir / "mse_bias.png"),
                            figure_coverage(result.summary, result.factors, s["alpha"],
                                            out_dir / "coverage_type1.png")) if p is not None] \
            if draws_figures(self.cfg) else []
        atomic_text(report_text(self.cfg, result, s, table, figs), out_dir / "report.md")
        return 0

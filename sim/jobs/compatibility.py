"""The published_compatibility job: the paper's whole design simulated over a grid of true effects
θ (in MCID units, common random numbers across θ) and hidden confounders U, so that the published
estimates can be inverted into design-based compatibility intervals and a probabilistic bias
analysis (sim.methods.sensitivity.compatibility).

Each replicate is the matched design of the psm job (calibrated cohort, the paper's PS, greedy 1:1
matching at 0.2 SD of the logit PS, the complete-case difference in mean change at each visit);
only the columns the inversion reads are kept, so a grid of a few hundred conditions stays small
on disk."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sim.jobs.config import ConfigError
from sim.engine import ChunkOutput, RunResult
from sim.jobs.contract import ExperimentResult
from sim.jobs.conditions import Condition, study_of
from sim.jobs.psm import PsmJob, psm_chunk
from sim.jobs.tidy import tidy
from sim.methods.sensitivity import compatibility as M

THETA = "cohort.effect_mcid"
U_OR, U_EFFECT = "cohort.unmeasured.treatment_log_or", "cohort.unmeasured.outcome_effect"
ESTIMATOR = "diff_means"
KEEP = ("replicate", "outcome", "timepoint", "analysis", "estimate", "se", "truth_matched", "n_used_treated",
        "n_used_control")
#: the paper's own test: its published p-value, signed by the published difference, is inverted too
RANK_TEST = "wilcoxon"


def signed_z(p_value, favours):
    """A two-sided p-value as a normal score signed by the direction it favours: what a published
    Wilcoxon p and the sign of the published difference say together."""
    from scipy.stats import norm

    p = np.clip(np.asarray(p_value, float), 1e-300, 1.0)
    return np.sign(np.asarray(favours, float)) * norm.isf(p / 2)
GROUPS = ("treated", "control")


#: how close to the largest effect a bounded scale allows a requested effect may come (a θ beyond it
#: is clipped there, and the inversion uses the θ actually simulated for that outcome and visit)
REACH = 0.97


def compat_chunk(plan, rngs: Sequence[np.random.Generator]) -> ChunkOutput:
    """psm_chunk's replicates with only the columns the inversion reads, and the true effect θ
    (MCID units) simulated for each outcome and visit."""
    design, spec, theta = plan
    out = psm_chunk((design, spec), rngs)
    rows = out.rows[[c for c in KEEP if c in out.rows.columns]].copy()
    if len(rows):
        rows["theta_mcid"] = [theta[(o, t)] for o, t in zip(rows["outcome"], rows["timepoint"])]
        rank = (rows["analysis"] == RANK_TEST).to_numpy()
        if rank.any():  # the rank test's signed score where the difference in means would be
            rows.loc[rank, "estimate"] = signed_z(out.rows.loc[rank, "p_value"], out.rows.loc[rank, "favours"])
    return ChunkOutput(rows, out.failures)


def clipped_effects(model, theta: float) -> dict[tuple[str, str], float]:
    """θ x MCID per outcome and visit, clipped to REACH of the range the bounded scale allows."""
    from sim.cohort.design import reachable_effects

    out = {}
    for (o, t), (lo, hi) in reachable_effects(model).items():
        out[(o, t)] = float(np.clip(theta * model.mcid[o], REACH * lo, REACH * hi))
    return out


# ----------------------------------------------------------------------------- the published numbers

def published_estimates(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """One row per outcome x visit: the published mean change and SD per arm, the number analysed
    and the MCID; from `experiment.published` or, when null, the study's matched Table 5 with the
    number analysed at each visit (study `analysed`). ConfigError naming the key otherwise."""
    study = study_of(cfg)
    given = cfg["experiment"].get("published")
    outcomes = study.outcomes
    rows = []
    if given is None:
        sizes = study.analysed_sizes()
        for o, spec in outcomes.items():
            t5 = spec.get("table5")
            if not t5:
                continue
            for t in study.follow_up:
                if t in t5["treated"] and t in t5["control"]:
                    p = (t5.get("p") or {}).get(t)
                    rows.append({"outcome": o, "timepoint": t, "p": float(p) if isinstance(p, (int, float)) else math.nan,
                                 **{f"{k}_{g}": v for g in GROUPS
                                    for k, v in zip(("mean", "sd", "n"), (*t5[g][t], sizes[t][g]["n"]))}})
        source = "study: table5 with analysed.<visit>.<group>.n"
    else:
        if not isinstance(given, Mapping):
            raise ConfigError(f"experiment.published: must map outcome -> visit -> {{treated: [mean, sd, n], "
                              f"control: [mean, sd, n], p: rank-test p (optional)}}, got {given!r}")
        for o, visits in given.items():
            if o not in outcomes:
                raise ConfigError(f"experiment.published.{o}: unknown outcome; allowed: {list(outcomes)}")
            for t, arms in (visits or {}).items():
                key = f"experiment.published.{o}.{t}"
                if t not in study.follow_up:
                    raise ConfigError(f"{key}: unknown visit; allowed: {list(study.follow_up)}")
                p = (arms or {}).get("p", math.nan)
                if not (isinstance(p, (int, float)) and not isinstance(p, bool) and (math.isnan(p) or 0 < p <= 1)):
                    raise ConfigError(f"{key}.p: the published two-sided p-value of the rank test, in (0, 1], got {p!r}")
                row = {"outcome": o, "timepoint": t, "p": float(p)}
                for g in GROUPS:
                    v = (arms or {}).get(g)
                    if (not isinstance(v, (list, tuple)) or len(v) != 3
                            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
                            or not (v[1] > 0 and v[2] >= 2)):
                        raise ConfigError(f"{key}.{g}: must be [mean, sd, n] with sd > 0 and n >= 2, got {v!r}")
                    row.update({f"mean_{g}": float(v[0]), f"sd_{g}": float(v[1]), f"n_{g}": float(v[2])})
                rows.append(row)
        source = "experiment.published"
    if not rows:
        raise ConfigError("experiment.published: no published estimate to invert (the study has no table5; give "
                          "experiment.published.<outcome>.<visit>.{treated,control}: [mean, sd, n])")
    out = pd.DataFrame(rows)
    out["mcid"] = [float(outcomes[o]["mcid"]["value"]) for o in out["outcome"]]
    out["source"] = source
    return out


def analysed_published(cfg: Mapping[str, Any], alpha: float) -> pd.DataFrame:
    """published_estimates with their naive intervals, for the outcomes and visits the method
    analyses (method.outcomes.names / times; empty: all)."""
    pub = naive_columns(published_estimates(cfg), alpha)
    out = cfg["method"]["outcomes"]
    names, times = out.get("names") or list(pub["outcome"]), out.get("times") or list(pub["timepoint"])
    return pub[pub["outcome"].isin(names) & pub["timepoint"].isin(times)].reset_index(drop=True)


def naive_columns(pub: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The published difference and its Welch t-interval, in outcome and MCID units."""
    d = pub.apply(lambda r: M.naive_interval(r.mean_treated, r.sd_treated, r.n_treated, r.mean_control,
                                             r.sd_control, r.n_control, alpha), axis=1, result_type="expand")
    d.columns = ["published_diff", "naive_low", "naive_high"]
    out = pd.concat([pub.reset_index(drop=True), d], axis=1)
    out["published_z"] = signed_z(out["p"], np.sign(out["published_diff"]))
    for c in ("published_diff", "naive_low", "naive_high"):
        out[f"{c}_mcid"] = out[c] / out["mcid"]
    return out


# ----------------------------------------------------------------------------- the job

class CompatibilityJob(PsmJob):
    """The matched design over θ x U, summarised as the estimator's distribution per cell."""

    name = "compatibility"
    simulate = staticmethod(compat_chunk)

    def check(self, conds: list[Condition]) -> None:
        grid = conds[0].factors
        if THETA not in grid:
            raise ConfigError(f"experiment.grid: must vary {THETA} (the true effects θ to invert over)")
        theta = sorted({c.factors[THETA] for c in conds})
        if len(theta) < 3:
            raise ConfigError(f"experiment.grid.{THETA}: at least three true effects are needed, got {theta}")
        analyses = list(conds[0].cfg["method"]["outcomes"]["analyses"])
        if ESTIMATOR not in analyses:
            raise ConfigError(f"method.outcomes.analyses: must include {ESTIMATOR!r} (the published estimator); "
                              f"got {analyses}")
        alpha = self.alpha
        pub = analysed_published(conds[0].cfg, alpha)
        if pub.empty:
            raise ConfigError("experiment.published: none of the published estimates is an outcome and visit the "
                              "method analyses (method.outcomes.names, method.outcomes.times)")
        outside = pub[(pub["naive_low_mcid"] < theta[0]) | (pub["naive_high_mcid"] > theta[-1])]
        if len(outside):
            r = outside.iloc[0]
            raise ConfigError(
                f"experiment.grid.{THETA}: the grid [{theta[0]:g}, {theta[-1]:g}] (MCID units) cannot bracket the "
                f"interval for {r.outcome} {r.timepoint}: its naive {100 * (1 - alpha):g} % interval alone spans "
                f"[{r.naive_low_mcid:.2f}, {r.naive_high_mcid:.2f}]; widen the grid")
        self.priors()
        self.draws()

    @property
    def alpha(self) -> float:
        return float(self.cfg.experiment.get("alpha", 0.05))

    def priors(self) -> dict[str, dict]:
        node = self.cfg.experiment.get("bias_analysis") or {}
        priors = OmegaConf.to_container(node.get("priors"), resolve=True) if node.get("priors") is not None else {}
        allowed = {"treatment_log_or": U_OR, "outcome_effect": U_EFFECT}
        out = {}
        for k, spec in priors.items():
            if k not in allowed:
                raise ConfigError(f"experiment.bias_analysis.priors.{k}: unknown bias parameter; allowed: "
                                  f"{sorted(allowed)}")
            try:
                out[k] = M.check_prior(spec, f"experiment.bias_analysis.priors.{k}")
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return out

    def draws(self) -> int:
        n = (self.cfg.experiment.get("bias_analysis") or {}).get("draws", 20000)
        if isinstance(n, bool) or not isinstance(n, int) or n < 100:
            raise ConfigError(f"experiment.bias_analysis.draws: a whole number >= 100, got {n!r}")
        return n

    def plan(self, cond: Condition):
        """The matched design with θ requested per outcome and visit (clipped where the scale's
        bounds do not allow it), and the θ each outcome and visit actually gets."""
        from dataclasses import replace

        from sim.cohort.calibrate import calibrated
        from sim.jobs.conditions import matched_plan

        cfg = {**cond.cfg, "cohort": dict(cond.cfg["cohort"])}
        model = calibrated(study_of(cfg), cfg["cohort"])
        effects = clipped_effects(model, float(cfg["cohort"][THETA.split(".")[1]]))
        cfg["cohort"]["effect_mcid"] = 0.0
        cfg["cohort"]["effect"] = {o: {t: v for (o2, t), v in effects.items() if o2 == o} for o, _ in effects}
        design, spec = matched_plan(replace(cond, cfg=cfg))
        return design, spec, {k: v / model.mcid[k[0]] for k, v in effects.items()}

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        """Per cell, outcome and visit: the estimator's mean, SD and tail quantiles, the mean true
        effect among the matched treated, and the Monte Carlo p-value of the published estimate."""
        pub = analysed_published(conds[0].cfg, self.alpha).set_index(["outcome", "timepoint"])
        parts = []
        for rows in run.condition_replicates():
            est = rows[rows["analysis"] == ESTIMATOR]
            for (o, t), g in est.groupby(["outcome", "timepoint"], sort=False):
                x = g["estimate"].to_numpy(float)
                x = x[~np.isnan(x)]
                n = x.size
                base = {"condition": int(rows["condition"].iloc[0]), "outcome": o, "timepoint": t, "analysis": ESTIMATOR}
                if not n:
                    continue
                sd = float(x.std(ddof=1)) if n > 1 else math.nan
                truth = g["truth_matched"].to_numpy(float)
                measures = [("theta_mcid", float(g["theta_mcid"].iloc[0]), math.nan),
                            ("mean_estimate", x.mean(), sd / math.sqrt(n)), ("sd_estimate", sd, sd / math.sqrt(2 * (n - 1))),
                            ("q_low_estimate", float(np.quantile(x, self.alpha / 2)), math.nan),
                            ("q_high_estimate", float(np.quantile(x, 1 - self.alpha / 2)), math.nan),
                            ("true_matched", float(np.nanmean(truth)), float(np.nanstd(truth, ddof=1) / math.sqrt(n)))]
                if (o, t) in pub.index:
                    p, se = M.mc_pvalue(x, float(pub.loc[(o, t), "published_diff"]))
                    measures.append(("p_published", p, se))
                parts.append(pd.DataFrame([{**base, "measure": m, "value": float(v), "mcse": float(s), "n": n}
                                           for m, v, s in measures]))
        return tidy(parts or [pd.DataFrame(columns=["condition"])], conds)

    def finish(self, result: ExperimentResult) -> None:
        from sim.report.compatibility import analyse_grid

        result.tables.update(analyse_grid(
            result, analysed_published(result.conditions[0].cfg, self.alpha), reps=self.reps(), alpha=self.alpha,
            seed=int(self.cfg.seed), priors=self.priors(), n_draws=self.draws(), rank_test=RANK_TEST,
            treated=study_of(result.conditions[0].cfg).words["treated"]))

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report.compatibility import write_compatibility_outputs

        write_compatibility_outputs(self.cfg, result, out_dir)
        return 0

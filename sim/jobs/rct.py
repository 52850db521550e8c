"""Monte Carlo planning of a randomised trial (experiment rct_planning): power, type-I error, bias
and coverage of the usual analyses of a 1:1 trial of decompression, and the sample size per arm
they need, beside the closed-form answers of sim.power.

Data-generating mechanism: the calibrated Tominaga 2025 outcome model (the same one the matched
design uses) without confounding (cohort.confounding = 0). Per replicate a cohort of
2 x n_per_arm patients is drawn and exactly n_per_arm of them are RANDOMISED to decompression with
the replicate's RNG (the generator's own `treated` is ignored). Because the generator carries both
potential outcomes, a patient's observed change is delta1 if randomised to treatment and delta0
otherwise; the observed follow-up value is pre + direction x change.

Deaths before a visit and missed visits (`experiment.death_strategy`, sim.methods.trial.DEATH_STRATEGIES):
  complete_case (default): every analysis uses the patients seen at the visit (alive and not
      missing it; the generator makes their outcome missing otherwise). In ICH E9(R1) terms a
      'while alive and seen' strategy: it estimates the effect among the patients seen, who
      started healthier, so it differs from the effect among all survivors (`truth`) even in a
      randomised trial (the run's `bias`).
  worst_rank: for the rank test only: every patient without a change (dead, or alive but not
      seen) gets the worst observed change at that visit (over both arms) minus 1, so they rank
      below every patient seen and the Wilcoxon test uses every randomised patient. The t-tests
      and ANCOVA stay complete case (a mean of an arbitrary worst value has no meaning).
The `composite` analysis is a composite strategy (death is part of the outcome: deaths rank below
every change, earlier lower): another estimand, diluted by deaths the treatment does not change.

Analyses per outcome and time (`experiment.analyses`, the registry sim.methods.trial.ANALYSES):
ttest (Student), welch, ancova (follow-up on arm + baseline), wilcoxon and composite (p only).
Power is the benefit-direction rejection rate (`rejection_benefit`: significant AND in favour of
treatment); `rejection` counts both directions (the type-I error of the two-sided test).

Truth (per replicate): the cohort's ATE on the change among patients alive at the visit, from the
potential outcomes (`truth`); `truth_pop` is the population effect the design was solved for.

Sample size (sample_size.csv, report.md): per outcome x time, effect > 0, target power and
analysis, the simulated n per arm reaching the target with a 95 % interval (sim.power.solve: a
probit GLM of the benefit-direction rejection counts on sqrt(n) over the grid, solved at the
target, Fieller interval; not reported, with the reason in `notes`, when the solution lies outside
the grid or power does not increase with n) beside the closed forms of sim.power (t, ANCOVA,
Wilcoxon and the composite after Noether 1987), whose inputs come from one reference cohort of
experiment.reference_n patients drawn from the same design (reference.csv). The same two unrounded
(closed_vs_simulated.csv), and the largest gaps checked by simulating power directly at the
closed-form n rounded down and up (direct_checks.csv; `experiment.direct_checks`: how many gaps,
how many trials each).

Cost: a replicate (cohort of 2 x n_per_arm, 8 outcome-times x 5 analyses) takes ~8-12 ms; the
default grid (30 conditions) at 300 reps takes about a minute of wall time on 2 cores; the direct
checks (3 gaps x 2 n x 20 000 trials at the small n where the gaps are) about a minute more.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sim import power as PW
from sim.cohort.generate import Design, generate
from sim.jobs.config import ConfigError, _is_int, _is_num
from sim.engine import RunResult, condition_stream, per_replicate, replicate_rng
from sim.jobs.contract import ExperimentResult, Job
from sim.jobs.conditions import Condition, condition_key, design_of, study_of, where
from sim.jobs.tidy import BY, directional_rows, failure_rows, mean_rows, tidy
from sim.methods.trial import ANALYSES, DEATH_STRATEGIES, TrialSpec, analyse_trial, randomise
from sim.jobs.performance import summarise

GRID_KEYS = ("experiment.n_per_arm", "cohort.effect_mcid")
DEFAULT_TARGETS = (0.8, 0.9)
REFERENCE_SEED = 7_774_411  # the reference cohorts' stream: (REFERENCE_SEED, digest of the effect)
CHECK_SEED = 7_774_412  # the direct checks' streams: (CHECK_SEED, digest of what is checked)
DIRECT_CHECKS = {"top": 3, "reps": 20_000}  # experiment.direct_checks: largest gaps checked, trials per n


def spec_of(cfg: Mapping[str, Any]) -> TrialSpec:
    """The trial settings of one (resolved, plain) condition config; ConfigError if invalid."""
    exp = cfg["experiment"]
    npa = exp.get("n_per_arm")
    if not _is_int(npa) or npa < 5:
        raise ConfigError(f"experiment.n_per_arm: must be a whole number >= 5, got {npa!r}")
    strategy = exp.get("death_strategy", "complete_case")
    if strategy not in DEATH_STRATEGIES:
        raise ConfigError(f"experiment.death_strategy: got {strategy!r}; allowed: {list(DEATH_STRATEGIES)}")
    analyses = tuple(exp.get("analyses") or ANALYSES)
    bad = [a for a in analyses if a not in ANALYSES]
    if bad:
        raise ConfigError(f"experiment.analyses: unknown {bad}; allowed: {list(ANALYSES)}")
    out = cfg["method"]["outcomes"]
    return TrialSpec(npa, tuple(out.get("names") or ()), tuple(out.get("times") or ()), analyses, strategy,
                     float(out.get("alpha", 0.05)))


def rct_replicate(plan: tuple[Design, TrialSpec], rng: np.random.Generator) -> pd.DataFrame:
    """One trial: a cohort of 2 x n_per_arm, randomised, every outcome x time x analysis."""
    design, spec = plan
    cohort = generate(design, rng)
    treated = randomise(cohort.n, spec.n_per_arm, rng)
    directions = {o.name: o.direction() for o in design.model.outcomes}
    return pd.DataFrame(analyse_trial(cohort, treated, spec, directions, design.model.visit_days, design.effect))


def summary_table(replicates: pd.DataFrame, failures: pd.DataFrame, conds: list[Condition], alpha: float,
                  reps: int) -> pd.DataFrame:
    """Tidy table as the psm job's: one column per grid factor, outcome, timepoint, analysis,
    measure, value, mcse, n. Bias/MSE/coverage are against the cohort's ATE (`truth`);
    `rejection` is the two-sided test's rejection rate (the type-I error at effect 0), and
    `rejection_benefit` / `rejection_harm` split it by the arm the result favours: power to
    detect a benefit is rejection_benefit."""
    main = summarise(replicates, BY, truth="truth", alpha=alpha,
                     extra_means=("n_used_treated", "n_used_control", "n_deaths", "n_unseen", "sd_change"))
    truths = mean_rows(replicates, {"truth": "true_ate", "truth_pop": "true_ate_population"})
    return tidy([main, *directional_rows(replicates, alpha), *truths, failure_rows(failures, conds, reps)], conds)


class RctJob(Job):
    """A randomised 1:1 trial per replicate: cohort -> randomisation -> the trial analyses."""

    name = "rct"
    simulate = per_replicate(rct_replicate)

    def __init__(self, cfg):
        super().__init__(cfg)
        self._solved: dict[str, Design] = {}

    # ----------------------------------------------------------------- settings
    @property
    def targets(self) -> list[float]:
        return [float(p) for p in (self.cfg.experiment.get("power_targets") or DEFAULT_TARGETS)]

    @property
    def reference_n(self) -> int:
        return self.cfg.experiment.get("reference_n", 200_000)

    def check(self, conds: list[Condition]) -> None:
        grid = self.cfg.experiment.get("grid") or {}
        missing = [k for k in GRID_KEYS if k not in grid]
        if missing:
            raise ConfigError(f"experiment.grid: the rct job needs {list(GRID_KEYS)} in its grid; missing {missing}")
        for c in conds:
            try:
                spec_of(c.cfg)
            except ConfigError as e:  # name the grid condition when the grid varies the key
                key = str(e).split(":", 1)[0]
                raise ConfigError(f"{e}{where(c) if key in c.factors else ''}") from None
        targets = list(self.cfg.experiment.get("power_targets") or DEFAULT_TARGETS)
        if any(not _is_num(p) or not 0 < p < 1 for p in targets):
            raise ConfigError(f"experiment.power_targets: each must be a number in (0, 1), got {targets}")
        if not _is_int(self.reference_n) or self.reference_n < 1000:
            raise ConfigError(f"experiment.reference_n: must be a whole number >= 1000, got {self.reference_n!r}")
        self.direct_settings()
        if not isinstance(self.cfg.experiment.get("write_replicates", False), bool):
            raise ConfigError("experiment.write_replicates: must be true or false, got "
                              f"{self.cfg.experiment.get('write_replicates')!r}")

    def direct_settings(self) -> dict[str, int]:
        """experiment.direct_checks: {top: gaps checked (0 = none), reps: trials per n >= 100}."""
        got = self.cfg.experiment.get("direct_checks")
        got = {} if got is None else got
        if not hasattr(got, "items") or set(got) - set(DIRECT_CHECKS):
            raise ConfigError(f"experiment.direct_checks: a mapping with keys {list(DIRECT_CHECKS)}, got {got!r}")
        out = {**DIRECT_CHECKS, **dict(got)}
        if not _is_int(out["top"]) or out["top"] < 0:
            raise ConfigError(f"experiment.direct_checks.top: must be a whole number >= 0, got {out['top']!r}")
        if not _is_int(out["reps"]) or out["reps"] < 100:
            raise ConfigError(f"experiment.direct_checks.reps: must be a whole number >= 100, got {out['reps']!r}")
        return out

    # ----------------------------------------------------------------- plan / summarise
    def plan(self, cond: Condition) -> tuple[Design, TrialSpec]:
        """The cohort design at n = 2 x n_per_arm and the trial spec. The design is solved once
        per cohort setting (the effect solve does not depend on n) and resized."""
        spec = spec_of(cond.cfg)
        cohort = {**cond.cfg["cohort"], "n": 2 * spec.n_per_arm}
        key = condition_key({k: v for k, v in cohort.items() if k != "n"})
        if key not in self._solved:
            self._solved[key] = design_of(study_of(cond.cfg), cohort)
        model = self._solved[key].model
        spec = dataclasses.replace(spec, outcomes=spec.outcomes or tuple(o.name for o in model.outcomes),
                                   times=spec.times or tuple(model.follow_up), baseline=model.baseline)
        for key_name, names, allowed in (("method.outcomes.names", spec.outcomes, [o.name for o in model.outcomes]),
                                         ("method.outcomes.times", spec.times, list(model.follow_up))):
            bad = [x for x in names if x not in allowed]
            if bad:
                raise ConfigError(f"{key_name}: unknown {bad[0]!r}; allowed: {allowed}")
        return dataclasses.replace(self._solved[key], n=2 * spec.n_per_arm), spec

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        return summary_table(run.replicates, run.failures, conds, spec_of(conds[0].cfg).alpha, self.reps())

    # ----------------------------------------------------------------- sample size
    def references(self, conds: list[Condition]) -> dict[float, pd.DataFrame]:
        """Reference quantities per non-zero effect in the grid (one large cohort each, fixed seed)."""
        out: dict[float, pd.DataFrame] = {}
        for c in conds:
            eff = float(c.cfg["cohort"].get("effect_mcid", 0.0))
            if eff == 0 or eff in out:
                continue
            design, spec = self.plan(c)
            rng = replicate_rng(int(self.cfg.seed), (REFERENCE_SEED, *condition_stream({"effect_mcid": eff})), 0)
            out[eff] = PW.reference_quantities(design, self.reference_n, rng, spec.outcomes, spec.times)
        return out

    def finish(self, result: ExperimentResult) -> None:
        """result.tables: `reference` (the closed forms' inputs per effect), `sample_size`, the
        unrounded `closed_vs_simulated` and the `direct_checks` of its largest gaps."""
        conds = result.conditions
        spec = spec_of(conds[0].cfg)
        refs = self.references(conds)
        result.tables["reference"] = (pd.concat([r.assign(effect_mcid=e) for e, r in refs.items()], ignore_index=True)
                                      if refs else pd.DataFrame())
        outcomes = study_of(conds[0].cfg).outcomes
        kw = dict(death_strategy=spec.death_strategy)
        fits = PW.fit_curves(result.summary, refs, spec.analyses, self.targets) if refs else {}
        result.tables["sample_size"] = PW.sample_size_table(result.summary, refs, spec.analyses, self.targets,
                                                            spec.alpha, outcomes, fits=fits, **kw)
        pairs = [(an, c) for an, c in PW.GAP_PAIRS if an in spec.analyses]
        cmp = PW.comparison_table(result.summary, refs, self.targets, spec.alpha, outcomes, pairs=pairs, fits=fits,
                                  **kw)
        result.tables["closed_vs_simulated"] = cmp
        result.tables["direct_checks"] = self.direct_checks(conds, cmp)
        result.tables["effect_units"] = self.effect_units(conds, refs)

    def direct_checks(self, conds: list[Condition], cmp: pd.DataFrame) -> pd.DataFrame:
        """The power simulated directly at the closed-form n (rounded down and up) of the largest
        gaps (sim.power.check), each check on its own stream of the run's seed."""
        from sim.power.check import direct_checks

        settings = self.direct_settings()
        by_effect = {float(c.cfg["cohort"].get("effect_mcid", 0.0)): c for c in conds}

        def rng_for(key) -> np.random.Generator:
            return replicate_rng(int(self.cfg.seed), (CHECK_SEED, *condition_stream(dict(key))), 0)

        return direct_checks(cmp, lambda eff: self.plan(by_effect[eff]), rng_for, top=settings["top"],
                             reps=settings["reps"])

    def effect_units(self, conds: list[Condition], refs: dict[float, pd.DataFrame]) -> pd.DataFrame:
        """One MCID in SD units of the change per outcome x time (sim.report.units) and, with
        reference quantities, the closed-form n per arm for one MCID beside that for 0.5 SD
        (sim.power.standardised_n_table)."""
        from sim.report.units import effect_units

        design, spec = self.plan(conds[0])
        units = effect_units(design.model, spec.outcomes, spec.times)
        return PW.standardised_n_table(refs, units, self.targets, spec.alpha) if refs else units

    # ----------------------------------------------------------------- files
    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report import rct as R
        from sim.report.montecarlo import atomic_csv, atomic_text, write_tables
        from sim.report.settings import draws_figures
        from sim.report.units import UNITS_FILE

        spec = spec_of(result.conditions[0].cfg)
        # off by default: the chunks keep every replicate anyway
        write_tables(result, out_dir, replicates=self.cfg.experiment.get("write_replicates", False))
        refs, ss = result.tables["reference"], result.tables["sample_size"]
        if len(refs):
            atomic_csv(refs, out_dir / "reference.csv")
        atomic_csv(ss, out_dir / "sample_size.csv")
        cmp, checks = result.tables["closed_vs_simulated"], result.tables["direct_checks"]
        atomic_csv(cmp, out_dir / R.COMPARISON_FILE)
        atomic_csv(checks, out_dir / R.CHECKS_FILE)
        units = result.tables["effect_units"]
        atomic_csv(units, out_dir / UNITS_FILE)
        paths = R.figures(result.summary, refs, spec, self.targets, out_dir) if draws_figures(self.cfg) else []
        atomic_text(R.report_text(self.cfg, result, spec, self.reference_n, paths, ss, units, cmp, checks),
                    out_dir / "report.md")
        return 0

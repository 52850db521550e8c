"""Monte Carlo study of the matched design (caliper_sweep, confounding_sweep, sample_size):
generate a cohort, run the paper's analysis, summarise performance with MCSEs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


import numpy as np
import pandas as pd

from sim.cohort.generate import Cohort, Design, generate, generate_batch
from sim.jobs.config import ConfigError
from sim.engine import ChunkOutput, ReplicateFailure, RunResult, failure_reason, per_replicate
from sim.jobs.contract import ExperimentResult, Job
from sim.jobs.conditions import Condition, matched_plan, short_names
from sim.jobs.tidy import BY, directional_rows, failure_rows, mean_rows, quantile_rows, tidy
from sim.methods.outcomes import TAGS
from sim.methods.pipeline import ESTIMANDS, MethodSpec, analyse
from sim.methods.sensitivity import QUANTILE_COLUMNS, SENSITIVITY_ANALYSES
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES
from sim.jobs.performance import summarise


EXTRA_MEANS = ("n_pairs", "share_treated_matched", "max_abs_smd", "mean_abs_smd",
               *(c for cols in SENSITIVITY_ANALYSES.values() for c in cols),
               *(c for cols in TRUNCATION_ANALYSES.values() for c in cols))


def psm_replicate(plan: tuple[Design, MethodSpec], rng: np.random.Generator) -> pd.DataFrame:
    """One replicate, one cohort at a time: the reference the batched chunk is tested against."""
    design, spec = plan
    return analyse_cohort(generate(design, rng), spec, rng)


def analyse_cohort(cohort: Cohort, spec: MethodSpec, rng: np.random.Generator) -> pd.DataFrame:
    try:
        rows = analyse(cohort.columns, cohort.potential_deltas, spec, rng, cohort.seen)
    except ValueError as e:
        raise ReplicateFailure(str(e)) from None
    if rows and rows[0]["n_pairs"] == 0:
        raise ReplicateFailure("no matched pairs within the caliper")
    return pd.DataFrame(rows)


def psm_chunk(plan: tuple[Design, MethodSpec], rngs: Sequence[np.random.Generator]) -> ChunkOutput:
    """A chunk of replicates of one condition: the cohorts generated in one pass and analysed by
    sim.methods.batched where it covers the spec (psm_replicate's rows, to ~1e-12), otherwise
    replicate by replicate. A replicate the batched analysis leaves aside (an awkward PS fit) is
    analysed by the reference on its own cohort, so each replicate's rows never depend on the chunk."""
    from sim.methods import batched  # numba: imported by the workers that simulate, not by the CLI

    design, spec = plan
    if batched.unsupported(spec) or not rngs:
        return per_replicate(psm_replicate)(plan, rngs)
    B, n = len(rngs), design.n
    cohort = generate_batch(design, rngs, only=(*spec.ps_columns, *spec.balance_covariates, *spec.exact))
    rows, failures, reference = batched.analyse_batch(
        {k: v.reshape(B, n) for k, v in cohort.columns.items()},
        {k: (v0.reshape(B, n), v1.reshape(B, n)) for k, (v0, v1) in cohort.potential_deltas.items()},
        {t: (s0.reshape(B, n), s1.reshape(B, n)) for t, (s0, s1) in cohort.seen.items()}, spec)
    frames = [rows] if len(rows) else []
    for b in reference:
        try:
            out = analyse_cohort(cohort.take(slice(b * n, (b + 1) * n)), spec, rngs[b])
        except Exception as exc:  # noqa: BLE001 - as per_replicate: a failed replicate is data
            failures[b] = failure_reason(exc)
            continue
        frames.append(out.assign(replicate=b)[["replicate", *out.columns]])
    if not frames:
        return ChunkOutput(pd.DataFrame({"replicate": pd.Series([], dtype="int64")}), failures)
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if reference:
        rows = rows.sort_values("replicate", kind="stable", ignore_index=True)
    return ChunkOutput(rows, failures)


def summary_table(replicates: pd.DataFrame | RunResult, failures: pd.DataFrame, conds: list[Condition],
                  estimand: str, alpha: float, reps: int, by_condition: bool = True,
                  extra_means: tuple[str, ...] = ()) -> pd.DataFrame:
    """Tidy performance table: one column per grid factor, then outcome, timepoint, analysis,
    measure, value, mcse, n. Bias/MSE/coverage are against `estimand`; against each other
    estimand they carry its name as a suffix (`bias_att`, ...); `true_<estimand>` is the mean truth.
    Computed condition by condition (by_condition; a RunResult's rows are read a condition at a
    time), so its working memory is one condition's: every measure is per condition, and when the
    conditions give the same tables the rows are those of the whole-table computation, stacked
    (tests/test_psm_outputs.py); otherwise it is done whole."""
    if isinstance(replicates, RunResult):
        frames, whole = replicates.condition_replicates(), lambda: replicates.replicates
    else:
        frames, whole = (rows for _, rows in replicates.groupby("condition", sort=True)), lambda: replicates
    per = [measure_tables(rows, estimand, alpha, extra_means) for rows in frames] if by_condition else None
    if per == []:  # every replicate failed: the summary says so, and why is in failures.csv
        return tidy([failure_rows(failures, conds, reps)], conds)
    if per and len({tuple(tuple(t["measure"].unique()) for t in tables) for tables in per}) == 1:
        parts = [pd.concat(tables, ignore_index=True) for tables in zip(*per)]
    else:
        rows = whole()
        if rows.empty:
            return tidy([failure_rows(failures, conds, reps)], conds)
        parts = measure_tables(rows, estimand, alpha, extra_means)
    return tidy([*parts, failure_rows(failures, conds, reps)], conds)


#: experiment.estimand "own": each analysis against the estimand it targets (an estimator's declared
#: one, the matched treated for the analyses of the paper's pairs), with the others alongside
OWN = "own"


def own_truth(replicates: pd.DataFrame) -> np.ndarray:
    """Each row's truth under its analysis' own estimand."""
    from sim.methods.estimators import ESTIMAND_OF

    target = replicates["analysis"].map(lambda a: ESTIMAND_OF.get(a) or "matched").to_numpy()
    out = np.full(len(replicates), np.nan)
    for name, col in ESTIMANDS.items():
        hit = target == name
        if hit.any():
            out[hit] = replicates[col].to_numpy(dtype=float)[hit]
    return out


def measure_tables(replicates: pd.DataFrame, estimand: str, alpha: float,
                   extra_means: tuple[str, ...] = ()) -> list[pd.DataFrame]:
    """summary_table's measures, a table per kind, before the grid factors are attached;
    `extra_means`: more per-row columns averaged (experiment.extra_means, e.g. the patients used)."""
    if estimand == OWN:
        replicates = replicates.assign(truth_own=own_truth(replicates))
    truths = mean_rows(replicates, {col: col.replace("truth_", "true_") for col in ESTIMANDS.values()})
    off_scale = replicates["analysis"].isin([a for a, t in TAGS.items() if t.estimate and t.scale != "difference"])
    if off_scale.any():  # an odds ratio is not on the true effects' scale: no bias, MSE or coverage against them
        replicates = replicates.assign(**{c: replicates[c].where(~off_scale) for c in (*ESTIMANDS.values(), "truth_own")
                                          if c in replicates})
    main = summarise(replicates, BY, truth=ESTIMANDS.get(estimand, "truth_own"), alpha=alpha,
                     extra_means=(*EXTRA_MEANS, *extra_means))
    others = []
    for name, col in ESTIMANDS.items():
        if name != estimand:
            o = summarise(replicates, BY, truth=col, se=None, p_value=None, extra_means=())
            o = o[o["measure"].isin(["bias", "mse", "coverage"])].copy()
            others.append(o.assign(measure=o["measure"] + f"_{name}"))
    quantiles = quantile_rows(replicates, QUANTILE_COLUMNS)
    directed = directional_rows(replicates, alpha)
    return [main, *directed, *others, *truths, *quantiles]


class PsmJob(Job):
    """The matched design: cohort -> PS -> matching -> outcome analyses, per replicate."""

    name = "psm"
    simulate = staticmethod(psm_chunk)

    def check(self, conds: list[Condition]) -> None:
        from sim.report.settings import check_report_settings

        if self.estimand not in (*ESTIMANDS, OWN):
            raise ConfigError(f"experiment.estimand: got {self.estimand!r}; allowed: {[*ESTIMANDS, OWN]}")
        extra = self.cfg.experiment.get("extra_means") or []
        allowed = ("n_used_treated", "n_used_control")
        bad = [c for c in extra if c not in allowed]
        if bad or isinstance(extra, str):
            raise ConfigError(f"experiment.extra_means: got {list(extra) if not isinstance(extra, str) else extra!r}; "
                              f"allowed: a list of {list(allowed)}")
        names = short_names(list(conds[0].factors))
        check_report_settings(self.cfg, [names[f] for f in conds[0].factors])

    def plan(self, cond: Condition) -> tuple[Design, MethodSpec]:
        return matched_plan(cond)

    @property
    def estimand(self) -> str:
        return str(self.cfg.experiment.get("estimand", "matched"))

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        alpha = float(self.cfg.method.outcomes.get("alpha", 0.05))
        extra = tuple(self.cfg.experiment.get("extra_means") or ())
        return summary_table(run, run.failures, conds, self.estimand, alpha, self.reps(), extra_means=extra)

    def finish(self, result: ExperimentResult) -> None:
        """result.tables: `key_table` and `effect_units`, what key_table.csv and effect_units.csv
        hold, so that a notebook's run (no directory) has them too."""
        from sim.report.montecarlo import psm_tables

        result.tables.update(psm_tables(self.cfg, result, self.estimand))

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        from sim.report.montecarlo import write_psm_outputs

        write_psm_outputs(self.cfg, result, out_dir, self.estimand)
        return 0

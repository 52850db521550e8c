"""One job contract and one runner for every experiment (SimDesign's generate/analyse/summarise).

A job is chosen by `experiment.job` (a name in JOBS, or a dotted path `package.module:Class` for a
user's own job). It has four steps, and `run` drives them the same way for every job:

  plan(condition)        once per condition, before any replicate: solve the design, validate;
                         returns a picklable plan that is handed to the workers as it is;
  simulate(plan, rngs)   a chunk of replicates of one condition from their generators
                         (chunk-level, so a job may compute them as (B x N) arrays); a
                         module-level function returning `sim.engine.ChunkOutput`;
  summarise(run, conds)  the tidy performance table (summary.csv);
  report(result, dir)    files: tables, figures, report.md.

The engine (`sim.engine.run_chunks`) knows nothing about propensity scores: it seeds, chunks,
stores and resumes.
"""

from __future__ import annotations

import functools
import importlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim.jobs.config import ConfigError
from sim.engine import ChunkOutput, RunResult, condition_stream, conditions_frame, run_chunks
from sim.jobs.conditions import Condition, conditions, fingerprint, short_names

CRN_DEFAULT = ("cohort.effect_mcid", "cohort.effect_sd", "cohort.effect")

JOBS = {
    "austin": "sim.jobs.austin:AustinJob",
    "compatibility": "sim.jobs.compatibility:CompatibilityJob",
    "psm": "sim.jobs.psm:PsmJob",
    "rct": "sim.jobs.rct:RctJob",
    "reproduce": "sim.jobs.reproduce:ReproduceJob",
}


@dataclass(repr=False)
class ExperimentResult:
    """What a run returns: tidy tables as DataFrames (and where they were written, if anywhere).
    The replicate rows of a run with a directory stay in its chunk files until asked for:
    `replicates` reads them all (once), `condition_replicates` one condition at a time.
    `tables` holds the job's other small tables (the matched design's key_table and effect_units,
    rct_planning's sample_size, ...); its repr is a few lines saying what is where."""

    name: str
    summary: pd.DataFrame
    run: RunResult
    grid: pd.DataFrame  # one row per condition: its index and grid factor values (short names)
    failures: pd.DataFrame
    conditions: list[Condition]
    factors: list[str]  # the grid factors' column names in summary/replicates
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # job-specific (key_table, sample_size, ...)
    out_dir: Path | None = None
    n_computed_chunks: int = 0
    n_resumed_chunks: int = 0
    exit_code: int = 0  # non-zero when a check of the results failed (reproduce_paper's targets)
    reps: int | None = None  # replicates per condition

    def __repr__(self) -> str:
        n = len(self.conditions)
        reps = f" x {self.reps:,} replicates" if self.reps is not None else ""
        total = f" of {n * self.reps:,}" if self.reps is not None else ""
        levels = [f"{f} ({self.grid[f].nunique(dropna=False)})" for f in self.factors if f in self.grid]
        measures = [m for m in dict.fromkeys(self.summary["measure"]) if m != "n_failed"] \
            if "measure" in self.summary else []
        shown = ", ".join(measures[:6]) + (f", ... ({len(measures)} measures)" if len(measures) > 6 else "")
        tables = ", ".join(f"{k} ({len(v)} rows)" if isinstance(v, pd.DataFrame) else k for k, v in self.tables.items())
        return "\n".join([
            f"ExperimentResult {self.name!r}: {n} condition{'s' * (n != 1)}{reps}; "
            f"failed replicates: {len(self.failures):,}{total} (.failures)",
            f"  grid: {' x '.join(levels) if levels else 'one condition'} (.grid)",
            f"  summary: {len(self.summary):,} rows" + (f"; measures: {shown}" if shown else ""),
            f"  tables: {tables or 'none'} (.tables)",
            f"  files: {self.out_dir}" if self.out_dir is not None else "  files: none (run without out_dir)",
            "  rows per replicate: .replicates, or .condition_replicates() one condition at a time",
        ])

    @functools.cached_property
    def replicates(self) -> pd.DataFrame:
        """Every replicate's rows, the grid factors first."""
        return self._with_factors(self.run.replicates)

    def condition_replicates(self, where: Callable[[pd.DataFrame], pd.Series] | None = None):
        """The rows of each condition (of those whose grid row `where` selects), one at a time."""
        wanted = None if where is None else set(self.grid.loc[where(self.grid), "condition"].tolist())
        for rows in self.run.condition_replicates(wanted):
            yield self._with_factors(rows)

    def _with_factors(self, rows: pd.DataFrame) -> pd.DataFrame:
        return self.grid.merge(rows, on="condition", how="right")


class Job:
    """Base class of the jobs; subclasses implement plan, simulate, summarise and report."""

    name: ClassVar[str] = ""
    #: module-level function (plan, rngs) -> ChunkOutput; picklable for the workers
    simulate: ClassVar[Callable[[Any, Sequence[np.random.Generator]], ChunkOutput]]

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def reps(self) -> int:
        return int(self.cfg.reps)

    def check(self, conds: list[Condition]) -> None:
        """Job-specific settings, checked before anything runs (ConfigError naming the key)."""

    def plan(self, cond: Condition) -> Any:
        raise NotImplementedError

    def summarise(self, run: RunResult, conds: list[Condition]) -> pd.DataFrame:
        raise NotImplementedError

    def finish(self, result: ExperimentResult) -> None:
        """Optional tables computed after the replicates (result.tables)."""

    def report(self, result: ExperimentResult, out_dir: Path) -> int:
        """Write the job's files; returns the exit code (non-zero: a check of the results failed)."""
        return 0


def common_random_numbers(cfg: DictConfig) -> tuple[str, ...]:
    """The grid factors whose levels share their replicates' random draws (paired contrasts):
    `experiment.common_random_numbers`, by default the true-effect factors."""
    node = cfg.experiment.get("common_random_numbers")
    if node is None:
        return CRN_DEFAULT
    keys = list(node) if not isinstance(node, str) else None
    if keys is None or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"experiment.common_random_numbers: must be a list of dotted config keys, got {node!r}")
    missing = [k for k in keys if OmegaConf.select(cfg, k, default="__missing__") == "__missing__"]
    if missing:
        raise ConfigError(f"experiment.common_random_numbers: {missing[0]!r} is not a config key")
    return tuple(keys)


def job_class(name: Any) -> type[Job]:
    target = JOBS.get(name, name)
    if not isinstance(target, str) or ":" not in target:
        raise ConfigError(f"experiment.job: got {name!r}; allowed: {sorted(JOBS)} or 'package.module:JobClass'")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"experiment.job: cannot import {target!r} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise ConfigError(f"experiment.job: {target!r} is not a sim.jobs.contract.Job")
    return cls


def prepare(cfg: DictConfig) -> tuple[Job, list[Condition], list[Any]]:
    """Everything that can fail before a replicate runs: the job, the conditions, the plans."""
    job = job_class(cfg.experiment.get("job"))(cfg)
    common_random_numbers(cfg)
    conds = conditions(cfg)
    job.check(conds)
    return job, conds, [job.plan(c) for c in conds]


def run(cfg: DictConfig, out_dir: Path | None = None, *, write: bool = True,
        prepared: tuple[Job, list[Condition], list[Any]] | None = None) -> ExperimentResult:
    """Plan -> simulate (chunked, resumable) -> summarise -> report. Without `out_dir` the chunks
    go to a temporary directory and nothing is written."""
    job, conds, plans = prepared or prepare(cfg)
    if out_dir is None:  # the rows are kept in memory: the chunk files go with the directory
        with tempfile.TemporaryDirectory(prefix="sim-run-") as tmp:
            return _run(job, conds, plans, Path(tmp), write=False, keep_rows=True)
    return _run(job, conds, plans, Path(out_dir), write=write, keep_rows=False)


def _run(job: Job, conds: list[Condition], plans: list[Any], out_dir: Path, write: bool,
         keep_rows: bool) -> ExperimentResult:
    cfg = job.cfg
    shared = common_random_numbers(cfg)
    rr = run_chunks(type(job).simulate, plans, [c.factors for c in conds], reps=job.reps(), seed=int(cfg.seed),
                    out_dir=out_dir, n_jobs=cfg.n_jobs, chunk_size=cfg.chunk_size, progress=cfg.progress,
                    fingerprint=fingerprint(conds), name=f"{type(job).__module__}.{type(job).__name__}",
                    streams=[condition_stream(c.factors, shared) for c in conds],
                    backend=cfg.get("backend", "local"), scheduler=cfg.get("dask_scheduler"), keep_rows=keep_rows)
    names = short_names(list(conds[0].factors))
    grid = conditions_frame([c.factors for c in conds]).rename(columns=names)
    result = ExperimentResult(
        name=str(cfg.experiment.name), summary=job.summarise(rr, conds), run=rr, grid=grid,
        failures=grid.merge(rr.failures, on="condition", how="right"),
        conditions=conds, factors=[names[f] for f in conds[0].factors],
        out_dir=out_dir if write else None, n_computed_chunks=rr.n_computed_chunks,
        n_resumed_chunks=rr.n_resumed_chunks, reps=job.reps())
    job.finish(result)
    if write:
        result.exit_code = job.report(result, out_dir)
    return result

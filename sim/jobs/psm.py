"""Monte Carlo study of the matched design (caliper_sweep, confounding_sweep, sample_size):
generate a cohort, run the paper's analysis, summarise performance with MCSEs."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from sim.cohort.generate import Design, generate
from sim.config import ConfigError
from sim.engine import ReplicateFailure, conditions_frame, run_experiment
from sim.jobs.conditions import Condition, condition_key, conditions, design_of, fingerprint, short_names, study_of
from sim.methods.pipeline import MethodSpec, analyse
from sim.jobs.tidy import BY, failure_rows, mean_rows, tidy
from sim.performance import summarise

ESTIMANDS = {"att": "truth_att", "ate": "truth_ate", "matched": "truth_matched"}


def psm_replicate(factors: Mapping[str, Any], rng: np.random.Generator,
                  plans: Mapping[str, tuple[Design, MethodSpec]]) -> pd.DataFrame:
    design, spec = plans[condition_key(factors)]
    cohort = generate(design, rng)
    try:
        rows = analyse(cohort.columns, cohort.potential_deltas, spec, rng)
    except ValueError as e:
        raise ReplicateFailure(str(e)) from None
    if rows and rows[0]["n_pairs"] == 0:
        raise ReplicateFailure("no matched pairs within the caliper")
    return pd.DataFrame(rows)


def plans_for(conds: list[Condition]) -> dict[str, tuple[Design, MethodSpec]]:
    study = study_of(conds[0].cfg)
    return {condition_key(c.factors): (design_of(study, c.cfg["cohort"]), MethodSpec.from_config(c.cfg["method"]))
            for c in conds}


def summary_table(replicates: pd.DataFrame, failures: pd.DataFrame, conds: list[Condition],
                  estimand: str, alpha: float, reps: int) -> pd.DataFrame:
    """Tidy performance table: one column per grid factor, then outcome, timepoint, analysis,
    measure, value, mcse, n. Bias/MSE/coverage are against `estimand`; against each other
    estimand they carry its name as a suffix (`bias_att`, ...); `true_<estimand>` is the mean truth."""
    main = summarise(replicates, BY, truth=ESTIMANDS[estimand], alpha=alpha)
    others = []
    for name, col in ESTIMANDS.items():
        if name != estimand:
            o = summarise(replicates, BY, truth=col, se=None, p_value=None, extra_means=())
            o = o[o["measure"].isin(["bias", "mse", "coverage"])].copy()
            others.append(o.assign(measure=o["measure"] + f"_{name}"))
    truths = mean_rows(replicates, {col: col.replace("truth_", "true_") for col in ESTIMANDS.values()})
    return tidy([main, *others, *truths, failure_rows(failures, conds, reps)], conds)


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    conds = conditions(cfg)
    plans = plans_for(conds)
    result = run_experiment(partial(psm_replicate, plans=plans), [c.factors for c in conds], reps=cfg.reps,
                            seed=cfg.seed, out_dir=out_dir, n_jobs=cfg.n_jobs, chunk_size=cfg.chunk_size,
                            progress=cfg.progress, fingerprint=fingerprint(conds))
    estimand = cfg.experiment.get("estimand", "matched")
    if estimand not in ESTIMANDS:
        raise ConfigError(f"experiment.estimand: got {estimand!r}; allowed: {list(ESTIMANDS)}")
    alpha = float(cfg.method.outcomes.get("alpha", 0.05))
    grid = conditions_frame([c.factors for c in conds]).rename(columns=short_names(list(conds[0].factors)))
    replicates = grid.merge(result.replicates, on="condition", how="right")
    failures = grid.merge(result.failures, on="condition", how="right")
    summary = summary_table(result.replicates, result.failures, conds, estimand, alpha, int(cfg.reps))
    return {"summary": summary, "replicates": replicates, "failures": failures, "conditions": conds,
            "factors": [short_names(list(conds[0].factors))[f] for f in conds[0].factors],
            "estimand": estimand, "n_computed_chunks": result.n_computed_chunks,
            "n_resumed_chunks": result.n_resumed_chunks}

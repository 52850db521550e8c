"""From a composed config to experimental conditions: the grid, each condition's full settings,
and the solved cohort design. Shared by the Monte Carlo jobs."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from omegaconf import DictConfig, OmegaConf

from sim.cohort.calibrate import calibrated
from sim.cohort.generate import Design, generate, make_design
from sim.jobs.config import ConfigError, check_cohort, check_method
from sim.engine import expand_grid
from sim.methods.pipeline import MethodSpec
from sim.cohort.study import Study, load_study


@dataclass(frozen=True)
class Condition:
    index: int
    factors: dict[str, Any]  # the grid values, keyed by dotted config path
    cfg: dict[str, Any]  # the full resolved config of this condition


RUN_ONLY_KEYS = ("n_jobs", "chunk_size", "progress", "reps", "seed", "max_disk_gb", "keep_replicates", "draw_figures")
#: experiment keys that only shape the report: fixing one resumes the finished replicates
REPORT_ONLY_KEYS = ("description", "figures", "heatmaps", "key_table")


def fingerprint(conds: list["Condition"]) -> str:
    """Digest of every condition's full settings and of the package's code: the resume key, so
    that a run directory never mixes results of different settings or code."""
    cfgs = [{k: (v if k != "experiment" else {e: x for e, x in v.items() if e not in REPORT_ONLY_KEYS})
             for k, v in c.cfg.items() if k not in RUN_ONLY_KEYS} for c in conds]
    h = hashlib.sha256(json.dumps(cfgs, sort_keys=True, default=str).encode())
    for path in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def condition_key(factors: Mapping[str, Any]) -> str:
    return json.dumps(dict(factors), sort_keys=True, default=str)


def grid_of(cfg: DictConfig) -> dict[str, list]:
    node = cfg.experiment.get("grid")
    grid = {} if node is None else OmegaConf.to_container(node, resolve=True)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"experiment.grid.{key}: must be a non-empty list of values, got {values!r}")
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"experiment.grid: {key!r} is not a config key (use a dotted path such as "
                              "method.matching.caliper or cohort.n)")
    return grid


def conditions(cfg: DictConfig) -> list[Condition]:
    """Each grid point applied on top of the base config, then validated."""
    base = OmegaConf.to_container(cfg, resolve=True)
    out = []
    for i, factors in enumerate(expand_grid(grid_of(cfg))):
        plain = copy.deepcopy(base)
        for key, value in factors.items():
            *parents, leaf = key.split(".")
            node = plain
            for p in parents:
                node = node[p]
            node[leaf] = value
        cond = Condition(i, factors, plain)
        try:
            check_cohort(plain["cohort"])
            check_method(plain["method"])
        except ConfigError as e:
            raise ConfigError(f"{e}{where(cond)}") from None
        out.append(cond)
    return out


def where(cond: Condition) -> str:
    """' (grid condition {...})' for an error message, or '' without a grid."""
    return f" (grid condition {cond.factors})" if cond.factors else ""


def study_of(cfg: Mapping[str, Any]) -> Study:
    return load_study(cfg["study"])


def design_of(study: Study, cohort: Mapping[str, Any]) -> Design:
    """The solved design of a cohort setting; a setting the model cannot honour is a ConfigError."""
    try:
        model = calibrated(study, cohort)
        extra = {"unmeasured": cohort["unmeasured"]} if cohort.get("unmeasured") else {}
        if cohort.get("effect_sd"):
            extra["effect_sd"] = cohort["effect_sd"]
        return make_design(model, cohort["n"], cohort["confounding"], cohort.get("effect_mcid", 0.0),
                           cohort.get("effect") or {}, cohort.get("effect_heterogeneity", 0.0),
                           survival_effect=cohort.get("survival_effect", 1.0),
                           attrition_effect=cohort.get("attrition_effect", 1.0),
                           health_scale=(cohort.get("attrition") or {}).get("health_scale", 1.0), **extra)
    except ValueError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith("cohort") else f"cohort: {msg}") from None


RESERVED_COLUMNS = {"condition", "rep", "outcome", "timepoint", "analysis", "measure", "value", "mcse", "n",
                    "estimate", "se", "ci_low", "ci_high", "p_value", "reason"}


def short_names(keys: list[str]) -> dict[str, str]:
    """Grid keys as column names: the last path component, unless two keys share it or it is a
    column of the results (e.g. `cohort.n` stays `cohort.n`, not `n`)."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 and s not in RESERVED_COLUMNS else k) for k, s in zip(keys, last)}


def matched_plan(cond: Condition) -> tuple[Design, MethodSpec]:
    """The solved design and the analysis settings of a matched-design condition, completed from the
    study and checked against a small cohort's columns (ConfigError naming the key)."""
    design = design_of(study_of(cond.cfg), cond.cfg["cohort"])
    spec = MethodSpec.from_config(cond.cfg["method"]).for_model(design.model)
    probe = generate(replace(design, n=min(design.n, 50)), np.random.default_rng(0))
    try:
        spec.check_columns(probe.columns, probe.potential_deltas)
    except ValueError as e:
        raise ConfigError(f"{e}{where(cond)}") from None
    return design, spec

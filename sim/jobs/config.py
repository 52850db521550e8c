"""Validate a composed config before any work starts: one clear error naming the key and the
allowed values, instead of a traceback ten minutes into a run. The allowed values come from the
registries of the modules that implement them, never from copies."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any, Mapping

from sim.engine.dask_backend import DASK_EXTRA, check_scheduler_address
from sim.engine.runner import BACKENDS
from sim.methods import matching as MATCHING
from sim.methods.balance import DENOMINATORS
from sim.methods.estimators import ESTIMATORS
from sim.methods.outcomes import ANALYSES as TEST_ANALYSES
from sim.methods.sensitivity import PAIRED_ONLY as SENSITIVITY_PAIRED_ONLY, SENSITIVITY_ANALYSES
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES

ANALYSES = (*TEST_ANALYSES, *SENSITIVITY_ANALYSES, *TRUNCATION_ANALYSES, *ESTIMATORS)
#: analyses of 1:1 pairs only (ratio 1, no replacement): Rosenbaum bounds, and those that need each
#: unit's own death day
PAIRED_ONLY = (*SENSITIVITY_PAIRED_ONLY, *TRUNCATION_ANALYSES)

MATCHING_CHOICES = {
    "algorithm": MATCHING.ALGORITHMS,
    "caliper_scale": MATCHING.CALIPER_SCALES,
    "caliper_sd": MATCHING.CALIPER_SDS,
    "order": MATCHING.ORDERS,
}
METHOD_KEYS = {"propensity": ("covariates", "formula"),
               "matching": ("algorithm", "caliper", "caliper_scale", "caliper_sd", "order", "ratio", "replace",
                            "exact"),
               "balance": ("denominator", "covariates"),
               "outcomes": ("names", "times", "analyses", "alpha", "crude")}
COHORT_KEYS = ("n", "confounding", "effect_mcid", "effect_sd", "effect", "effect_heterogeneity",
               "survival_effect", "attrition_effect", "attrition", "omitted_confounders", "unmeasured", "prognosis", "refine", "outcome_partial_corr", "visit_days",
               "calibration_n", "calibration_seed")
PROGRESS = (None, True, False)
MAX_N = 10_000_000  # patients per cohort
MAX_CONFOUNDING = 10.0  # times the published log odds ratios


class ConfigError(ValueError):
    """A bad setting; the message names the config key and what is allowed."""


def experiments_available() -> list[str]:
    files = resources.files("sim.conf").joinpath("experiment").iterdir()
    return sorted(p.name[:-5] for p in files if p.name.endswith(".yaml"))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    """A finite number (NaN, inf and ints beyond a float's range are not)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: must be a list of names, got {value!r}")
    return value


def check_run_keys(cfg: Mapping[str, Any]) -> None:
    if cfg.get("experiment") is None:
        raise ConfigError(f"experiment: choose one with experiment=NAME; allowed: {experiments_available()}")
    if not _is_int(cfg.get("reps")) or cfg["reps"] < 1:
        raise ConfigError(f"reps: must be a whole number >= 1, got {cfg.get('reps')!r}")
    if not _is_int(cfg.get("seed")) or cfg["seed"] < 0:
        raise ConfigError(f"seed: must be a whole number >= 0, got {cfg.get('seed')!r}")
    n_jobs = cfg.get("n_jobs")
    if not _is_int(n_jobs) or n_jobs == 0:
        raise ConfigError(f"n_jobs: must be a non-zero whole number (-1 = all cores), got {n_jobs!r}")
    cs = cfg.get("chunk_size")
    if cs is not None and (not _is_int(cs) or cs < 1):
        raise ConfigError(f"chunk_size: must be null or a whole number >= 1, got {cs!r}")
    if cfg.get("progress") not in PROGRESS:
        raise ConfigError(f"progress: got {cfg.get('progress')!r}; allowed: null (only on a terminal), true, false")
    _check_backend(cfg.get("backend", "local"), cfg.get("dask_scheduler"))


def _check_backend(backend: Any, scheduler: Any) -> None:
    """backend and dask_scheduler; backend=dask without dask.distributed installed names the extra."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(f"backend: got {backend!r}; allowed: {list(BACKENDS)} (local = joblib processes on "
                          "this machine, dask = a dask.distributed cluster)")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler or any(ch.isspace() for ch in scheduler):
            raise ConfigError(f"dask_scheduler: must be null (a local dask cluster of n_jobs workers) or a scheduler "
                              f"address like 'tcp://host:8786', got {scheduler!r}")
        if backend != "dask":
            raise ConfigError(f"dask_scheduler: used by backend=dask only, but backend is {backend!r}; "
                              "add backend=dask (or set dask_scheduler=null)")
    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(f"backend: 'dask' needs dask.distributed, which is not installed; install the "
                              f"extra: pip install 'sim[{DASK_EXTRA}]' (or use backend=local)") from None
        if scheduler is not None:
            try:
                check_scheduler_address(scheduler)
            except ValueError as e:
                raise ConfigError(f"dask_scheduler: {scheduler!r} is not a dask scheduler address ({e}); "
                                  "e.g. tcp://host:8786, or null for a local cluster") from None


def check_cohort(cohort: Mapping[str, Any], prefix: str = "cohort") -> None:
    unknown = sorted(set(cohort) - set(COHORT_KEYS))
    if "outcome_partial_corr_m1_m6" in unknown:  # its old, visit-bound name
        raise ConfigError(f"{prefix}.outcome_partial_corr_m1_m6: renamed {prefix}.outcome_partial_corr (the partial "
                          "correlation of consecutive follow-ups, whatever the study's visits); use that name")
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; allowed: {list(COHORT_KEYS)}")
    n = cohort.get("n")
    if not _is_int(n) or not 10 <= n <= MAX_N:
        raise ConfigError(f"{prefix}.n: must be a whole number in [10, {MAX_N:,}], got {n!r}")
    conf = cohort.get("confounding")
    if not _is_num(conf) or not 0 <= conf <= MAX_CONFOUNDING:
        raise ConfigError(f"{prefix}.confounding: must be a number in [0, {MAX_CONFOUNDING:g}] (1 = as published), "
                          f"got {conf!r}")
    for key in ("effect_mcid", "effect_sd", "effect_heterogeneity"):
        if not _is_num(cohort.get(key, 0.0)):
            raise ConfigError(f"{prefix}.{key}: must be a finite number, got {cohort.get(key)!r}")
    for key in ("survival_effect", "attrition_effect"):
        v = cohort.get(key, 1.0)
        if not _is_num(v) or not 0.1 <= v <= 10.0:
            raise ConfigError(f"{prefix}.{key}: must be a ratio in [0.1, 10] (1 = no effect), got {v!r}")
    attrition = cohort.get("attrition") or {}
    if not isinstance(attrition, Mapping):
        raise ConfigError(f"{prefix}.attrition: must be a mapping with keys health, missed_visit, health_scale, "
                          f"got {attrition!r}")
    scale = attrition.get("health_scale", 1.0)
    if not _is_num(scale) or not 0 <= scale <= 5:
        raise ConfigError(f"{prefix}.attrition.health_scale: must be a number in [0, 5] (1 = as calibrated), "
                          f"got {scale!r}")
    for key, lo, hi in (("outcome_partial_corr", -1.0, 1.0),):
        v = cohort.get(key, 0.0)
        if not _is_num(v) or not lo < v < hi:
            raise ConfigError(f"{prefix}.{key}: must be a number in ({lo:g}, {hi:g}), got {v!r}")
    for key, lo in (("calibration_n", 1000), ("calibration_seed", 0)):
        v = cohort.get(key, lo)
        if not _is_int(v) or v < lo:
            raise ConfigError(f"{prefix}.{key}: must be a whole number >= {lo}, got {v!r}")
    prognosis = cohort.get("prognosis") or {}
    if not isinstance(prognosis, Mapping) or not all(_is_num(w) for w in prognosis.values()):
        raise ConfigError(f"{prefix}.prognosis: must map covariate names to finite weights, got {prognosis!r}")
    refine = cohort.get("refine") or {}
    if not isinstance(refine, Mapping) or not all(isinstance(r, Mapping) for r in refine.values()):
        raise ConfigError(f"{prefix}.refine: must map a covariate to {{column, values_no, shares_no, values_yes, "
                          f"shares_yes}}, got {refine!r}")
    effect = cohort.get("effect") or {}
    if not isinstance(effect, Mapping):
        raise ConfigError(f"{prefix}.effect: must map outcome to {{time: effect}}, e.g. "
                          f"'+cohort.effect={{barthel:{{m1:5}}}}', got {effect!r}")
    for name, times in effect.items():
        if not isinstance(times, Mapping):
            raise ConfigError(f"{prefix}.effect.{name}: must map time to effect, e.g. {{m1: 5, m6: 10}}, got {times!r}")
        for t, v in times.items():
            if not _is_num(v):
                raise ConfigError(f"{prefix}.effect.{name}.{t}: must be a number, got {v!r}")
    omitted = cohort.get("omitted_confounders") or {}
    if not isinstance(omitted, Mapping):
        raise ConfigError(f"{prefix}.omitted_confounders: must map a covariate term to a log odds ratio or "
                          f"'calibrate', got {omitted!r}")
    for term, v in omitted.items():
        if not (_is_num(v) or v == "calibrate"):
            raise ConfigError(f"{prefix}.omitted_confounders.{term}: must be a log odds ratio or 'calibrate', "
                              f"got {v!r}")
    if cohort.get("unmeasured") is not None:
        _check_unmeasured(cohort["unmeasured"], f"{prefix}.unmeasured")


def _check_unmeasured(settings: Any, prefix: str) -> None:
    try:
        from sim.cohort.unmeasured import check_unmeasured
    except ImportError:  # the generator without an unmeasured confounder
        raise ConfigError(f"{prefix}: not supported by this version") from None
    try:
        check_unmeasured(settings, prefix=prefix)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _formula(formula: Any, key: str) -> None:
    """null, or a PS formula patsy parses (its columns are checked against a cohort by the plan)."""
    if formula is None:
        return
    from sim.methods.formula import formula_columns

    try:
        formula_columns(formula)
    except (ValueError, SyntaxError) as e:
        raise ConfigError(f"{key}: {e}; allowed: null (main effects of the covariates) or a formula such as "
                          "'age + I(age**2) + male + escc + frankel_abc + emergency'") from None


def check_method(method: Mapping[str, Any], prefix: str = "method") -> None:
    for section, keys in METHOD_KEYS.items():
        node = method.get(section)
        if not isinstance(node, Mapping):
            raise ConfigError(f"{prefix}.{section}: missing or not a mapping; keys: {list(keys)}")
        unknown = sorted(set(node) - set(keys))
        if unknown:
            raise ConfigError(f"{prefix}.{section}.{unknown[0]}: unknown key; allowed: {list(keys)}")
    m = method["matching"]
    for key, allowed in MATCHING_CHOICES.items():
        if m.get(key) not in allowed:
            raise ConfigError(f"{prefix}.matching.{key}: got {m.get(key)!r}; allowed: {list(allowed)}")
    cal = m.get("caliper")
    if cal is not None and (not _is_num(cal) or cal <= 0):
        raise ConfigError(f"{prefix}.matching.caliper: must be null (no caliper) or a number > 0, got {cal!r}")
    if not _is_int(m.get("ratio")) or m["ratio"] < 1:
        raise ConfigError(f"{prefix}.matching.ratio: must be a whole number >= 1, got {m.get('ratio')!r}")
    if not isinstance(m.get("replace"), bool):
        raise ConfigError(f"{prefix}.matching.replace: must be true or false, got {m.get('replace')!r}")
    if m.get("algorithm") == "optimal" and (m.get("ratio") != 1 or m.get("replace")):
        raise ConfigError(f"{prefix}.matching.algorithm: optimal supports ratio=1 without replacement only")
    _names(m.get("exact") or [], f"{prefix}.matching.exact")
    _names(method["propensity"].get("covariates"), f"{prefix}.propensity.covariates")
    if not method["propensity"]["covariates"]:
        raise ConfigError(f"{prefix}.propensity.covariates: needs at least one covariate")
    _formula(method["propensity"].get("formula"), f"{prefix}.propensity.formula")
    den = method["balance"].get("denominator")
    if den not in DENOMINATORS:
        raise ConfigError(f"{prefix}.balance.denominator: got {den!r}; allowed: {list(DENOMINATORS)}")
    _names(method["balance"].get("covariates") or [], f"{prefix}.balance.covariates")
    outs = method["outcomes"]
    for a in _names(outs.get("analyses"), f"{prefix}.outcomes.analyses"):
        known = (*ANALYSES, *TEST_ANALYSES)  # and an outcome analysis registered after import
        if a not in known:
            raise ConfigError(f"{prefix}.outcomes.analyses: unknown analysis {a!r}; allowed: {list(dict.fromkeys(known))}")
        if a in PAIRED_ONLY and (m.get("ratio") != 1 or m.get("replace")):
            raise ConfigError(f"{prefix}.outcomes.analyses: {a!r} needs 1:1 pairs (method.matching.ratio=1, "
                              "method.matching.replace=false)")
    analyses = _names(outs.get("analyses"), f"{prefix}.outcomes.analyses")
    if not analyses:
        raise ConfigError(f"{prefix}.outcomes.analyses: needs at least one entry")
    twice = sorted({a for a in analyses if analyses.count(a) > 1})
    if twice:
        raise ConfigError(f"{prefix}.outcomes.analyses: {twice[0]!r} is listed twice (its MCSEs would be wrong)")
    for key in ("names", "times"):  # null: all of the study's outcomes / follow-up visits
        if outs.get(key) is not None and not _names(outs.get(key), f"{prefix}.outcomes.{key}"):
            raise ConfigError(f"{prefix}.outcomes.{key}: needs at least one entry (or null: all of the study's)")
    alpha = outs.get("alpha", 0.05)
    if not _is_num(alpha) or not 0 < alpha < 1:
        raise ConfigError(f"{prefix}.outcomes.alpha: must be in (0, 1), got {alpha!r}")
    sens = [a for a in analyses if a in SENSITIVITY_ANALYSES]
    if sens and not alpha < 0.5:
        raise ConfigError(f"{prefix}.outcomes.alpha: must be below 0.5 with the sensitivity analyses {sens} "
                          f"(one-sided bounds and TOST), got {alpha!r}")
    if not isinstance(outs.get("crude", False), bool):
        raise ConfigError(f"{prefix}.outcomes.crude: must be true or false, got {outs.get('crude')!r}")

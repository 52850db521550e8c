"""Validate a composed config before any work starts: one clear error naming the key and the
allowed values, instead of a traceback ten minutes into a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

MATCHING_CHOICES = {
    "algorithm": ("greedy", "optimal"),
    "caliper_scale": ("logit", "ps"),
    "caliper_sd": ("pooled", "whole", "treated"),
    "order": ("largest", "smallest", "random", "data", "closest"),
}
ANALYSES = ("wilcoxon", "signed_rank", "paired_t", "diff_means", "paired_diff")
BALANCE_DENOMINATORS = ("pooled", "treated")


class ConfigError(ValueError):
    """A bad setting; the message names the config key and what is allowed."""


def experiments_available() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


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


COHORT_KEYS = ("n", "confounding", "effect_mcid", "effect", "effect_heterogeneity", "omitted_confounders",
               "prognosis", "refine", "outcome_partial_corr_m1_m6", "visit_days", "calibration_n", "calibration_seed")


def check_cohort(cohort: Mapping[str, Any], prefix: str = "cohort") -> None:
    unknown = sorted(set(cohort) - set(COHORT_KEYS))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; allowed: {list(COHORT_KEYS)}")
    n = cohort.get("n")
    if not _is_int(n) or n < 10:
        raise ConfigError(f"{prefix}.n: must be a whole number >= 10, got {n!r}")
    conf = cohort.get("confounding")
    if not _is_num(conf) or conf < 0:
        raise ConfigError(f"{prefix}.confounding: must be a number >= 0, got {conf!r}")
    if not _is_num(cohort.get("effect_mcid", 0.0)):
        raise ConfigError(f"{prefix}.effect_mcid: must be a number, got {cohort.get('effect_mcid')!r}")
    if not _is_num(cohort.get("effect_heterogeneity", 0.0)):
        raise ConfigError(f"{prefix}.effect_heterogeneity: must be a number, got {cohort.get('effect_heterogeneity')!r}")


def check_method(method: Mapping[str, Any], prefix: str = "method") -> None:
    m = method.get("matching", {})
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
    den = method.get("balance", {}).get("denominator")
    if den not in BALANCE_DENOMINATORS:
        raise ConfigError(f"{prefix}.balance.denominator: got {den!r}; allowed: {list(BALANCE_DENOMINATORS)}")
    outs = method.get("outcomes", {})
    for a in outs.get("analyses", []):
        if a not in ANALYSES:
            raise ConfigError(f"{prefix}.outcomes.analyses: unknown analysis {a!r}; allowed: {list(ANALYSES)}")
    for t in outs.get("times", []):
        if t not in ("m1", "m6"):
            raise ConfigError(f"{prefix}.outcomes.times: unknown time {t!r}; allowed: ['m1', 'm6']")
    alpha = outs.get("alpha", 0.05)
    if not _is_num(alpha) or not 0 < alpha < 1:
        raise ConfigError(f"{prefix}.outcomes.alpha: must be in (0, 1), got {alpha!r}")

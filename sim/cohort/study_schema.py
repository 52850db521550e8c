"""The study file's schema: the primitives every check uses and the sections the cohort model and
the reports read beside Table 1 and the outcomes (groups, survival, the propensity model, the
matched sample). Every field some code in `sim` reads is checked here or in sim.cohort.study, so
a missing one is one StudySpecError naming its path and what needs it, never a KeyError later."""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

GROUPS = ("treated", "control")
#: a visit name becomes part of column names (`barthel_m1`, `barthel_delta_m1`, `barthel_m1_y0`):
#: letters and digits only, starting with a letter, so no two columns can collide
VISIT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
KINDS = ("continuous", "binary", "categorical")
SCALE_TYPES = ("normal", "lognormal")
#: the words the reports use for the arms when the study's `groups` gives none
DEFAULT_WORDS = {"treated": "treatment", "control": "control"}
#: what the calibration reads in `survival` (the death model), with the kind each must have
SURVIVAL = {"died": "binary", "survival_days": "continuous"}
#: kinds a `surgery` variable may have (the generator draws each by arm)
SURGERY_KINDS = ("continuous", "binary")


class StudySpecError(ValueError):
    """A study file that does not match the schema; the message names the field."""


def _fail(path: str, msg: str) -> None:
    raise StudySpecError(f"study spec: {path}: {msg}")


def _get(d: Mapping, key: str, path: str, need: str = "") -> Any:
    """d[key]; else the error names the path and, when given, what needs it."""
    if not isinstance(d, Mapping) or key not in d:
        _fail(f"{path}.{key}" if path else key, f"missing (needed by {need})" if need else "missing")
    return d[key]


def _number(x: Any, path: str, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not np.isfinite(x):
        _fail(path, f"must be a finite number, got {x!r}")
    if positive and x <= 0:
        _fail(path, f"must be > 0, got {x!r}")
    if nonneg and x < 0:
        _fail(path, f"must be >= 0, got {x!r}")
    return float(x)


def _count(x: Any, path: str, n_max: int) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        _fail(path, f"must be a whole count, got {x!r}")
    if x < 0 or x > n_max:
        _fail(path, f"count {x} is outside 0..{n_max} (the group's N)")
    return x


def _mean_sd(pair: Any, path: str) -> tuple[float, float]:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        _fail(path, f"must be [mean, sd], got {pair!r}")
    return _number(pair[0], f"{path}[0]"), _number(pair[1], f"{path}[1]", positive=True)


def _validate_scale(scale: Any, path: str) -> None:
    if not isinstance(scale, Mapping):
        _fail(path, "must be a mapping with type, lower, upper, step")
    if scale.get("type", "normal") not in SCALE_TYPES:
        _fail(f"{path}.type", f"must be one of {list(SCALE_TYPES)}, got {scale.get('type')!r}")
    lo = _number(_get(scale, "lower", path), f"{path}.lower")
    hi = _number(_get(scale, "upper", path), f"{path}.upper")
    if hi <= lo:
        _fail(f"{path}.upper", f"must be > lower ({lo}), got {hi}")
    _number(_get(scale, "step", path), f"{path}.step", positive=True)




def _visit_name(x: Any, path: str) -> str:
    if not isinstance(x, str) or not VISIT_NAME.fullmatch(x):
        _fail(path, f"must be a visit name (letters and digits, starting with a letter), got {x!r}")
    return x


def _text(x: Any, path: str) -> str:
    if not isinstance(x, str) or not x.strip():
        _fail(path, f"must be a non-empty text (the source or the assumption), got {x!r}")
    return x



def validate_groups(raw: Mapping) -> None:
    """`groups` (optional; report-only): per arm a `label`, the word every report uses for it
    ("decompression", "no decompression"), and an optional `description`."""
    block = raw.get("groups")
    if block is None:
        return
    if not isinstance(block, Mapping):
        _fail("groups", f"must map treated and control to {{label, description}}, got {block!r}")
    for g in GROUPS:
        entry = _get(block, g, "groups", "the reports: the word for each arm")
        if not isinstance(entry, Mapping):
            _fail(f"groups.{g}", f"must be a mapping {{label: the word reports use, description}}, got {entry!r}")
        _text(_get(entry, "label", f"groups.{g}", "the reports: the word for this arm"), f"groups.{g}.label")
    if block["treated"]["label"] == block["control"]["label"]:
        _fail("groups.control.label", f"must differ from groups.treated.label ({block['treated']['label']!r})")


def validate_survival(block: Mapping) -> None:
    """`survival.died` (binary) and `survival.survival_days` (continuous, no scale needed): the
    calibration fits the death model to both; `logrank_p` is optional."""
    for name, kind in SURVIVAL.items():
        var = _get(block, name, "survival", "calibration: the death model")
        if not isinstance(var, Mapping) or var.get("kind") != kind:
            _fail(f"survival.{name}.kind", f"must be {kind!r} (calibration reads it as such), got "
                                           f"{var.get('kind') if isinstance(var, Mapping) else var!r}")
    extra = sorted(str(k) for k in block if k not in SURVIVAL and k != "logrank_p")
    if extra:
        _fail(f"survival.{extra[0]}", f"unknown entry; allowed: {[*SURVIVAL, 'logrank_p']} (the generator makes "
                                      "only these columns)")
    if "logrank_p" in block:
        _p_value(block["logrank_p"], "survival.logrank_p")


def _p_value(x: Any, path: str) -> None:
    """A published p-value: a number in [0, 1] or a text such as "<0.05"."""
    if isinstance(x, str) and x.strip():
        return
    if _number(x, path) > 1 or x < 0:
        _fail(path, f"must be a p-value in [0, 1] or a text such as '<0.05', got {x!r}")


def validate_propensity(raw: Mapping, variables: Mapping[str, Mapping]) -> None:
    """The paper's PS model: covariates with published odds ratios (and CIs), `derived` indicators,
    `matching.pairs`. A term drives the synthetic treatment unless its OR is 1, and only binary and
    categorical covariates and derived indicators can (the model's treatment index is built from
    them): a continuous covariate with an OR other than 1 is refused here."""
    pm = _get(raw, "propensity_model", "")
    derived = pm.get("derived") or {}
    if not isinstance(derived, Mapping):
        _fail("propensity_model.derived", f"must map an indicator to {{from: variable, in: [categories]}}, got {derived!r}")
    for term, d in derived.items():
        p = f"propensity_model.derived.{term}"
        source = _get(d, "from", p)
        if variables.get(source, {}).get("kind") != "categorical":
            _fail(f"{p}.from", f"must name a categorical covariate; allowed: "
                               f"{sorted(k for k, v in variables.items() if v.get('kind') == 'categorical')}")
        members = _get(d, "in", p)
        cats = variables[source]["categories"]
        if not isinstance(members, list) or not all(m in cats for m in members):
            _fail(f"{p}.in", f"must list categories of {source}: {cats}, got {members!r}")
    covs = _get(pm, "covariates", "propensity_model")
    if not isinstance(covs, list) or not covs:
        _fail("propensity_model.covariates", f"must be a non-empty list of covariate names, got {covs!r}")
    ors = _get(pm, "odds_ratios", "propensity_model")
    for c in covs:
        p = f"propensity_model.odds_ratios.{c}"
        if c not in variables and c not in derived:
            _fail(f"propensity_model.covariates", f"{c!r} is neither a covariate nor a derived indicator; allowed: "
                                                  f"{sorted(variables) + sorted(derived)}")
        entry = _get(ors, c, "propensity_model.odds_ratios", "calibration: the true treatment model")
        or_ = _number(_get(entry, "or", p), f"{p}.or", positive=True)
        ci = _get(entry, "ci", p)
        if not isinstance(ci, list) or len(ci) != 2:
            _fail(f"{p}.ci", f"must be [lower, upper], got {ci!r}")
        lo, hi = (_number(x, f"{p}.ci", positive=True) for x in ci)
        if not lo <= or_ <= hi:
            _fail(f"{p}.ci", f"odds ratio {or_} is not inside its CI [{lo}, {hi}]")
        if "p" in entry:
            _p_value(entry["p"], f"{p}.p")
        cats = variables.get(c, {}).get("categories") or []
        if or_ != 1.0 and not all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in cats):
            _fail(f"{p}.or", f"{c} has categories {cats}, not numbers: an odds ratio per category step needs an "
                             "ordinal covariate (numeric categories); use derived indicators (propensity_model.derived)")
        if c in variables and variables[c]["kind"] == "continuous" and or_ != 1.0:
            _fail(f"{p}.or", f"{c} is continuous, and continuous covariates cannot drive treatment in the cohort "
                             "model: give or: 1.0 (fitted by the PS model, not a driver), or use a binary or "
                             "categorical covariate or a derived indicator (propensity_model.derived)")
    pairs = _get(_get(pm, "matching", "propensity_model", "reproduce_paper: the published matched pairs"),
                 "pairs", "propensity_model.matching", "reproduce_paper: the published matched pairs")
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        _fail("propensity_model.matching.pairs", f"must be a whole number >= 1, got {pairs!r}")


def validate_matched(raw: Mapping) -> None:
    """`matched` (optional; reproduce_paper compares its Table 4 with it): `n` per group,
    `continuous` {variable: {treated: [mean, sd], control: [mean, sd]}}, `counts` {column: [n
    treated, n control]}."""
    block = raw.get("matched")
    if block is None:
        return
    if not isinstance(block, Mapping):
        _fail("matched", f"must be a mapping with n, continuous and counts, got {block!r}")
    n_raw = _get(block, "n", "matched")
    n = {g: _count(_get(n_raw, g, "matched.n"), f"matched.n.{g}", 10**9) for g in GROUPS}
    for name, entry in (block.get("continuous") or {}).items():
        for g in GROUPS:
            _mean_sd(_get(entry, g, f"matched.continuous.{name}"), f"matched.continuous.{name}.{g}")
    for name, pair in (block.get("counts") or {}).items():
        if not isinstance(pair, list) or len(pair) != 2:
            _fail(f"matched.counts.{name}", f"must be [n treated, n control], got {pair!r}")
        for g, k in zip(GROUPS, pair):
            _count(k, f"matched.counts.{name}", n[g])


def needed(study_name: str, path: str, why: str) -> StudySpecError:
    """The error for an optional section a feature needs: `study NAME: path is missing (needed by why)`."""
    return StudySpecError(f"study {study_name}: {path}: missing (needed by {why})")

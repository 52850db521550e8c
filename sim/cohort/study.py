"""Load and validate a study spec: the published numbers a cohort model is calibrated to.

A spec is plain YAML (see conf/study/tominaga2025.yaml). Validation happens on load so that a
typo in a transcribed table fails loudly with the field's path, not as a strange calibration.
The study names its own visits (`visits`: the baseline, the follow-ups and their days) and
outcomes; nothing in `sim` assumes a particular schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from sim.cohort.study_schema import (DEFAULT_WORDS, GROUPS, KINDS, SURGERY_KINDS, VISIT_NAME,  # noqa: F401
                                     StudySpecError, _count, _fail, _get, _mean_sd, _number, _p_value, _text,
                                     _validate_scale, _visit_name, needed, validate_groups, validate_matched,
                                     validate_propensity, validate_survival)

SUM_TOLERANCE = 0.01  # published counts may be off by rounding or a typo (Table 1 level: 190/189)
#: sections only the reports read (the arms' words, the number analysed at each visit,
#: sim.report.published). They are held apart from `Study.raw`, which keys the calibrated cohort
#: model (sim.cohort.calibrate hashes it): a word or a count the model never uses must not
#: invalidate it.
REPORT_SECTIONS = ("groups", "analysed")
ANALYSED_BOUNDS = ("n", "low", "high")


def _validate_variable(name: str, var: Any, path: str, n: Mapping[str, int]) -> None:
    if not isinstance(var, Mapping):
        _fail(path, "must be a mapping")
    kind = _get(var, "kind", path)
    if kind not in KINDS:
        _fail(f"{path}.kind", f"must be one of {list(KINDS)}, got {kind!r}")
    _get(var, "source", path)
    for group in ("total",) + GROUPS:
        g = _get(var, group, path)
        gp = f"{path}.{group}"
        if kind == "continuous":
            mean = _number(_get(g, "mean", gp), f"{gp}.mean")
            _number(_get(g, "sd", gp), f"{gp}.sd", positive=True)
            scale = var.get("scale")
            if scale is not None:
                _validate_scale(scale, f"{path}.scale")
                if not scale["lower"] <= mean <= scale["upper"]:
                    _fail(f"{gp}.mean", f"{mean} lies outside the scale [{scale['lower']}, {scale['upper']}]")
        elif kind == "binary":
            _count(_get(g, "n", gp), f"{gp}.n", n[group])
        else:
            cats = _get(var, "categories", path)
            counts = _get(g, "n", gp)
            if not isinstance(counts, list) or len(counts) != len(cats):
                _fail(f"{gp}.n", f"must list one count per category {cats}, got {counts!r}")
            total = sum(_count(c, f"{gp}.n[{i}]", n[group]) for i, c in enumerate(counts))
            if abs(total / n[group] - 1) > SUM_TOLERANCE:
                _fail(f"{gp}.n", f"category counts add to {total}, but N = {n[group]} "
                                 f"(proportions must sum to 1 within {SUM_TOLERANCE})")


def _validate_visits(raw: Mapping) -> tuple[str, tuple[str, ...]]:
    """The visit schedule: `baseline` (one name), `follow_up` (names, in time order), `days`
    (day of each follow-up visit after the operation, increasing) and optional `labels` (the
    words reports use). Returns (baseline, follow_up)."""
    visits = _get(raw, "visits", "")
    if not isinstance(visits, Mapping):
        _fail("visits", f"must be a mapping with baseline, follow_up and days, got {visits!r}")
    baseline = _visit_name(_get(visits, "baseline", "visits"), "visits.baseline")
    follow = _get(visits, "follow_up", "visits")
    if not isinstance(follow, list) or not follow:
        _fail("visits.follow_up", f"must be a non-empty list of visit names, got {follow!r}")
    names = [_visit_name(v, f"visits.follow_up[{i}]") for i, v in enumerate(follow)]
    for i, v in enumerate(names):
        if v == baseline or v in names[:i]:
            _fail(f"visits.follow_up[{i}]", f"{v!r} is listed twice (visit names must be distinct, "
                                            f"baseline {baseline!r} included)")
    days = _get(visits, "days", "visits")
    if not isinstance(days, Mapping):
        _fail("visits.days", f"must map each follow-up visit to its day after the operation, got {days!r}")
    extra = sorted(str(k) for k in days if k not in names)
    if extra:
        _fail(f"visits.days.{extra[0]}", f"not a follow-up visit; allowed: {names}")
    previous = 0.0
    for v in names:
        day = _number(_get(days, v, "visits.days"), f"visits.days.{v}", positive=True)
        if day <= previous:
            _fail(f"visits.days.{v}", f"must be later than the visit before it (day {previous:g}), got {day:g}")
        previous = day
    labels = visits.get("labels") or {}  # optional: the visit's words in the reports
    if not isinstance(labels, Mapping):
        _fail("visits.labels", f"must map a visit to the words reports use for it, got {labels!r}")
    for k, v in labels.items():
        if k != baseline and k not in names:
            _fail(f"visits.labels.{k}", f"not a visit; allowed: {[baseline, *names]}")
        _text(v, f"visits.labels.{k}")
    return baseline, tuple(names)


def _validate_outcome(name: str, out: Any, path: str, times: tuple[str, ...]) -> None:
    if not isinstance(_get(out, "higher_is_better", path), bool):
        _fail(f"{path}.higher_is_better", "must be true or false")
    _validate_scale(_get(out, "scale", path), f"{path}.scale")
    _number(_get(_get(out, "mcid", path), "value", f"{path}.mcid"), f"{path}.mcid.value", positive=True)
    lo, hi = out["scale"]["lower"], out["scale"]["upper"]
    follow_up = times[1:]
    for table, visits in (("fig1", times), ("fig2", times), ("table2", follow_up), ("table5", follow_up)):
        tab = _get(out, table, path)
        _text(_get(tab, "source", f"{path}.{table}", "the calibration report: where its numbers come from"),
              f"{path}.{table}.source")
        for group in GROUPS:
            g = _get(tab, group, f"{path}.{table}")
            for t in visits:
                p = f"{path}.{table}.{group}.{t}"
                mean, _ = _mean_sd(_get(g, t, f"{path}.{table}.{group}"), p)
                if table.startswith("fig") and not lo <= mean <= hi:
                    _fail(p, f"mean {mean} lies outside the scale [{lo}, {hi}]")
        for t, pv in (tab.get("p") or {}).items():  # optional: the reports print it where given
            if t not in visits:
                _fail(f"{path}.{table}.p.{t}", f"not a visit of this table; allowed: {list(visits)}")
            _p_value(pv, f"{path}.{table}.p.{t}")


def _section(raw: Mapping, key: str, optional: bool = False) -> Mapping:
    if optional and raw.get(key) is None:
        return {}
    block = _get(raw, key, "")
    if not isinstance(block, Mapping):
        _fail(key, f"must be a mapping of name -> entry, got {type(block).__name__}")
    return block


def _validate_analysed(raw: Mapping, n: Mapping[str, int]) -> None:
    """`analysed`: how many of each matched group have a change at each follow-up visit. Per visit
    and group a point value `n` and a plausible range [`low`, `high`] (2 <= low <= n <= high <=
    the matched group's size, `matched.n`, else the study's), each justified in the visit's
    `basis` (`n`, `low`, `high`: a source or a stated assumption); `deaths` per group with its
    `source`. Which visits it lists is checked where it is used (`Study.analysed_sizes`): a study
    may rename or drop visits for the generator without touching what only the report reads."""
    block = raw.get("analysed")
    if block is None:
        return
    if not isinstance(block, Mapping):
        _fail("analysed", f"must be a mapping of follow-up visit -> counts, got {type(block).__name__}")
    matched = raw.get("matched")
    sizes = matched.get("n") if isinstance(matched, Mapping) and isinstance(matched.get("n"), Mapping) else n
    _text(_get(block, "source", "analysed"), "analysed.source")
    deaths = _get(block, "deaths", "analysed")
    _text(_get(deaths, "source", "analysed.deaths"), "analysed.deaths.source")
    for g in GROUPS:
        _count(_get(deaths, g, "analysed.deaths"), f"analysed.deaths.{g}", int(sizes[g]))
    for visit, entry in block.items():
        if visit in ("source", "deaths"):
            continue
        path = f"analysed.{visit}"
        _visit_name(visit, path)
        if not isinstance(entry, Mapping):
            _fail(path, f"must be a mapping with treated, control and basis, got {entry!r}")
        basis = _get(entry, "basis", path)
        for key in ANALYSED_BOUNDS:
            _text(_get(basis, key, f"{path}.basis"), f"{path}.basis.{key}")
        for g in GROUPS:
            gp = f"{path}.{g}"
            counts = _get(entry, g, path)
            if not isinstance(counts, Mapping):
                _fail(gp, f"must be a mapping {{n, low, high}}, got {counts!r}")
            extra = sorted(str(k) for k in counts if k not in ANALYSED_BOUNDS)
            if extra:
                _fail(f"{gp}.{extra[0]}", f"unknown key; allowed: {list(ANALYSED_BOUNDS)}")
            v = {k: _count(_get(counts, k, gp), f"{gp}.{k}", int(sizes[g])) for k in ANALYSED_BOUNDS}
            if v["low"] < 2:
                _fail(f"{gp}.low", f"must be >= 2 (a group's SD needs two patients), got {v['low']}")
            if not v["low"] <= v["n"] <= v["high"]:
                _fail(f"{gp}.n", f"must lie in [low, high] = [{v['low']}, {v['high']}], got {v['n']}")


def validate(raw: Any) -> None:
    """Raise StudySpecError naming the first field that breaks the schema."""
    if not isinstance(raw, Mapping):
        _fail("<root>", "a study spec must be a mapping")
    _get(raw, "name", "")
    n_raw = _get(raw, "n", "")
    n = {g: _count(_get(n_raw, g, "n"), f"n.{g}", 10**9) for g in ("total",) + GROUPS}
    if min(n.values()) < 1:
        _fail("n", f"group sizes must be >= 1, got {n}")
    if n["treated"] + n["control"] != n["total"]:
        _fail("n.total", f"{n['total']} != treated {n['treated']} + control {n['control']}")
    baseline, follow_up = _validate_visits(raw)
    validate_groups(raw)
    variables = {}
    for section in ("covariates", "surgery", "survival"):
        block = _section(raw, section, optional=section == "surgery")
        if section == "survival":
            validate_survival(block)
        for name, var in block.items():
            if isinstance(var, Mapping):
                _validate_variable(name, var, f"{section}.{name}", n)
                variables[name] = var
            elif section != "survival":
                _fail(f"{section}.{name}", f"must be a variable {{kind, source, total, treated, control}}, got {var!r}")
            if section == "surgery" and var["kind"] not in SURGERY_KINDS:
                _fail(f"surgery.{name}.kind", f"must be one of {list(SURGERY_KINDS)} (the generator draws it by "
                                              f"arm), got {var['kind']!r}")
    validate_propensity(raw, {k: v for k, v in variables.items() if k in raw["covariates"]})
    for name, out in _section(raw, "outcomes").items():
        _validate_outcome(name, out, f"outcomes.{name}", (baseline, *follow_up))
    validate_matched(raw)
    _validate_analysed(raw, n)


@dataclass(frozen=True)
class Study:
    """A validated study spec with accessors for the targets the generator uses. `raw` is the
    file less its REPORT_SECTIONS, which are in `report` (see REPORT_SECTIONS for why)."""

    raw: Mapping[str, Any]
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def n(self) -> dict[str, int]:
        return dict(self.raw["n"])

    @property
    def treated_share(self) -> float:
        return self.raw["n"]["treated"] / self.raw["n"]["total"]

    @property
    def baseline(self) -> str:
        """The name of the baseline (pre-operative) visit."""
        return self.raw["visits"]["baseline"]

    @property
    def follow_up(self) -> tuple[str, ...]:
        """The names of the follow-up visits, in time order."""
        return tuple(self.raw["visits"]["follow_up"])

    @property
    def times(self) -> tuple[str, ...]:
        """Every visit: the baseline, then the follow-ups."""
        return (self.baseline, *self.follow_up)

    @property
    def visit_days(self) -> dict[str, float]:
        """Day after the operation of each follow-up visit."""
        return {t: float(self.raw["visits"]["days"][t]) for t in self.follow_up}

    @property
    def visit_labels(self) -> dict[str, str]:
        """The words reports use for each visit (`visits.labels`, e.g. m6: 6 months; else its name)."""
        labels = self.raw["visits"].get("labels") or {}
        return {t: str(labels.get(t, t)) for t in self.times}

    @property
    def covariates(self) -> Mapping[str, Any]:
        return self.raw["covariates"]

    @property
    def outcomes(self) -> Mapping[str, Any]:
        return self.raw["outcomes"]

    @property
    def words(self) -> dict[str, str]:
        """The word every report uses for each arm (`groups.<arm>.label`; else DEFAULT_WORDS)."""
        block = self.report.get("groups") or {}
        return {g: block[g]["label"] if g in block else DEFAULT_WORDS[g] for g in GROUPS}

    def variable(self, name: str) -> Mapping[str, Any]:
        for section in ("covariates", "surgery", "survival"):
            if name in (self.raw.get(section) or {}):
                return self.raw[section][name]
        raise KeyError(f"study {self.name!r} has no variable {name!r}")

    def proportions(self, name: str, group: str) -> np.ndarray:
        """Category (or yes) proportions; normalised because published counts may not add up."""
        var = self.variable(name)
        if var["kind"] == "binary":
            return np.array([var[group]["n"] / self.raw["n"][group]])
        counts = np.asarray(var[group]["n"], dtype=float)
        return counts / counts.sum()

    def analysed_sizes(self) -> dict[str, dict[str, dict[str, int]]]:
        """{visit: {group: {"n", "low", "high"}}} for every follow-up visit, from `analysed`
        (validated on load); StudySpecError naming the field if a visit has no entry or an entry
        names no follow-up visit."""
        block = self.report.get("analysed")
        if not isinstance(block, Mapping):
            _fail("analysed", f"study {self.name!r} gives no number analysed per group at each visit; add "
                              "analysed.<visit>.{treated,control}: {n, low, high} with their basis")
        extra = sorted(str(k) for k in block if k not in ("source", "deaths") and k not in self.follow_up)
        if extra:
            _fail(f"analysed.{extra[0]}", f"not a follow-up visit; allowed: {list(self.follow_up)}")
        out = {}
        for t in self.follow_up:
            entry = _get(block, t, "analysed")
            out[t] = {g: {k: int(entry[g][k]) for k in ANALYSED_BOUNDS} for g in GROUPS}
        return out

    def analysed_basis(self, visit: str) -> dict[str, str]:
        """The source or assumption of `n`, `low` and `high` at `visit`."""
        self.analysed_sizes()
        return dict(self.report["analysed"][visit]["basis"])

    def log_odds_ratios(self) -> dict[str, float]:
        pm = self.raw["propensity_model"]
        return {c: float(np.log(pm["odds_ratios"][c]["or"])) for c in pm["covariates"]}


def load_study(source: str | Path | Mapping[str, Any]) -> Study:
    """Load a study spec from a YAML path or an already-parsed mapping, validating it."""
    if isinstance(source, Mapping):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise StudySpecError(f"study spec: file not found: {path}")
        with path.open() as fh:
            raw = yaml.safe_load(fh)
    raw = _plain(raw)
    try:
        validate(raw)
    except StudySpecError as e:  # name the study when it has a name
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and str(e).startswith("study spec: "):
            raise StudySpecError(f"study {name}: {str(e)[len('study spec: '):]}") from None
        raise
    report = {k: raw[k] for k in REPORT_SECTIONS if k in raw}
    return Study({k: v for k, v in raw.items() if k not in report}, report)


def _plain(obj: Any) -> Any:
    """OmegaConf containers to plain dicts/lists so the spec is picklable and hashable as text."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra-core
        pass
    return obj


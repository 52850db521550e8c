"""The report settings of an experiment (experiment.figures, heatmaps, key_table): what they may
name, checked before a run so that a misspelt factor or analysis is one ConfigError naming the key,
never a failure after the replicates have run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


HEATMAP_KEYS = {"file", "title", "analysis", "measure", "x", "y", "where", "complement"}
#: experiment.key_table: rows kept (`where`), extra [analysis, measure] columns, exp(factor) columns,
#: the grid factor whose levels become the columns (`pivot`, see pivot_key_table), and whether the
#: figures' rejection and bias columns come first (`defaults`, true unless set)
KEY_TABLE_KEYS = ("where", "columns", "exp_factors", "pivot", "defaults")
ROW_KEYS = ("outcome", "timepoint", "analysis")
#: experiment.figures.<name> of the methods-paper figures: (required keys, allowed keys)
FIGURE_SETTINGS = {
    "zip": ({"analysis"}, {"analysis", "where", "by", "estimand"}),
    "nested_loop": ({"analysis", "measure"}, {"analysis", "measure", "order", "where", "reference"}),
    "forest": ({"measure"}, {"measure", "analyses", "where", "by", "reference"}),
}
FIGURES_KEYS = ("estimate_analysis", "test_analysis", *FIGURE_SETTINGS)
#: where a figure's settings may select, beside the grid factors
WHERE_ROWS = ("outcome", "timepoint")
#: `key_table.where.timepoint: last`: the last follow-up visit the run analyses, whatever the study
LAST_VISIT = "last"


def analysed_visits(cfg: DictConfig) -> list[str]:
    """The follow-up visits a matched run analyses: method.outcomes.times, else the study's."""
    from sim.cohort.study import load_study

    times = cfg.method.outcomes.get("times")
    return list(times) if times is not None else list(load_study(cfg.study).follow_up)


def arm_words(cfg: DictConfig) -> dict[str, str]:
    """The words the reports use for the arms: the study's groups.<arm>.label (Study.words)."""
    from sim.cohort.study import load_study

    return load_study(cfg.study).words


def key_where(cfg: DictConfig) -> dict:
    """experiment.key_table.where with `timepoint: last` resolved to the run's last visit."""
    where = dict(plain_setting(cfg.experiment.get("key_table"), {}).get("where") or {})
    if where.get("timepoint") == LAST_VISIT:
        where["timepoint"] = analysed_visits(cfg)[-1]
    return where


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float))


def _check_figure(name: str, spec: Any, factors: list[str], analyses: list[str], need) -> None:
    """experiment.figures.zip / nested_loop / forest (see FIGURE_SETTINGS)."""
    from sim.methods.pipeline import ESTIMANDS

    key = f"figures.{name}"
    required, allowed = FIGURE_SETTINGS[name]
    need(isinstance(spec, dict), key, f"must be a mapping with keys {sorted(allowed)} ({sorted(required)} required)")
    need(required <= set(spec) <= allowed, key,
         f"keys {sorted(required)} are required, {sorted(allowed)} allowed; got {sorted(spec)}")
    for k in ("analysis", "analyses"):
        if k not in spec:
            continue
        v = spec[k]
        one = k == "analysis" and name == "zip"
        names = [v] if isinstance(v, str) and k == "analysis" else v
        ok = isinstance(names, list) and bool(names) and all(isinstance(a, str) for a in names)
        need(ok and not (one and len(names) > 1) and (k == "analysis" or not isinstance(v, str)), f"{key}.{k}",
             "must be one analysis name" if one else "must be an analysis name or a list of them"
             if k == "analysis" else "must be a list of analysis names")
        for a in names:
            need(a in analyses, f"{key}.{k}", f"got {a!r}; allowed: {analyses}")
    if "measure" in spec:
        need(isinstance(spec["measure"], str) and spec["measure"], f"{key}.measure",
             f"must be a measure name of summary.csv (bias, coverage, rejection, ...), got {spec['measure']!r}")
    if "estimand" in spec:
        need(spec["estimand"] in (*ESTIMANDS, "own"), f"{key}.estimand",
             f"got {spec['estimand']!r}; allowed: {[*ESTIMANDS, 'own']}")
    if "reference" in spec:
        ref = spec["reference"]
        need(ref is None or (isinstance(ref, (int, float)) and not isinstance(ref, bool)), f"{key}.reference",
             f"must be a number or null, got {ref!r}")
    by = spec.get("by")
    if "by" in spec:
        need(by in factors, f"{key}.by", f"got {by!r}; allowed (grid factors): {factors}")
    where = spec.get("where") or {}
    need(isinstance(where, dict), f"{key}.where", f"must be a mapping of grid factors to levels; allowed keys: "
                                                  f"{factors + list(WHERE_ROWS)}")
    for k, v in where.items():
        need(k in factors or k in WHERE_ROWS, f"{key}.where.{k}",
             f"not a grid factor, outcome or timepoint; allowed: {factors + list(WHERE_ROWS)}")
        several = isinstance(v, list)
        need(_scalar(v) or (several and v and all(_scalar(x) for x in v)), f"{key}.where.{k}",
             f"must be a level (number, text or null) or a list of levels, got {v!r}")
        if several and name != "nested_loop" and k in factors:
            need(k == by, f"{key}.where.{k}", f"a list of levels is allowed only for the `by` factor "
                                              f"({by!r}); give one level")
    fixed = [f for f in factors if f in where and not isinstance(where[f], list)]
    if name in ("zip", "forest"):
        missing = [f for f in factors if f not in fixed and f != by]
        need(not missing, f"{key}.where", f"must fix every grid factor except `by` (one condition per panel); "
                                          f"missing: {missing}")
    if name == "nested_loop" and "order" in spec:
        loop = [f for f in factors if f not in fixed]
        order = spec["order"]
        need(isinstance(order, list) and sorted(map(str, order)) == sorted(loop) and len(set(order)) == len(order),
             f"{key}.order", f"must list each grid factor not fixed by `where` once, outermost first: "
                             f"{loop}; got {order!r}")


def check_report_settings(cfg: DictConfig, factors: list[str]) -> None:
    """experiment.figures / heatmaps / key_table name grid factors (by their column names) and
    analyses: check them before the run, not after it (ConfigError naming the key)."""
    from sim.jobs.config import ConfigError

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"experiment.{key}: {msg}")

    for i, h in enumerate(plain_setting(cfg.experiment.get("heatmaps"), [])):
        need(isinstance(h, dict), f"heatmaps[{i}]", f"must be a mapping with keys {sorted(HEATMAP_KEYS)}")
        need(HEATMAP_KEYS - {"where", "complement"} <= set(h) and set(h) <= HEATMAP_KEYS, f"heatmaps[{i}]",
             f"keys {sorted(HEATMAP_KEYS - {'where', 'complement'})} are required, {sorted(HEATMAP_KEYS)} allowed; "
             f"got {sorted(h)}")
        for k in ("x", "y"):
            need(h[k] in factors, f"heatmaps[{i}].{k}", f"got {h[k]!r}; allowed (grid factors): {factors}")
        for k in h.get("where") or {}:
            need(k in factors, f"heatmaps[{i}].where.{k}", f"not a grid factor; allowed: {factors}")
    key_cfg = _mapping(cfg, "key_table", KEY_TABLE_KEYS, need)
    pivot = key_cfg.get("pivot")
    need(pivot is None or (isinstance(pivot, str) and pivot in factors), "key_table.pivot",
         f"got {pivot!r}; allowed: a grid factor of this run {factors} (its levels become the table's columns), "
         "or null (one row per condition)")
    for k in key_cfg.get("where") or {}:
        need(k in factors or k in ROW_KEYS, f"key_table.where.{k}", f"allowed: {factors + list(ROW_KEYS)}")
    if "timepoint" in (key_cfg.get("where") or {}) and "outcomes" in (cfg.get("method") or {}):
        visits, t = analysed_visits(cfg), key_cfg["where"]["timepoint"]
        need(t == LAST_VISIT or t in visits, "key_table.where.timepoint",
             f"{t!r} is not a visit this run analyses (the key table would be empty); allowed: "
             f"{visits} or {LAST_VISIT!r} (the last of them)")
    for c in key_cfg.get("columns") or []:
        need(isinstance(c, list) and len(c) == 2, "key_table.columns", f"entries are [analysis, measure], got {c!r}")
    need(isinstance(key_cfg.get("defaults", True), bool), "key_table.defaults",
         f"got {key_cfg.get('defaults')!r}; allowed: true (the figures' rejection and bias columns first) or false "
         "(only key_table.columns)")
    for k in key_cfg.get("exp_factors") or {}:
        need(k in factors, f"key_table.exp_factors.{k}", f"not a grid factor; allowed: {factors}")
    fig_cfg = _mapping(cfg, "figures", FIGURES_KEYS, need)
    if any(k in fig_cfg for k in FIGURE_SETTINGS):
        from sim.jobs.config import ANALYSES
        from sim.methods.pipeline import CRUDE_ANALYSES

        analyses = [*ANALYSES, *CRUDE_ANALYSES]
        for name in FIGURE_SETTINGS:
            if fig_cfg.get(name) is not None and applies(fig_cfg[name], factors):
                _check_figure(name, fig_cfg[name], factors, analyses, need)


def _mapping(cfg: DictConfig, name: str, keys: tuple[str, ...], need) -> dict:
    """experiment.<name> as a plain mapping whose keys are among `keys` ({} when absent)."""
    node = plain_setting(cfg.experiment.get(name), {})
    need(isinstance(node, dict), name, f"must be a mapping with keys {list(keys)}")
    for k in node:
        need(k in keys, f"{name}.{k}", f"unknown key; allowed: {list(keys)}")
    return node


def applies(spec: Any, factors: list[str]) -> bool:
    """A figure whose settings name only factors of another grid (the grid was replaced on the
    command line) does not apply to this run: it is skipped with a note, not refused. One that
    names any factor of this grid is checked in full (a misspelt factor is an error)."""
    if not isinstance(spec, dict):
        return True  # malformed: _check_figure says why
    where = spec.get("where") if isinstance(spec.get("where"), dict) else {}
    named = [k for k in (*where, *([spec["by"]] if spec.get("by") else []), *(spec.get("order") or []))
             if k not in WHERE_ROWS]
    return not named or any(k in factors for k in named)


def plain_setting(node: Any, default: Any) -> Any:
    """A setting as plain Python (default when it is null)."""
    return default if node is None else OmegaConf.to_container(node, resolve=True)


#: the report's line where the figures would be, under draw_figures=false (every job)
NO_FIGURES = "No figures: draw_figures=false."


def draws_figures(cfg: DictConfig) -> bool:
    """The run's `draw_figures` (true unless set false): whether its job writes PNGs."""
    return bool(cfg.get("draw_figures", True))


def figure_lines(cfg: DictConfig, figures: list[Path]) -> list[str]:
    """The report's image lines, or NO_FIGURES."""
    return [f"![{p.stem}]({p.name})" for p in figures] if draws_figures(cfg) else [NO_FIGURES]

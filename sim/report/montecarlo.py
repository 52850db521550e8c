"""Files of a Monte Carlo run: summary.csv, replicates.parquet, failures.csv, key_table.csv,
effect_units.csv (one MCID in SD units of each outcome's change, sim.report.units), figures and
report.md. Files are written to a temporary name and renamed, so a killed run never leaves a
half-written summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim.engine.atomic import atomic_write_text, atomic_writer
from sim.report.figures import heatmap_plot, measure_plot, scalar_plot
from sim.report.method_figures import forest_plot, is_proportion, nested_loop_plot, select, zip_plot
from sim.report.parquet import write_replicates
from sim.report.settings import FIGURE_SETTINGS, NO_FIGURES, applies, arm_words, draws_figures, key_where, plain_setting
from sim.report.tables import key_table_markdown, markdown
from sim.report.units import UNITS_CAPTION, UNITS_FILE, UNITS_TITLE, condition_units

if TYPE_CHECKING:
    from sim.jobs.contract import ExperimentResult


def atomic_csv(df: pd.DataFrame, path: Path, **kw: Any) -> None:
    with atomic_writer(path) as fh:
        df.to_csv(fh, index=False, **kw)


def atomic_text(text: str, path: Path) -> None:
    atomic_write_text(path, text)


ESTIMAND_TEXT = {
    "matched": "the effect among the matched treated alive at the visit under both arms, what the matched "
               "comparison estimates",
    "att": "the effect among all treated alive at the visit under both arms",
    "ate": "the effect in the whole cohort among those alive at the visit under both arms (the survivor "
           "average causal effect)",
    "while_alive": "among the matched treated, the mean change of those alive with {treated} minus that of "
                   "those alive without it",
    "always_seen": "the effect among the matched treated who would be seen at the visit under both arms",
    "while_alive_cohort": "the while-alive contrast over the whole cohort (a randomised trial's target)",
    "always_seen_cohort": "the effect among the whole cohort's patients seen at the visit under both arms",
    "ato": "the effect in the overlap population (weights e(1 - e) of the true PS) alive under both arms",
    "own": "each analysis' own estimand: the estimators' declared ones (ATT, ATE, ATO, matched), the matched "
           "treated for the analyses of the paper's pairs",
}


def _as_list(x: Any) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def key_table(summary: pd.DataFrame, factors: list[str], columns: list[tuple[str, str]],
              estimand: str = "") -> pd.DataFrame:
    """The headline: per condition, outcome and time, one column per (analysis, measure) with
    'value (MCSE)'."""
    parts = []
    for analysis, measure in columns:
        d = summary[(summary["analysis"] == analysis) & (summary["measure"] == measure)].copy()
        if d.empty:
            continue
        d["cell"] = [f"{v:.3g} ({m:.2g})" if pd.notna(m) else f"{v:.3g}" for v, m in zip(d["value"], d["mcse"])]
        label = f"{measure} [{analysis}]" + (f" vs {estimand}" if measure == "bias" and estimand else "")
        d = d[factors + ["outcome", "timepoint", "cell"]].rename(columns={"cell": label})
        parts.append(d.set_index(factors + ["outcome", "timepoint"]))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, axis=1).reset_index()
    for f in factors:
        out[f] = out[f].map(lambda v: "none" if v is None or (isinstance(v, float) and pd.isna(v)) else v)
    return out


def _level(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def pivot_key_table(table: pd.DataFrame, factor: str, factors: list[str],
                    label: Callable[[Any], str] | None = None) -> pd.DataFrame:
    """The key table with the levels of one grid factor as columns (`experiment.key_table.pivot`).

    `table` is key_table()'s long layout (grid `factors`, outcome, timepoint, then one column per
    measure; one row per condition x outcome x time). The pivoted layout has one block of rows per
    measure (column `measure`: the long table's column label), the other grid factors, outcome and
    time as row keys, and one column per level of `factor` in the grid's order (`label(level)`,
    default '<factor> = <level>'); each cell is the long table's 'value (MCSE)' string unchanged.

    Why this layout: the experiments that pivot ask how one factor (caliper width, confounding
    strength, cohort size) trades bias against error rates, so a reviewer reads each measure along
    that factor's levels, which a row per level scatters over the whole table. One measure per
    block, never several measures in one row: measures on different scales (a rejection rate, a
    bias in outcome units) side by side invite comparing numbers that do not compare. The blocks
    stay in one file (key_table.csv, with its `measure` column) and are shown as one table per
    measure (sim.report.tables.key_table_markdown)."""
    if factor not in table.columns:
        raise ValueError(f"pivot_key_table: {factor!r} is not a column of the key table; columns: "
                         f"{list(table.columns)}")
    label = label or (lambda lv: f"{factor} = {_level(lv)}")
    rows = [f for f in factors if f != factor and f in table.columns] + ["outcome", "timepoint"]
    measures = [c for c in table.columns if c not in factors and c not in ("outcome", "timepoint")]
    levels = list(dict.fromkeys(table[factor]))
    keys = list(dict.fromkeys(zip(*(table[r] for r in rows))))  # row keys in the long table's order
    at = {(*k, lv): i for i, (k, lv) in enumerate(zip(zip(*(table[r] for r in rows)), table[factor]))}
    out = []
    for m in measures:
        col = table[m].tolist()
        for k in keys:
            cells = [col[at[(*k, lv)]] if (*k, lv) in at else "" for lv in levels]
            out.append(["" if isinstance(c, float) and pd.isna(c) else c for c in [m, *k, *cells]])
    return pd.DataFrame(out, columns=["measure", *rows, *map(label, levels)])


def write_tables(result: "ExperimentResult", out_dir: Path, replicates: bool = True) -> None:
    """summary.csv, failures.csv and replicates.parquet (a run's chunks compacted into it)."""
    atomic_csv(result.summary, out_dir / "summary.csv")
    if replicates:
        write_replicates(result, out_dir)
    atomic_csv(result.failures, out_dir / "failures.csv")


def _rows_of(result: "ExperimentResult", analysis: str, where: dict) -> pd.DataFrame:
    """The replicate rows of one analysis that `where` selects, gathered a condition at a time
    (only the conditions whose grid factors it selects are read)."""
    factors = {k: v for k, v in where.items() if k in result.grid.columns}
    picked = lambda grid: grid.index.isin(select(grid, factors).index)  # noqa: E731
    parts = [select(rows[rows["analysis"] == analysis], where) for rows in result.condition_replicates(picked)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def run_lines(cfg: DictConfig, result: "ExperimentResult") -> list[str]:
    """The 'What was run' lines every Monte Carlo report starts with."""
    exp = cfg.experiment
    total = int(cfg.reps) * len(result.conditions)
    return [
        f"- command: `python -m sim experiment={exp.name} reps={cfg.reps} seed={cfg.seed}`",
        f"- conditions: {len(result.conditions)}; replicates per condition: {cfg.reps}; "
        f"failed replicates: {len(result.failures)} of {total} (see failures.csv)",
        f"- chunks computed this run: {result.n_computed_chunks}, resumed from disk: {result.n_resumed_chunks}",
    ]


def _figure_lines(figures: list[Path], captions: dict[str, str], notes: list[str]) -> list[str]:
    out = []
    for p in figures:
        if p.name in captions:
            out += ["", captions[p.name]]
        out.append(f"![{p.stem}]({p.name})")
    return out + ([""] + [f"- {n}" for n in notes] if notes else [])


def _report(cfg: DictConfig, result: "ExperimentResult", estimand: str, figures: list[Path],
            table: pd.DataFrame, captions: dict[str, str] | None = None, notes: list[str] | None = None,
            units: pd.DataFrame | None = None) -> str:
    exp, words = cfg.experiment, arm_words(cfg)
    lines = [
        f"# {exp.name}",
        "",
        str(exp.get("description", "")).strip(),
        "",
        "## What was run",
        *run_lines(cfg, result),
        f"- estimand for bias, MSE and coverage: `{estimand}` ({ESTIMAND_TEXT[estimand].format(**words)}); the "
        "same against the other estimands carry their name as a suffix (`bias_att`, `coverage_ate`, ...); "
        "`true_*` are their mean values",
        "",
        "## Key results",
        "Values with their Monte Carlo SE in brackets. Rejection of the paper's Wilcoxon rank-sum test is the "
        "type-I error when the true effect is 0 and the power otherwise; `rejection_benefit` (summary.csv) "
        f"counts only the rejections in favour of {words['treated']} (the power to detect a benefit), "
        "`rejection_harm` those against it.",
        "",
        key_table_markdown(table) if not table.empty else "(no rows)",
        *([f"## {UNITS_TITLE}", UNITS_CAPTION, "", markdown(units)] if units is not None and len(units) else []),
        "## Figures",
        *_figure_lines(figures, captions or {}, notes or []),
        "",
        "## Monte Carlo precision",
        "Every measure in summary.csv has its Monte Carlo SE (`mcse`) and the number of replicates it used "
        "(`n`), computed as in Morris, White & Crowther (2019), Table 6. Error bars in the figures are 2 x MCSE; "
        "the band of the zip plot is the coverage ± 1.96 MCSE.",
        "",
        "## Configuration",
        "```yaml",
        OmegaConf.to_yaml(cfg).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_psm_outputs(cfg: DictConfig, result: "ExperimentResult", out_dir: Path, estimand: str) -> None:
    summary, factors = result.summary, result.factors
    write_tables(result, out_dir)
    fig_cfg = OmegaConf.to_container(cfg.experiment.get("figures") or {}, resolve=True)
    alpha = float(cfg.method.outcomes.alpha)
    estimates, tests = (_as_list(fig_cfg.get(k, d)) for k, d in (("estimate_analysis", "diff_means"),
                                                                  ("test_analysis", "wilcoxon")))
    table, units = _key_tables(cfg, result, estimand, out_dir)
    draw = draws_figures(cfg)
    figures = [p for p in (
        measure_plot(summary, factors, "bias", estimates, out_dir / "bias.png",
                     f"Bias of the difference in mean change ({', '.join(estimates)}) vs the {estimand}",
                     "bias", reference=0.0),
        measure_plot(summary, factors, "rejection", tests, out_dir / "rejection.png",
                     f"Rejection rate ({', '.join(tests)}; alpha = {alpha})", "rejection rate", reference=alpha),
        measure_plot(summary, factors, "coverage", estimates, out_dir / "coverage.png",
                     f"Coverage of the 95% CI ({', '.join(estimates)})", "coverage", reference=0.95),
        scalar_plot(summary, factors, "mean_n_pairs",
                    out_dir / "pairs.png", "Matched pairs", "mean pairs"),
        *(heatmap_plot(summary, h["x"], h["y"], h["measure"], h["analysis"], out_dir / h["file"], h["title"],
                       where=h.get("where"), complement=bool(h.get("complement", False)))
          for h in plain_setting(cfg.experiment.get("heatmaps"), [])),
    ) if p is not None] if draw else []
    extra, captions, notes = (methods_figures(fig_cfg, result, out_dir, estimand, alpha) if draw
                              else ([], {}, [NO_FIGURES]))
    figures += extra
    atomic_text(_report(cfg, result, estimand, figures, table, captions, notes, units), out_dir / "report.md")


def _key_tables(cfg: DictConfig, result: "ExperimentResult", estimand: str, out_dir: Path):
    tables = result.tables if "key_table" in result.tables else psm_tables(cfg, result, estimand)
    atomic_csv(tables["key_table"], out_dir / "key_table.csv")
    atomic_csv(tables["effect_units"], out_dir / UNITS_FILE)
    return tables["key_table"], tables["effect_units"]


def psm_tables(cfg: DictConfig, result: "ExperimentResult", estimand: str) -> dict[str, pd.DataFrame]:
    """The small tables of a matched-design run: `key_table` (as `experiment.key_table` asks) and
    `effect_units`; computed once by the job (result.tables), written here as CSV files."""
    fig_cfg = OmegaConf.to_container(cfg.experiment.get("figures") or {}, resolve=True)
    estimates = _as_list(fig_cfg.get("estimate_analysis", "diff_means"))
    tests = _as_list(fig_cfg.get("test_analysis", "wilcoxon"))
    key_cfg = plain_setting(cfg.experiment.get("key_table"), {})
    keyed = result.summary
    for k, v in key_where(cfg).items():  # `timepoint: last` resolved
        keyed = keyed[keyed[k] == v]
    table = key_table(keyed, result.factors, key_columns(tests, estimates, key_cfg), estimand)
    units = condition_units(result.conditions, dict(zip(result.conditions[0].factors, result.factors)))
    return {"key_table": layout_key_table(table, result.factors, key_cfg), "effect_units": units}


def key_columns(tests: list[str], estimates: list[str], key_cfg: dict) -> list[tuple[str, str]]:
    """The key table's (analysis, measure) columns: the figures' rejection and bias columns unless
    `defaults: false`, then `columns`; each once, in that order."""
    first = [(a, "rejection") for a in tests] + [(a, "bias") for a in estimates] if key_cfg.get("defaults", True) else []
    return list(dict.fromkeys(first + [tuple(c) for c in key_cfg.get("columns", [])]))


def _exp_label(factor: str, name: str) -> Callable[[Any], str]:
    """Column labels of a pivoted factor shown with its exp: 'log_or = 0.693 (ratio = 2)'."""
    def label(lv: Any) -> str:
        twin = f" ({name} = {round(float(np.exp(lv)), 3):g})" if isinstance(lv, (int, float)) else ""
        return f"{factor} = {_level(lv)}{twin}"
    return label


def layout_key_table(table: pd.DataFrame, factors: list[str], key_cfg: dict) -> pd.DataFrame:
    """key_table()'s long table laid out as `experiment.key_table` asks: `pivot` (a grid factor)
    spreads that factor's levels over the columns (pivot_key_table), `exp_factors` adds exp(factor)
    beside a factor (e.g. a log odds ratio shown as the ratio; in the column labels when that
    factor is the pivot)."""
    exp = key_cfg.get("exp_factors") or {}
    pivot = key_cfg.get("pivot")
    if pivot and not table.empty:
        table = pivot_key_table(table, pivot, factors, _exp_label(pivot, exp[pivot]) if pivot in exp else None)
    for src, name in exp.items():
        if src in table and src != pivot:
            table.insert(table.columns.get_loc(src) + 1, name, [round(float(np.exp(v)), 3) for v in table[src]])
    return table


def default_reference(measure: str, alpha: float) -> float | None:
    """The line a measure is judged against: 0 for a bias, 0.95 for a coverage, alpha for the
    two-sided rejection rate; none otherwise."""
    return 0.0 if measure.startswith("bias") else 0.95 if measure.startswith("coverage") else (
        alpha if measure == "rejection" else None)


def _where_text(where: dict | None, by: str | None = None) -> str:
    """'caliper = 0.2, effect_mcid = 0' (+ ', by confounding (0, 1, 3)'); 'every condition'."""
    text = lambda v: "none" if v is None else f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    parts = [f"{k} = {text(v)}" for k, v in (where or {}).items() if k != by]
    if by:
        levels = (where or {}).get(by)
        parts.append(f"by {by}" + (f" ({', '.join(map(text, levels))})" if isinstance(levels, list) else ""))
    return ", ".join(parts) if parts else "every condition"


def methods_figures(fig_cfg: dict, result: "ExperimentResult", out_dir: Path, estimand: str,
                    alpha: float) -> tuple[list[Path], dict[str, str], list[str]]:
    """zip.png, nested_loop.png and forest.png as `experiment.figures` asks for them (settings
    checked by check_report_settings); returns the files, their captions for report.md, and a note
    for each figure asked for but not drawn (e.g. its condition is not in a cut-down grid)."""
    from sim.methods.estimators import ESTIMAND_OF
    from sim.methods.pipeline import ESTIMANDS

    summary, factors = result.summary, result.factors
    files: list[Path] = []
    captions: dict[str, str] = {}
    notes: list[str] = []
    for name in [n for n in FIGURE_SETTINGS if fig_cfg.get(n) and not applies(fig_cfg[n], list(factors))]:
        notes.append(f"{name}.png (experiment.figures.{name}) not drawn: its settings name factors that are not "
                     f"in this run's grid {list(factors)}")
        fig_cfg = {k: v for k, v in fig_cfg.items() if k != name}

    def add(path: Path | None, caption: str, missing: str) -> None:
        if path is None:
            notes.append(missing)
        else:
            files.append(path)
            captions[path.name] = caption

    z = fig_cfg.get("zip")
    if z:
        est = z.get("estimand", estimand)
        where, by = z.get("where") or {}, z.get("by")
        at = _where_text(where, by)
        truth = ESTIMANDS.get(est) or ESTIMANDS[ESTIMAND_OF.get(z["analysis"]) or "matched"]  # "own"
        add(zip_plot(_rows_of(result, z["analysis"], where), z["analysis"], truth, out_dir / "zip.png",
                     f"Zip plot: 95% CIs of {z['analysis']} ({at}) ranked by |z| against the {est} effect; "
                     "red: not covering", where=where, by=by),
            f"Zip plot of `{z['analysis']}` at {at} (Morris, White & Crowther 2019, Fig. 5): every replicate's 95% "
            f"CI as a horizontal line, ranked by the fractional centile of |z| = |estimate - truth| / SE against the "
            f"`{est}` estimand (per replicate); red CIs miss the truth (vertical line), the dashed line is 95 % and "
            "the gold band the coverage ± 1.96 MCSE.",
            f"zip.png (experiment.figures.zip) not drawn: no replicates of {z['analysis']} with a CI at {at} "
            "in this run")
    nl = fig_cfg.get("nested_loop")
    if nl:
        analyses = [nl["analysis"]] if isinstance(nl["analysis"], str) else list(nl["analysis"])
        where = nl.get("where") or {}
        order = nl.get("order") or [f for f in factors if not (f in where and not isinstance(where[f], list))]
        ref = nl["reference"] if "reference" in nl else default_reference(nl["measure"], alpha)
        add(nested_loop_plot(summary, order, nl["measure"], analyses, out_dir / "nested_loop.png",
                             f"{nl['measure']} of {', '.join(analyses)}"
                             + (f" vs the {estimand} effect" if nl["measure"] in ("bias", "coverage", "mse") else "")
                             + f" in every condition (nested loops: {' > '.join(order)}); bars 2 x MCSE",
                             nl["measure"], reference=ref, where=where),
            f"Nested-loop plot (Rücker & Schwarzer 2014): `{nl['measure']}` of {', '.join(analyses)} in every "
            f"condition{f' ({_where_text(where)})' if where else ''}, the conditions ordered by nested factor levels "
            f"({' > '.join(order)}, outermost first); the steps underneath show each factor's level; "
            "bars 2 x MCSE.",
            f"nested_loop.png (experiment.figures.nested_loop) not drawn: no rows of {nl['measure']} of "
            f"{', '.join(analyses)} at {_where_text(where)} in this run")
    fo = fig_cfg.get("forest")
    if fo:
        where, by = fo.get("where") or {}, fo.get("by")
        ref = fo["reference"] if "reference" in fo else default_reference(fo["measure"], alpha)
        at = _where_text(where, by)
        add(forest_plot(summary, fo["measure"], out_dir / "forest.png",
                        f"{fo['measure']} across analyses ({at}); bars 2 x MCSE", analyses=fo.get("analyses"),
                        where=where, by=by, reference=ref),
            f"Forest (lollipop) plot: `{fo['measure']}` of each analysis at {at}; bars 2 x MCSE"
            + (f", stems from the reference {ref:g} (dashed)." if ref is not None
               else ", stems from 0." if is_proportion(fo["measure"]) else "."),
            f"forest.png (experiment.figures.forest) not drawn: no rows of {fo['measure']} at {at} in this run")
    return files, captions, notes



def report_figures(out_dir: Path) -> list[str]:
    """The figures report.md shows, in its order (else the PNGs in the directory)."""
    import re

    report = out_dir / "report.md"
    names = re.findall(r"^!\[[^\]]*\]\(([^)]+\.png)\)", report.read_text(), flags=re.M) if report.is_file() else []
    names = [n for n in dict.fromkeys(names) if (out_dir / n).is_file()]
    return names or sorted(p.name for p in out_dir.glob("*.png"))


def terminal_summary(cfg: DictConfig, result: "ExperimentResult", out_dir: Path, seconds: float) -> str:
    """What `python -m sim` prints at the end of a run: what ran and where its files are, never the
    key table (it is in report.md and key_table.csv). A curated answer (experiments/<name>/answer.py)
    is not computed here: `python -m sim.report.curate` does that."""
    from sim.report.curate import answer_path

    name = str(cfg.experiment.name)
    conds, factors = result.conditions, list(result.factors)
    levels = [f"{f} {result.summary[f].nunique(dropna=False)}" for f in factors if f in result.summary]
    total = int(cfg.reps) * max(len(conds), 1)
    lines = [f"{name}: done in {seconds:.1f} s; outputs in {out_dir}",
             f"  ran: {len(conds)} condition{'s' * (len(conds) != 1)}"
             + (f" (levels: {' x '.join(levels)})" if levels else "")
             + f" x {cfg.reps} replicates, seed {cfg.seed}; failed replicates: {len(result.failures)} of {total}"]
    files = [n for n in ("report.md", "key_table.csv", "summary.csv", "replicates.parquet", "failures.csv", UNITS_FILE)
             if (out_dir / n).is_file()]
    if files:
        lines.append(f"  files: {', '.join(files)} (report.md: the key table, figures and configuration)")
    figures = report_figures(out_dir)
    if figures:
        lines.append(f"  figures: {', '.join(figures)}")
    answer = answer_path(name)
    if answer.is_file():
        lines.append(f"  curated answer ({answer.parent.name}/answer.py): python -m sim.report.curate {out_dir} "
                     f"[--dest DIR; default: experiments/{name}/]")
    return "\n".join(lines)

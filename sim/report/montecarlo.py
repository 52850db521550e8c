"""Files of a Monte Carlo run: summary.csv, replicates.csv.gz, failures.csv, key_table.csv, figures
and report.md. Files are written to a temporary name and renamed, so a killed run never leaves a
half-written summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim.engine.atomic import atomic_write_text, atomic_writer
from sim.report.figures import heatmap_plot, measure_plot, scalar_plot
from sim.report.tables import markdown

if TYPE_CHECKING:
    from sim.experiment import ExperimentResult


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
    "while_alive": "the mean change of the cohort alive with decompression minus that of the cohort alive "
                   "without it",
    "always_seen": "the effect among the patients who would be seen at the visit under both arms",
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


def write_tables(result: "ExperimentResult", out_dir: Path, replicates: bool = True) -> None:
    atomic_csv(result.summary, out_dir / "summary.csv")
    if replicates:
        atomic_csv(result.replicates, out_dir / "replicates.csv.gz", compression="gzip")
    atomic_csv(result.failures, out_dir / "failures.csv")


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


def _report(cfg: DictConfig, result: "ExperimentResult", estimand: str, figures: list[Path],
            table: pd.DataFrame) -> str:
    exp = cfg.experiment
    lines = [
        f"# {exp.name}",
        "",
        str(exp.get("description", "")).strip(),
        "",
        "## What was run",
        *run_lines(cfg, result),
        f"- estimand for bias, MSE and coverage: `{estimand}` ({ESTIMAND_TEXT[estimand]}); the "
        "same against the other estimands carry their name as a suffix (`bias_att`, `coverage_ate`, ...); "
        "`true_*` are their mean values",
        "",
        "## Key results",
        "Values with their Monte Carlo SE in brackets. Rejection of the paper's Wilcoxon rank-sum test is the "
        "type-I error when the true effect is 0 and the power otherwise; `rejection_benefit` (summary.csv) "
        "counts only the rejections in favour of decompression (the power to detect a benefit), "
        "`rejection_harm` those against it.",
        "",
        markdown(table) if not table.empty else "(no rows)",
        "## Figures",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
        "## Monte Carlo precision",
        "Every measure in summary.csv has its Monte Carlo SE (`mcse`) and the number of replicates it used "
        "(`n`), computed as in Morris, White & Crowther (2019), Table 6. Error bars in the figures are 2 x MCSE.",
        "",
        "## Configuration",
        "```yaml",
        OmegaConf.to_yaml(cfg).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


HEATMAP_KEYS = {"file", "title", "analysis", "measure", "x", "y", "where", "complement"}
ROW_KEYS = ("outcome", "timepoint", "analysis")


def check_report_settings(cfg: DictConfig, factors: list[str]) -> None:
    """experiment.figures / heatmaps / key_table name grid factors (by their column names) and
    analyses: check them before the run, not after it (ConfigError naming the key)."""
    from sim.config import ConfigError

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise ConfigError(f"experiment.{key}: {msg}")

    for i, h in enumerate(_plain(cfg.experiment.get("heatmaps"), [])):
        need(isinstance(h, dict), f"heatmaps[{i}]", f"must be a mapping with keys {sorted(HEATMAP_KEYS)}")
        need(HEATMAP_KEYS - {"where", "complement"} <= set(h) and set(h) <= HEATMAP_KEYS, f"heatmaps[{i}]",
             f"keys {sorted(HEATMAP_KEYS - {'where', 'complement'})} are required, {sorted(HEATMAP_KEYS)} allowed; "
             f"got {sorted(h)}")
        for k in ("x", "y"):
            need(h[k] in factors, f"heatmaps[{i}].{k}", f"got {h[k]!r}; allowed (grid factors): {factors}")
        for k in h.get("where") or {}:
            need(k in factors, f"heatmaps[{i}].where.{k}", f"not a grid factor; allowed: {factors}")
    key_cfg = _plain(cfg.experiment.get("key_table"), {})
    need(isinstance(key_cfg, dict), "key_table", "must be a mapping (where, columns, exp_factors)")
    for k in key_cfg.get("where") or {}:
        need(k in factors or k in ROW_KEYS, f"key_table.where.{k}", f"allowed: {factors + list(ROW_KEYS)}")
    for c in key_cfg.get("columns") or []:
        need(isinstance(c, list) and len(c) == 2, "key_table.columns", f"entries are [analysis, measure], got {c!r}")
    for k in key_cfg.get("exp_factors") or {}:
        need(k in factors, f"key_table.exp_factors.{k}", f"not a grid factor; allowed: {factors}")


def _plain(node: Any, default: Any) -> Any:
    return default if node is None else OmegaConf.to_container(node, resolve=True)


def write_psm_outputs(cfg: DictConfig, result: "ExperimentResult", out_dir: Path, estimand: str) -> None:
    summary, factors = result.summary, result.factors
    write_tables(result, out_dir)
    fig_cfg = OmegaConf.to_container(cfg.experiment.get("figures") or {}, resolve=True)
    estimates = _as_list(fig_cfg.get("estimate_analysis", "diff_means"))
    tests = _as_list(fig_cfg.get("test_analysis", "wilcoxon"))
    alpha = float(cfg.method.outcomes.alpha)
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
          for h in _plain(cfg.experiment.get("heatmaps"), [])),
    ) if p is not None]
    key_cfg = _plain(cfg.experiment.get("key_table"), {})
    columns = [(a, "rejection") for a in tests] + [(a, "bias") for a in estimates]
    columns += [tuple(c) for c in key_cfg.get("columns", [])]
    keyed = summary
    for k, v in (key_cfg.get("where") or {}).items():
        keyed = keyed[keyed[k] == v]
    table = key_table(keyed, factors, columns, estimand)
    for src, name in (key_cfg.get("exp_factors") or {}).items():  # e.g. a log odds ratio shown as the ratio
        if src in table:
            table.insert(table.columns.get_loc(src) + 1, name, [round(float(np.exp(v)), 3) for v in table[src]])
    atomic_csv(table, out_dir / "key_table.csv")
    atomic_text(_report(cfg, result, estimand, figures, table), out_dir / "report.md")

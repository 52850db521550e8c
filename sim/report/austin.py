"""The files of the austin2011 experiment: its key table (crude and matched per caliper), the
MSE/bias and coverage/type-I error figures and report.md (sim.jobs.austin computes them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pandas as pd

if TYPE_CHECKING:
    from sim.jobs.contract import ExperimentResult

#: the two analyses of every austin2011 data set (the rows' `analysis`; sim.jobs.austin writes them)
MATCHED, CRUDE = "matched", "crude"

KEY_COLUMNS = (("mean_n_pairs", "pairs"), ("bias", "bias"), ("pct_bias_removed", "% bias removed"),
               ("empse", "empirical SE"), ("mse", "MSE"), ("coverage", "coverage"),
               ("rejection", "rejection (beta=0: type-I error)"))


def _cell(v: float, m: float) -> str:
    if pd.isna(v):
        return ""
    return f"{v:.4g} ({m:.2g})" if pd.notna(m) else f"{v:.4g}"


def key_table(summary: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Calipers as rows (the crude comparison first), measures as columns, 'value (MCSE)', for
    every beta."""
    s = summary[summary["analysis"].isin([CRUDE, MATCHED])].copy()
    s["cell"] = [_cell(v, m) for v, m in zip(s["value"], s["mcse"])]
    s["caliper"] = s["caliper"].map(lambda c: "crude" if pd.isna(c) else f"{c:g}")
    keys = factors + ["caliper"]
    rows = s[keys].drop_duplicates()
    for measure, label in KEY_COLUMNS:
        d = s[s["measure"] == measure][keys + ["cell"]].rename(columns={"cell": label})
        rows = rows.merge(d, on=keys, how="left")
    return rows.fillna("").reset_index(drop=True)


def _per_factor(summary: pd.DataFrame, factors: list[str], measure: str, analysis: str = MATCHED):
    d = summary[(summary["measure"] == measure) & (summary["analysis"] == analysis)]
    if not factors:
        yield "", d
        return
    for key, g in d.groupby(factors, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        yield ", ".join(f"{f}={k:g}" if isinstance(k, float) else f"{f}={k}" for f, k in zip(factors, key)), g


def _panel(ax, summary, factors, measure, ylabel, title, reference=None, where=None):
    from sim.report.figures import label_panel

    colors = {label: f"C{i}" for i, (label, _) in enumerate(_per_factor(summary, factors, measure))}
    d = summary if where is None else summary[where(summary)]
    for label, g in _per_factor(d, factors, measure):
        g = g.sort_values("caliper")
        ax.errorbar(g["caliper"], g["value"], yerr=2 * g["mcse"].fillna(0), marker="o", ms=3, capsize=2,
                    label=label or None, color=colors.get(label))
    if reference is not None:
        ax.axhline(reference, color="grey", lw=0.8, ls="--")
    ax.axvline(0.2, color="tab:red", lw=0.6, ls=":")
    label_panel(ax, title, first_col=True, last_row=True, xlabel="caliper (SD of the logit PS)", ylabel=ylabel)


def figure_mse_bias(summary: pd.DataFrame, factors: list[str], path: Path) -> Path | None:
    """MSE and percent of the crude bias removed against the caliper, 2 x MCSE bars."""
    import matplotlib.pyplot as plt
    from sim.report.figures import save_panels

    if summary[summary["measure"] == "mse"].empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), squeeze=False)
    _panel(axes[0, 0], summary, factors, "mse", "MSE", "MSE of the matched difference in means")
    _panel(axes[0, 1], summary, factors, "pct_bias_removed", "% of crude bias removed",
           "Percent of the crude bias removed", reference=100.0)
    return save_panels(fig, axes, path, "Austin (2011) design through sim: caliper = gamma x pooled SD of the "
                       "logit PS (dotted: 0.2); bars 2 x MCSE", legend=bool(factors))


def figure_coverage(summary: pd.DataFrame, factors: list[str], alpha: float, path: Path) -> Path | None:
    """Coverage of the 95 % CI, the rejection rate at beta = 0 (type-I error) and the pairs formed."""
    import matplotlib.pyplot as plt
    from sim.report.figures import save_panels

    if summary[summary["measure"] == "coverage"].empty:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), squeeze=False)
    _panel(axes[0, 0], summary, factors, "coverage", "coverage", "Coverage of the paired-t 95% CI",
           reference=1 - alpha)
    null = (lambda s: s["beta"] == 0) if "beta" in summary else None
    _panel(axes[0, 1], summary, factors, "rejection", "rejection rate",
           "Type-I error (beta = 0)" if null is not None else "Rejection rate", reference=alpha, where=null)
    _panel(axes[0, 2], summary, factors, "mean_n_pairs", "mean pairs", "Matched pairs formed")
    return save_panels(fig, axes, path, "Coverage, type-I error and pairs against the caliper; bars 2 x MCSE",
                       legend=bool(factors))


def report_text(cfg, result: "ExperimentResult", s: Mapping[str, Any], table: pd.DataFrame, figs: list[Path]) -> str:
    from omegaconf import OmegaConf

    from sim.report.montecarlo import run_lines
    from sim.report.settings import figure_lines
    from sim.report.tables import markdown

    design = result.tables["design"]
    d0 = design.iloc[0]
    lines = [
        f"# {cfg.experiment.name}", "",
        str(cfg.experiment.get("description", "")).strip(), "",
        "## What was run",
        *run_lines(cfg, result),
        f"- data: n = {s['n']:,}, {len(s['treatment_log_or'])} iid "
        f"N(0, 1) covariates; treatment odds ratios {[round(math.exp(v), 3) for v in s['treatment_log_or']]}, "
        f"intercept {d0['intercept']:.5f} (solved once: population treated share {d0['treated_share']:.4f}); "
        f"outcome coefficients {list(s['outcome_coef'])}, Var(eps) = {s['error_var']:.7g} "
        f"(R^2 of the covariates {d0['r2_covariates']:.4f})",
        f"- closed-form bias of the crude difference in means: {d0['crude_bias_closed_form']:.4f} "
        "(Stein's lemma; design.csv)",
        f"- methods: logistic PS on all covariates (sim.methods.propensity), greedy 1:1 matching without "
        f"replacement on the {s['caliper_scale']} PS, order `{s['order']}` (one order per replicate, shared by "
        f"all calipers), caliper gamma x {s['caliper_sd']} SD for gamma in {list(s['calipers'])}; paired t on "
        "the within-pair differences; crude: Welch difference in means",
        f"- `pct_bias_removed` = 100 (1 - bias_matched / bias_crude), MCSE by the delta method with the "
        f"per-replicate covariance of the matched and crude errors; `mse_minus_ref` = paired difference of the "
        f"squared errors against the caliper {s['reference_caliper']:g} on the same data sets",
        "",
        "## Key results",
        "Values with their Monte Carlo SE in brackets; `rejection` is the type-I error when beta = 0 and the "
        "power otherwise.", "",
        markdown(table) if not table.empty else "(no rows)",
        "## Figures",
        *figure_lines(cfg, figs), "",
        "## Monte Carlo precision",
        "Every measure in summary.csv has its Monte Carlo SE (`mcse`) and the number of replicates it used "
        "(`n`), computed as in Morris, White & Crowther (2019), Table 6. Error bars in the figures are 2 x MCSE.", "",
        "## Configuration", "```yaml", OmegaConf.to_yaml(cfg).strip(), "```", "",
    ]
    return "\n".join(lines)

"""Figures (PNG) from the tidy summary: a measure against the first grid factor, one panel per
outcome x timepoint, one line per level of the other factors, MCSE bars; heatmaps of two factors;
and the panel helpers the other figures share (sim.report.method_figures draws the figures
methods papers use)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _label(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "none"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) and not np.isnan(v) else _label(v)


def _levels(values: pd.Series) -> list[str]:
    """Distinct x labels in order of appearance (NaN/None as one 'none' level)."""
    return list(dict.fromkeys(_label(v) for v in values))


def measure_plot(summary: pd.DataFrame, factors: Sequence[str], measure: str, analyses: Sequence[str], path: Path,
                 title: str, ylabel: str, reference: float | None = None) -> Path | None:
    """Panels outcome x timepoint; x = factors[0] (categorical positions, so 'none' fits);
    lines = combinations of the analyses (when several) and the remaining factors; error bars =
    2 x MCSE."""
    df = summary[(summary["measure"] == measure) & summary["analysis"].isin(analyses)]
    if df.empty or not factors:
        return None
    x_name, hue = factors[0], (["analysis"] if len(analyses) > 1 else []) + list(factors[1:])
    x_levels = _levels(summary[x_name])
    outcomes = list(dict.fromkeys(df["outcome"]))
    times = list(dict.fromkeys(df["timepoint"]))
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.2 * len(outcomes), 2.8 * len(times)),
                             squeeze=False, sharex=True)
    groups = df.groupby(hue, dropna=False, sort=False) if hue else [((), df)]
    for (key, g) in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{h}={_label(k)}" for h, k in zip(hue, key)) or None
        for i, t in enumerate(times):
            for j, o in enumerate(outcomes):
                d = g[(g["outcome"] == o) & (g["timepoint"] == t)]
                pos = [x_levels.index(_label(v)) for v in d[x_name]]
                axes[i, j].errorbar(pos, d["value"], yerr=2 * d["mcse"].fillna(0), marker="o", ms=3,
                                    capsize=2, label=label)
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            if reference is not None:
                ax.axhline(reference, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(x_levels)), x_levels, fontsize=7)
            label_panel(ax, f"{o}, {t}", first_col=j == 0, last_row=i == len(times) - 1, xlabel=x_name, ylabel=ylabel)
    return save_panels(fig, axes, path, title, legend=bool(hue))


def label_panel(ax, title: str, first_col: bool, last_row: bool, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    if first_col:
        ax.set_ylabel(ylabel, fontsize=8)
    if last_row:
        ax.set_xlabel(xlabel, fontsize=8)


def save_panels(fig, axes, path: Path, title: str, legend: bool = True, dpi: int = 110) -> Path:
    if legend:
        axes[0, -1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def scalar_plot(summary: pd.DataFrame, factors: Sequence[str], measure: str, path: Path, title: str,
                ylabel: str) -> Path | None:
    """A per-condition measure (e.g. mean pairs) against the first factor."""
    df = summary[summary["measure"] == measure]
    if df.empty or not factors:
        return None
    df = df.drop_duplicates(subset=list(factors))
    x_name, hue = factors[0], list(factors[1:])
    x_levels = _levels(summary[x_name])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups = df.groupby(hue, dropna=False, sort=False) if hue else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{h}={_label(k)}" for h, k in zip(hue, key)) or None
        pos = [x_levels.index(_label(v)) for v in g[x_name]]
        ax.errorbar(pos, g["value"], yerr=2 * g["mcse"].fillna(0), marker="o", capsize=2, label=label)
    ax.set_xticks(range(len(x_levels)), x_levels)
    ax.set_xlabel(x_name)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if hue:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_plot(summary: pd.DataFrame, x: str, y: str, measure: str, analysis: str, path: Path, title: str,
                 where: dict | None = None, complement: bool = False) -> Path | None:
    """Panels outcome x timepoint; a cell per (x, y) level with its value (1 - value if
    `complement`) written in it; `where` fixes the other factors."""
    df = summary[(summary["measure"] == measure) & (summary["analysis"] == analysis)]
    for k, v in (where or {}).items():
        df = df[np.isclose(df[k].astype(float), float(v))]
    if df.empty:
        return None
    xs, ys = sorted(df[x].unique()), sorted(df[y].unique(), reverse=True)
    outcomes = list(dict.fromkeys(df["outcome"]))
    times = list(dict.fromkeys(df["timepoint"]))
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.3 * len(outcomes), 2.9 * len(times)),
                             squeeze=False)
    values = df["value"].to_numpy(dtype=float)
    lo, hi = (0.0, 1.0) if measure in ("rejection", "coverage") else (np.nanmin(values), np.nanmax(values))
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            d = df[(df["outcome"] == o) & (df["timepoint"] == t)].set_index([y, x])["value"]
            grid = np.array([[d.get((b, a), np.nan) for a in xs] for b in ys], dtype=float)
            if complement:
                grid = 1.0 - grid
            ax.imshow(grid, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
            for (r, c), v in np.ndenumerate(grid):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < lo + 0.6 * (hi - lo) else "black")
            ax.set_xticks(range(len(xs)), [f"{np.exp(a):.3g}" if x.endswith("log_or") else _label(a) for a in xs],
                          fontsize=7)
            ax.set_yticks(range(len(ys)), [_label(b) for b in ys], fontsize=7)
            ax.set_title(f"{o}, {t}", fontsize=8)
            if i == len(times) - 1:
                ax.set_xlabel("odds ratio of U on decompression" if x.endswith("log_or") else x, fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{y} (SD of the change)" if y == "outcome_effect" else y, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The figure of `python -m sim.sensitivity`: the upper bound on the p-value against Γ, drawn as the
curve it is (the caller evaluates the bound on a fine Γ grid that contains Γ* itself, so the curve
meets the α line exactly at the Γ* the table and the files give), the Γ values of the table as
markers, the α line and Γ* as a labelled vertical line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np


def curve_grid(gammas: Sequence[float], gamma_star: float, n: int = 200) -> np.ndarray:
    """n evenly spaced Γ from 1 to past the largest of `gammas` and Γ* (x 1.25), with the table's Γ
    and a finite Γ* added, sorted."""
    top = max([1.5, *gammas] + ([1.25 * gamma_star] if math.isfinite(gamma_star) else []))
    extra = [g for g in (*gammas, gamma_star) if math.isfinite(g)]
    return np.unique(np.concatenate([np.linspace(1.0, top, n), extra]))


def sensitivity_figure(path: Path, *, grid, curve, points, alpha: float, gamma_star: float, star_label: str,
                       curve_label: str, title: str, subtitle: str = "", mcid_curve=None, mcid_points=None,
                       mcid_level: float | None = None, mcid_label: str = "") -> Path:
    """Write the PNG. `grid`, `curve`: the bound on the fine grid; `points`: (Γ, bound) of the
    table; `gamma_star` > 1 gets a vertical line labelled `star_label` (otherwise the label goes in
    the legend alone); optional second curve for the MCID test with its own level line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    line, = ax.plot(grid, curve, lw=1.8, label=curve_label)
    ax.plot(points[0], points[1], ls="none", marker="o", ms=4, color=line.get_color(), label="at the table's Γ")
    ax.axhline(alpha, color="black", ls="--", lw=0.9, label=f"α = {alpha:g}")
    if mcid_curve is not None:
        mline, = ax.plot(grid, mcid_curve, lw=1.4, label=mcid_label)
        if mcid_points is not None:
            ax.plot(mcid_points[0], mcid_points[1], ls="none", marker="s", ms=4, color=mline.get_color())
        if mcid_level is not None and mcid_level != alpha:
            ax.axhline(mcid_level, color="grey", ls=":", lw=0.9, label=f"MCID level = {mcid_level:g}")
    if 1 < gamma_star < math.inf:
        ax.axvline(gamma_star, color="firebrick", lw=1.1, label=star_label)
        ax.annotate(f"Γ* = {gamma_star:.3f}", xy=(gamma_star, 0.98), xytext=(4, 0), textcoords="offset points",
                    color="firebrick", fontsize=9, va="top")
    else:
        ax.plot([], [], ls="none", label=star_label)
    ax.set_xlim(float(grid[0]), float(grid[-1]))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Γ: bias in the odds of treatment within a pair")
    ax.set_ylabel("upper bound on the p-value")
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return path

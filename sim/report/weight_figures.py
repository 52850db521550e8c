"""The figures of `python -m sim.weight`: a Love plot (|SMD| per covariate before and after weighting,
the 0.1 threshold, the denominator named on the axis) and the PS distributions by arm before and
after weighting. Each is meant to read alone: the estimand, the arms' n and ESS, and what a mark
means are on the figure itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

THRESHOLD = 0.1


def love_plot(path: Path, balance: pd.DataFrame, *, estimand: str, threshold: float = THRESHOLD) -> Path:
    """|difference| per covariate, before (open) and after (filled) weighting, largest before on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    b = balance.assign(_before=balance["diff_before"].abs(), _after=balance["diff_after"].abs())
    b = b.sort_values("_before").reset_index(drop=True)
    labels = [c + (" (raw diff.)" if d != "smd" else "") for c, d in zip(b["covariate"], b["diff_type"])]
    fig = Figure(figsize=(6.6, 1.6 + 0.32 * len(b)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(b))
    ax.hlines(y, b["_after"], b["_before"], color="0.8", lw=1)
    ax.plot(b["_before"], y, "o", mfc="white", mec="tab:red", ms=6, label="before weighting (unweighted)")
    ax.plot(b["_after"], y, "o", color="tab:blue", ms=6, label=f"after {estimand.upper()} weighting")
    ax.axvline(threshold, color="black", ls="--", lw=0.9, label=f"threshold {threshold:g}")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, max(1.05 * float(np.nanmax(b[["_before", "_after"]].to_numpy())), 1.5 * threshold))
    denoms = sorted({d for d in b["denominator"] if d})
    raw = " ('raw diff.': |difference in proportions|)" if (b["diff_type"] != "smd").any() else ""
    ax.set_xlabel(f"|standardised mean difference|, treated - control{raw}\n"
                  f"SMD denominator: {'; '.join(denoms) or 'none'}", fontsize=9)
    over = int((b["_after"] > threshold).sum())
    ax.set_title(f"Balance, {estimand.upper()} weights: {over} of {len(b)} covariates above "
                 f"{threshold:g} after weighting", fontsize=10)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return path


def overlap_plot(path: Path, ps, treated, weights, *, estimand: str, ess: pd.DataFrame) -> Path:
    """Histograms (densities) of the PS by arm: unweighted on the left, weighted on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ps = np.asarray(ps, dtype=float)
    t = np.asarray(treated).astype(bool)
    w = np.asarray(weights, dtype=float)
    e = ess.set_index("arm")
    fig = Figure(figsize=(9.0, 3.8))
    FigureCanvasAgg(fig)
    bins = np.linspace(0, 1, 41)
    for k, (when, ww) in enumerate((("before weighting", np.ones_like(w)), (f"after {estimand.upper()} weighting", w))):
        ax = fig.add_subplot(1, 2, k + 1)
        for arm, rows, colour in (("treated", t, "tab:red"), ("control", ~t, "tab:blue")):
            n = int(e.loc[arm, "n"])
            size = f"n = {n}" if k == 0 else f"ESS = {e.loc[arm, 'ess_after']:.1f} of {n}"
            ax.hist(ps[rows], bins=bins, weights=ww[rows], density=True, alpha=0.45, color=colour,
                    label=f"{arm} ({size})")
        ax.set_xlim(0, 1)
        ax.set_xlabel("estimated propensity score")
        ax.set_ylabel("density within arm" + (" (weighted)" if k else ""))
        ax.set_title(when, fontsize=10)
        ax.legend(fontsize=8, framealpha=0.9)
        ax.grid(alpha=0.3, lw=0.5)
    fig.suptitle("Propensity-score distributions by arm: overlap before and after weighting", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    return path

"""The figures methods papers use, with their Monte Carlo SEs: the zip plot of CI coverage (Morris,
White & Crowther 2019, from the replicates), the nested-loop plot of a multi-factor grid (Rücker &
Schwarzer 2014) and a forest (lollipop) plot of one measure across analyses."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from sim.report.figures import _reference_label, label_panel, plt
from sim.report.plot_parts import (BARS, _code, _label, _ordered_levels, factor_label, finish,  # noqa: F401
                                   is_proportion, level_text, measure_label, outcome_unit, select)

# -- figures methods papers use: zip plot, nested-loop plot, forest (lollipop) plot ------------------


def _panel_grid(n_rows: int, n_cols: int, width: float, height: float, **kw):
    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False, **kw)


# ---- zip plot

def zip_frame(replicates: pd.DataFrame, analysis: str, truth: str, where: dict | None = None) -> pd.DataFrame:
    """The replicates a zip plot draws (Morris, White & Crowther 2019, Fig. 5): one analysis, the
    rows matching `where`, with a CI and a true value. Adds `truth` (the true value), `covers`
    (ci_low <= truth <= ci_high, as the coverage in summary.csv), `z` (|estimate - truth| / se, or
    for an analysis without an estimate |CI midpoint - truth| / CI half-width, which orders the
    same for a Wald CI) and `centile` (its fractional centile, 100 rank / n, within the condition,
    outcome and visit)."""
    if not {"analysis", "outcome", "timepoint", "ci_low", "ci_high", truth} <= set(replicates.columns):
        return replicates.iloc[:0].assign(truth=[], covers=[], z=[], centile=[])
    d = select(replicates[replicates["analysis"] == analysis], where)
    num = lambda c: pd.to_numeric(d[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan) \
        if c in d else np.full(len(d), np.nan)  # noqa: E731
    lo, hi, th, est, se = num("ci_low"), num("ci_high"), num(truth), num("estimate"), num("se")
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(th)
    d = d.loc[ok].copy()
    lo, hi, th, est, se = lo[ok], hi[ok], th[ok], est[ok], se[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        wald = np.abs(est - th) / se
        half = (hi - lo) / 2
        mid = np.where(np.abs((lo + hi) / 2 - th) == 0, 0.0, np.abs((lo + hi) / 2 - th) / half)
    z = np.where(np.isfinite(wald), wald, mid)
    d["truth"], d["covers"], d["z"] = th, (lo <= th) & (th <= hi), np.nan_to_num(z, nan=np.inf)
    keys = [k for k in ("condition", "outcome", "timepoint") if k in d]
    d["_miss"] = ~d["covers"]
    d = d.sort_values(["z", "_miss"], kind="stable").drop(columns="_miss")  # ties: the misses above
    rank = d.groupby(keys, sort=False).cumcount() + 1 if keys else pd.Series(np.arange(1, len(d) + 1), d.index)
    size = d.groupby(keys, sort=False)["z"].transform("size") if keys else len(d)
    d["centile"] = 100.0 * rank / size
    return d


def zip_figure(replicates: pd.DataFrame, analysis: str, truth: str, title: str, where: dict | None = None,
               by: str | None = None, level: float = 0.95):
    """The zip plot as a matplotlib figure (None without usable replicates): panels outcome
    (columns) x [level of `by`] x visit (rows). The CIs not covering the truth are the collections
    with gid 'not_covering'."""
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import MaxNLocator

    d = zip_frame(replicates, analysis, truth, where)
    if d.empty:
        return None
    outcomes = [o for o in dict.fromkeys(replicates["outcome"]) if o in set(d["outcome"])]
    times = [t for t in dict.fromkeys(replicates["timepoint"]) if t in set(d["timepoint"])]
    levels = _ordered_levels(d[by]) if by else [None]
    rows = [(lv, t) for lv in levels for t in times]
    fig, axes = _panel_grid(len(rows), len(outcomes), 3.0, 2.6)
    for i, (lv, t) in enumerate(rows):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            p = d[(d["outcome"] == o) & (d["timepoint"] == t)]
            if by:
                p = select(p, {by: lv})
            if p.empty:
                ax.set_axis_off()
                continue
            lo, hi, th, y = (p[c].to_numpy(dtype=float) for c in ("ci_low", "ci_high", "truth", "centile"))
            centred = np.ptp(th) > 1e-9 * max(1.0, np.abs(th).max())  # the truth varies by replicate
            shift = th if centred else np.zeros_like(th)
            ref = 0.0 if centred else th[0]
            cov = p["covers"].to_numpy()
            n, k = len(p), int((~cov).sum())
            c = cov.mean()
            mcse = np.sqrt(c * (1 - c) / n)
            lw = float(np.clip(120 / n, 0.3, 1.5))
            for mask, colour, gid, label in ((cov, "tab:blue", "covering", f"covers ({n - k})"),
                                             (~cov, "tab:red", "not_covering", f"does not cover ({k})")):
                segs = np.stack([np.column_stack([lo[mask] - shift[mask], y[mask]]),
                                 np.column_stack([hi[mask] - shift[mask], y[mask]])], axis=1)
                lc = LineCollection(segs, colors=colour, linewidths=lw, label=label)
                lc.set_gid(gid)
                ax.add_collection(lc)
            ax.axhspan(100 * max(c - 1.96 * mcse, 0.0), 100 * min(c + 1.96 * mcse, 1.0), color="gold", alpha=0.35, lw=0,
                       label="coverage ± 1.96 MCSE")
            ax.axhline(100 * c, color="goldenrod", lw=0.8)
            ax.axhline(100 * level, color="black", lw=0.8, ls="--", label=f"{100 * level:g} %")
            ax.axvline(ref, color="black", lw=0.9)
            x = np.concatenate([lo - shift, hi - shift])
            a, b = np.nanpercentile(x, [0.5, 99.5])
            a, b = min(a, ref), max(b, ref)
            pad = 0.05 * (b - a or 1.0)
            ax.set_xlim(a - pad, b + pad)
            ax.set_ylim(0, 100)
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.tick_params(labelsize=7)
            head = f"{o}, {t}" + (f", {by}={_label(lv)}" if by else "")
            ax.set_title(f"{head}\ncoverage {100 * c:.1f}% (MCSE {100 * mcse:.1f}), {k} of {n} miss", fontsize=8)
            if j == 0:
                ax.set_ylabel("centile of |z|", fontsize=8)
            if i == len(rows) - 1 or not centred:
                ax.set_xlabel("95% CI minus the true value" if centred else "95% CI (line: true value)", fontsize=7)
    shown = [ax for ax in axes.flat if ax.axison]
    handles, labels = shown[0].get_legend_handles_labels()
    labels = [lb.split(" (")[0] for lb in labels]  # the counts are each panel's: in its title
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if len(rows) > 1 else 0.09, 1, 1))
    return fig


def zip_plot(replicates: pd.DataFrame, analysis: str, truth: str, path: Path, title: str,
             where: dict | None = None, by: str | None = None) -> Path | None:
    fig = zip_figure(replicates, analysis, truth, title, where=where, by=by)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- nested-loop plot

def nested_order(summary: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """The distinct conditions (combinations of `factors`) in nested-loop order: factors[0] the
    outermost loop, each factor's levels ascending (a missing level, e.g. no caliper, last)."""
    combos = summary[list(factors)].drop_duplicates().reset_index(drop=True)
    if not factors or combos.empty:
        return combos
    codes = [_code(combos[f], _ordered_levels(summary[f])) for f in factors]
    return combos.iloc[np.lexsort(codes[::-1])].reset_index(drop=True)


def nested_loop_figure(summary: pd.DataFrame, factors: Sequence[str], measure: str, analyses: Sequence[str],
                       title: str, ylabel: str, reference: float | None = None, where: dict | None = None):
    """(figure, order) of a nested-loop plot (Rücker & Schwarzer 2014), or None without rows: the
    measure of every condition on one x axis, ordered by nested factor levels (factors[0]
    outermost), step lines with 2 x MCSE bars; underneath, one step line per factor showing its
    level. A proportion (rejection, coverage) puts all outcomes in one panel per visit, on one
    shared y axis; a measure in outcome units (bias, MSE) gets one panel per outcome (its unit in
    the y label), a line per visit. One legend under the panels, the bars in a footnote."""
    d = select(summary[(summary["measure"] == measure) & summary["analysis"].isin(analyses)], where)
    if d.empty or not factors:
        return None
    order = nested_order(d, factors)
    ylabel = measure_label(measure) if ylabel == measure else ylabel
    pos = {tuple(_label(v) for v in r): i for i, r in enumerate(order.itertuples(index=False))}
    d = d.assign(_x=[pos[tuple(_label(v) for v in r)] for r in d[list(factors)].itertuples(index=False)])
    several = len(analyses) > 1
    prop = is_proportion(measure)
    row_key, line_key = ("timepoint", "outcome") if prop else ("outcome", "timepoint")
    rows = list(dict.fromkeys(d[row_key]))
    n_x = len(order)
    width = min(max(7.0, 0.22 * n_x + 2.5), 16)
    fig = plt.figure(figsize=(width, 2.2 * len(rows) + 0.45 * len(factors) + 0.8), layout="constrained")
    grid = fig.add_gridspec(len(rows) + 1, 1, height_ratios=[2.2] * len(rows) + [0.45 * len(factors) + 0.2])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[i, 0], sharex=axes[0], sharey=axes[0] if prop else None)
             for i in range(1, len(rows))]
    legend_ax = fig.add_subplot(grid[len(rows), 0], sharex=axes[0])
    x = np.arange(n_x)
    # boundaries between the levels of the outermost factor (dotted) and of the second (faint)
    bounds = [(np.flatnonzero(np.diff(_code(order[f], _ordered_levels(order[f])))) + 0.5, lw)
              for f, lw in zip(factors[:2], (0.8, 0.4))]
    handles: dict[str, object] = {}
    for ax, r in zip(axes, rows):
        p = d[d[row_key] == r]
        for key, g in p.groupby([line_key, "analysis"], sort=False):
            y, e = np.full(n_x, np.nan), np.full(n_x, np.nan)
            y[g["_x"].to_numpy()] = g["value"].to_numpy(dtype=float)
            e[g["_x"].to_numpy()] = 2 * g["mcse"].fillna(0).to_numpy(dtype=float)
            label = f"{key[0]} [{key[1]}]" if several else str(key[0])
            colour = f"C{list(dict.fromkeys(d[line_key])).index(key[0]) % 10}"
            line, = ax.step(x, y, where="mid", lw=1.1, color=colour,
                            ls=["-", "--", ":", "-."][analyses.index(key[1]) % 4] if several else "-")
            ax.errorbar(x, y, yerr=e, fmt="o", ms=2.5, capsize=1.5, lw=0.8, color=colour)
            handles.setdefault(label, line)
        if reference is not None:
            handles.setdefault(_reference_label(measure, reference),
                               ax.axhline(reference, color="0.4", lw=0.8, ls="--"))
        for where_, lw in bounds:
            for b in where_:
                ax.axvline(b, color="grey", lw=lw, ls=":")
        unit = outcome_unit(measure, r) if row_key == "outcome" else None
        ax.set_title(f"{r}" + (f" ({unit})" if unit else ""), fontsize=8.5, loc="left")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=False)
    if prop:
        lo, hi = axes[0].get_ylim()
        axes[0].set_ylim(max(lo, -0.02), min(hi, 1.02))
    # the nested-loop legend: factor k's level as a step line in band k (the outermost at the top)
    for k, f in enumerate(factors):
        levels = _ordered_levels(order[f])
        code = _code(order[f], levels)
        base = len(factors) - 1 - k
        y = base + 0.7 * (code / max(len(levels) - 1, 1))
        legend_ax.step(x, y, where="mid", color="black", lw=0.9)
        legend_ax.text(-0.5, base + 0.78, f"{factor_label(f)}: {', '.join(level_text(f, v) for v in levels)}",
                       fontsize=6.5, va="bottom", ha="left")
    legend_ax.set_ylim(-0.15, max(len(factors), 1) + 0.1)
    legend_ax.set_xlim(-0.6, n_x - 0.4)
    legend_ax.set_yticks([])
    legend_ax.tick_params(labelbottom=False, bottom=False)
    for s in ("top", "right", "left"):
        legend_ax.spines[s].set_visible(False)
    legend_ax.set_xlabel(f"{n_x} conditions, nested: {' > '.join(factors)} (outermost first)", fontsize=7)
    finish(fig, title, list(handles.values()), list(handles), BARS + " Dotted verticals: a change of the "
           "outermost factor's level (fainter: the second factor's).")
    return fig, order


def nested_loop_plot(summary: pd.DataFrame, factors: Sequence[str], measure: str, analyses: Sequence[str],
                     path: Path, title: str, ylabel: str, reference: float | None = None,
                     where: dict | None = None) -> Path | None:
    out = nested_loop_figure(summary, factors, measure, analyses, title, ylabel, reference, where)
    if out is None:
        return None
    fig, _ = out
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- forest (lollipop) plot

def forest_figure(summary: pd.DataFrame, measure: str, title: str, analyses: Sequence[str] | None = None,
                  where: dict | None = None, by: str | None = None, reference: float | None = None):
    """One measure across analyses (rows, in the given order) with 2 x MCSE bars, a stem from the
    reference line (from 0 for a proportion without one: a lollipop), panels outcome (columns) x
    visit (rows); one marker colour per level of `by`, in one legend under the panels. A
    proportion shares one x axis (within 0-1), a measure in outcome units one per outcome. None
    without rows."""
    d = summary[summary["measure"] == measure]
    if analyses:
        d = d[d["analysis"].isin(analyses)]
    d = select(d, where)
    if d.empty:
        return None
    names = [a for a in (analyses or dict.fromkeys(d["analysis"])) if a in set(d["analysis"])]
    outcomes = list(dict.fromkeys(d["outcome"]))
    times = list(dict.fromkeys(d["timepoint"]))
    levels = _ordered_levels(d[by]) if by else [None]
    step = 0.7 / max(len(levels), 1)
    prop = is_proportion(measure)
    stem = reference if reference is not None else (0.0 if prop else None)
    fig, axes = _panel_grid(len(times), len(outcomes), 3.0, 0.45 * len(names) + 1.1, sharey=True,
                            sharex="all" if prop else "col", layout="constrained")
    handles, labels = [], []
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            p = d[(d["outcome"] == o) & (d["timepoint"] == t)]
            for m, lv in enumerate(levels):
                q = select(p, {by: lv}) if by else p
                y = np.array([names.index(a) for a in q["analysis"]]) + (m - (len(levels) - 1) / 2) * step
                v = q["value"].to_numpy(dtype=float)
                colour = f"C{m}"
                if stem is not None:
                    ax.hlines(y, stem, v, color=colour, lw=0.8, alpha=0.6)
                h = ax.errorbar(v, y, xerr=2 * q["mcse"].fillna(0).to_numpy(dtype=float), fmt="o", ms=4, capsize=2,
                                color=colour, lw=1.0)
                if by and i == j == 0:
                    handles.append(h)
                    labels.append(level_text(by, lv, legend=True))
            if reference is not None:
                line = ax.axvline(reference, color="0.4", lw=0.8, ls="--")
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_ylim(len(names) - 0.5, -0.5)
            ax.tick_params(axis="x", labelsize=7)
            unit = outcome_unit(measure, o)
            label_panel(ax, f"{o}, {t}" + (f" ({unit})" if unit else ""), first_col=False,
                        last_row=i == len(times) - 1, xlabel=measure_label(measure), ylabel="")
    if prop:
        lo, hi = axes[0, 0].get_xlim()
        axes[0, 0].set_xlim(max(lo, -0.02), min(hi, 1.02))
    if reference is not None:
        handles.append(line)
        labels.append(_reference_label(measure, reference))
    finish(fig, title, handles, labels, BARS + (f" Stems from {stem:g}." if stem is not None else ""))
    return fig


def forest_plot(summary: pd.DataFrame, measure: str, path: Path, title: str, analyses: Sequence[str] | None = None,
                where: dict | None = None, by: str | None = None, reference: float | None = None) -> Path | None:
    fig = forest_figure(summary, measure, title, analyses, where, by, reference)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

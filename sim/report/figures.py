"""Figures (PNG) from the tidy summary: a measure against the first grid factor, one panel per
outcome x timepoint, one line per level of the other factors, MCSE bars; heatmaps of two factors
(sim.report.method_figures draws the figures methods papers use; sim.report.plot_parts holds the
labels, axes and finish they share)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sim.report.plot_parts import (BARS, XAxis, _label, _ordered_levels, factor_label,  # noqa: E402
                                   finish, is_proportion, level_text, measure_label, outcome_unit, select)


def _complete_title(title: str) -> str:
    """'... vs the matched' (an estimand's bare name closing the title) as '... vs the true effect
    (estimand: matched)'."""
    return re.sub(r" vs the ([a-z_]+)$", r" vs the true effect (estimand: \1)", title)


def _styles(keys: list[tuple], hue: list[str]) -> tuple[list[tuple[str, str, str]], list, list]:
    """(colour, line style, marker) per line: with two or more hue factors the last one (up to 4
    levels) sets the line style and marker, the others the colour; and the legend of such a
    split: one entry per colour and one per style (else no entries: one per line)."""
    split = len(hue) >= 2 and len({_label(k[-1]) for k in keys}) <= 4
    head = list(dict.fromkeys(tuple(_label(x) for x in (k[:-1] if split else k)) for k in keys))
    tail = list(dict.fromkeys(_label(k[-1]) for k in keys)) if split else []
    out, handles, labels = [], [], []
    for k in keys:
        c = head.index(tuple(_label(x) for x in (k[:-1] if split else k)))
        s = tail.index(_label(k[-1])) if split else 0
        out.append((f"C{c % 10}", ["-", "--", ":", "-."][s], "osD^"[s]))
        if split and len(labels) == c:  # the first line of a new colour
            handles.append(Line2D([], [], color=out[-1][0], lw=2))
            labels.append(", ".join(level_text(f, v, legend=True) for f, v in zip(hue[:-1], k[:-1])))
    if split:
        seen = {_label(k[-1]): k[-1] for k in keys}
        for s, t in enumerate(tail):
            handles.append(Line2D([], [], color="0.3", ls=["-", "--", ":", "-."][s], marker="osD^"[s], ms=3.5))
            labels.append(level_text(hue[-1], seen[t], legend=True))
    return out, handles, labels


def _groups(df: pd.DataFrame, hue: list[str], levels_of: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The lines (combinations of the hue columns) in the order of their levels."""
    if not hue:
        return [((), df)]
    groups = [(k if isinstance(k, tuple) else (k,), g) for k, g in df.groupby(hue, dropna=False, sort=False)]
    rank = [{_label(v): i for i, v in enumerate(_ordered_levels(levels_of[h]))} for h in hue]
    return sorted(groups, key=lambda kg: tuple(r[_label(v)] for r, v in zip(rank, kg[0])))


def _draw_lines(axes_of, df, xa: XAxis, hue: list[str], levels_of: pd.DataFrame) -> tuple[list, list, str]:
    """One line per hue group in each panel (`axes_of(d)` yields (ax, rows) pairs), numbers joined,
    the other levels open markers, the lines shifted slightly sideways; returns the legend's
    handles and labels and a note on the shift (and on lines that coincide)."""
    groups = _groups(df, hue, levels_of)
    styles, handles, labels = _styles([k for k, _ in groups], hue)
    split, at = bool(handles), {}
    spread = min(0.04, 0.01 * len(groups)) * xa.span
    for n, ((key, g), (colour, ls, marker)) in enumerate(zip(groups, styles)):
        dodge = spread * (n / (len(groups) - 1) - 0.5) if len(groups) > 1 else 0.0
        kw = dict(color=colour, marker=marker, ms=3.5, capsize=2, elinewidth=0.9)
        for ax, d in axes_of(g):
            x, num = xa.where(d[xa.factor]), xa.numeric(d[xa.factor])
            y, e = d["value"].to_numpy(dtype=float), 2 * d["mcse"].fillna(0).to_numpy(dtype=float)
            for p, v in zip(x, y):
                at.setdefault((id(ax), p), []).append(v)
            x = x + dodge
            o = np.argsort(x[num], kind="stable")
            h = ax.errorbar(x[num][o], y[num][o], yerr=e[num][o], ls=ls, lw=1.1, **kw)
            if (~num).any():
                ax.errorbar(x[~num], y[~num], yerr=e[~num], ls="none", mfc="white", **kw).lines[0].set_gid("apart")
        if hue and not split:
            handles.append(h)
            labels.append(", ".join(level_text(f, v, legend=True) for f, v in zip(hue, key)))
    if len(groups) < 2:
        return handles, labels, ""
    same = all(np.ptp(v) <= 1e-9 * max(1.0, np.max(np.abs(v))) for v in at.values() if len(v) > 1)
    return handles, labels, ("The lines coincide (equal values in every condition); shifted slightly sideways to "
                             "show each." if same else "Lines shifted slightly sideways to keep their bars apart.")


def _reference_label(measure: str, reference: float) -> str:
    if measure.startswith("bias"):
        return f"{reference:g}: no bias"
    if measure.startswith("rejection"):
        return f"alpha = {reference:g}"
    return f"nominal {reference:g}" if measure.startswith("coverage") else f"reference {reference:g}"


def _reference(axes, measure: str, reference: float | None, handles: list, labels: list) -> None:
    if reference is None:
        return
    for ax in np.ravel(axes):
        line = ax.axhline(reference, color="0.4", lw=0.8, ls="--")
    handles.append(line)
    labels.append(_reference_label(measure, reference))


def measure_figure(summary: pd.DataFrame, factors: Sequence[str], measure: str, analyses: Sequence[str],
                   title: str, ylabel: str, reference: float | None = None):
    """Panels outcome (columns) x timepoint (rows); x = factors[0] (XAxis: numbers at their values,
    'none' past a break at the wide end); lines = combinations of the analyses (when several) and
    the remaining factors, in one legend under the panels; error bars = 2 x MCSE (footnote). A
    proportion shares one y axis (within 0-1) over all panels; a measure in outcome units shares
    it within an outcome (a column), its unit in the panel titles. None without rows."""
    df = summary[(summary["measure"] == measure) & summary["analysis"].isin(analyses)]
    if df.empty or not factors:
        return None
    hue = (["analysis"] if len(analyses) > 1 else []) + list(factors[1:])
    xa = XAxis.of(summary[factors[0]], factors[0])
    outcomes, times = list(dict.fromkeys(df["outcome"])), list(dict.fromkeys(df["timepoint"]))
    prop = is_proportion(measure)
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.1 * len(outcomes) + 0.5, 2.5 * len(times) + 0.6),
                             squeeze=False, sharex=True, sharey=True if prop else "col", layout="constrained")

    def panels(g):
        for i, t in enumerate(times):
            for j, o in enumerate(outcomes):
                yield axes[i, j], g[(g["outcome"] == o) & (g["timepoint"] == t)]

    handles, labels, shift = _draw_lines(panels, df, xa, hue, df)
    _reference(axes, measure, reference, handles, labels)
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            xa.draw(ax)
            unit = outcome_unit(measure, o)
            ax.set_title(f"{o}, {t}" + (f" ({unit})" if unit else ""), fontsize=9)
            ax.tick_params(axis="y", labelsize=7.5)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8.5)
    if prop:
        lo, hi = axes[0, 0].get_ylim()
        axes[0, 0].set_ylim(max(lo, -0.02), min(hi, 1.02))
    fig.supxlabel(xa.label(), fontsize=9)
    finish(fig, _complete_title(title), handles, labels, " ".join(filter(None, [BARS, xa.note(), shift])))
    return fig


def _save(fig, path: Path, dpi: int = 110) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def measure_plot(summary: pd.DataFrame, factors: Sequence[str], measure: str, analyses: Sequence[str], path: Path,
                 title: str, ylabel: str, reference: float | None = None) -> Path | None:
    """measure_figure written to `path` (None without rows)."""
    return _save(measure_figure(summary, factors, measure, analyses, title, ylabel, reference), path)


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


def scalar_figure(summary: pd.DataFrame, factors: Sequence[str], measure: str, title: str, ylabel: str):
    """A per-condition measure (e.g. mean pairs; its first row per condition) against the first
    factor, one line per level of the others; None without rows."""
    df = summary[summary["measure"] == measure]
    if df.empty or not factors:
        return None
    df = df.drop_duplicates(subset=list(factors))
    xa = XAxis.of(summary[factors[0]], factors[0])
    fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
    handles, labels, shift = _draw_lines(lambda g: [(ax, g)], df, xa, list(factors[1:]), df)
    xa.draw(ax)
    ax.set_xlabel(xa.label(), fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    finish(fig, title, handles, labels, " ".join(filter(None, [BARS, xa.note(), shift])))
    return fig


def scalar_plot(summary: pd.DataFrame, factors: Sequence[str], measure: str, path: Path, title: str,
                ylabel: str) -> Path | None:
    """scalar_figure written to `path` (None without rows)."""
    return _save(scalar_figure(summary, factors, measure, title, ylabel), path)


def _decimals(mcse: np.ndarray) -> int:
    """Decimals for a panel's cells: the MCSE's second significant digit (a proportion: 3)."""
    m = np.nanmedian(mcse) if np.isfinite(mcse).any() and np.nanmedian(mcse) > 0 else 0.01
    return int(np.clip(1 - np.floor(np.log10(m)), 0, 5))


def _colour_bar(bar, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    bar.locator = MaxNLocator(nbins=5)
    bar.update_ticks()
    bar.ax.tick_params(labelsize=7)
    bar.set_label(label, fontsize=8)


def heatmap_figure(summary: pd.DataFrame, x: str, y: str, measure: str, analysis: str, title: str,
                   where: dict | None = None, complement: bool = False):
    """Panels outcome (columns) x timepoint (rows); a cell per (x, y) level with its value (1 -
    value if `complement`) and its MCSE in brackets; `where` fixes the other factors. A proportion
    has one 0-1 colour scale and bar; another measure one scale per outcome (its units; a bias
    diverging around 0), its bar under the column. None without rows."""
    df = select(summary[(summary["measure"] == measure) & (summary["analysis"] == analysis)], where)
    if df.empty:
        return None
    xs, ys = _ordered_levels(df[x]), _ordered_levels(df[y])[::-1]
    outcomes, times = list(dict.fromkeys(df["outcome"])), list(dict.fromkeys(df["timepoint"]))
    prop = is_proportion(measure)
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.3 * len(outcomes), 2.7 * len(times) + 0.4),
                             squeeze=False, layout="constrained")
    label = f"1 - {measure_label(measure)}" if complement else measure_label(measure)
    for j, o in enumerate(outcomes):
        grids = []
        for t in times:
            d = df[(df["outcome"] == o) & (df["timepoint"] == t)]
            at = {(_label(b), _label(a)): (v, m) for a, b, v, m in zip(d[x], d[y], d["value"], d["mcse"])}
            cells = np.array([[at.get((_label(b), _label(a)), (np.nan, np.nan)) for a in xs] for b in ys], dtype=float)
            if complement:
                cells[..., 0] = 1.0 - cells[..., 0]
            grids.append(cells)
        values = np.stack([g[..., 0] for g in grids])
        if prop:
            cmap, lo, hi = "viridis", 0.0, 1.0
        else:
            top = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
            cmap, lo, hi = (("RdBu_r", -top, top) if measure.startswith("bias")
                            else ("viridis", float(np.nanmin(values)), float(np.nanmax(values))))
        places = 3 if prop else _decimals(np.stack([g[..., 1] for g in grids]))
        fmt, mfmt = f"{{:.{places - prop}f}}", f"{{:.{places}f}}"  # a proportion: 2 decimals, its MCSE 3
        for i, cells in enumerate(grids):
            ax = axes[i, j]
            im = ax.imshow(cells[..., 0], vmin=lo, vmax=hi, cmap=cmap, aspect="auto")
            for (r, c), v in np.ndenumerate(cells[..., 0]):
                if np.isfinite(v):
                    rgb = im.cmap(im.norm(v))[:3]
                    m = cells[r, c, 1]
                    ax.text(c, r, fmt.format(v) + (f"\n({mfmt.format(m)})" if np.isfinite(m) else ""), ha="center",
                            va="center", fontsize=6.5, linespacing=1.1,
                            color="white" if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 0.5 else "black")
            ax.set_xticks(range(len(xs)), [level_text(x, a).replace(" (", "\n(") for a in xs], fontsize=7)
            ax.set_yticks(range(len(ys)), [level_text(y, b).replace(" (", "\n(") for b in ys], fontsize=7)
            ax.set_title(f"{o}, {times[i]}", fontsize=8.5)
            if i == len(times) - 1:
                ax.set_xlabel(textwrap.fill(factor_label(x), 40), fontsize=7.5)
            if j == 0:
                ax.set_ylabel(textwrap.fill(factor_label(y), 34), fontsize=7.5)
        if not prop:
            unit = outcome_unit(measure, o)
            _colour_bar(fig.colorbar(im, ax=axes[:, j], location="bottom", shrink=0.85, aspect=25),
                        f"{label} ({unit})" if unit else label)
    if prop:
        _colour_bar(fig.colorbar(im, ax=axes, location="right", shrink=0.9), label)
    note = ("Each cell: the value and, in brackets, its Monte Carlo SE (MCSE)"
            + (f"; the value is 1 - {measure} (same MCSE)." if complement else ".")
            + ("" if prop else " Colour scales per outcome (different units)"
               + (", centred at 0 (no bias)." if measure.startswith("bias") else ".")))
    finish(fig, title, note=note)
    return fig


def heatmap_plot(summary: pd.DataFrame, x: str, y: str, measure: str, analysis: str, path: Path, title: str,
                 where: dict | None = None, complement: bool = False) -> Path | None:
    """heatmap_figure written to `path` (None without rows)."""
    return _save(heatmap_figure(summary, x, y, measure, analysis, title, where, complement), path)

"""The pieces the figures share (sim.report.figures, sim.report.method_figures): factor and
measure labels with their units, the levels of a factor in order (a missing one, e.g. no caliper,
last), the x axis of a factor (numeric levels at their values, the others past a break at the wide
end), the rows a `where` selects, and a finish that wraps the title to the figure and puts one
legend and a footnote under the panels."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.transforms import blended_transform_factory

#: grid factor (full or last dotted name) -> (axis label with its unit, legend text of a level {v})
FACTOR_LABELS = {
    "caliper": ("caliper (SD of the logit PS)", "caliper {v} SD"),
    "effect_mcid": ("true effect on the change (MCID)", "true effect {v} MCID"),
    "effect_sd": ("true effect on the change (SD of the change)", "true effect {v} SD"),
    "confounding": ("confounding strength (× the published log-ORs)", "confounding × {v}"),
    "n": ("cohort size N (patients)", "N = {v}"),
    "n_per_arm": ("n per arm (patients)", "n per arm = {v}"),
    "survival_effect": ("hazard ratio of decompression on death", "hazard ratio on death {v}"),
    "health_scale": ("attrition's dependence on baseline health (× as calibrated)",
                     "attrition's health dependence × {v}"),
    "treatment_log_or": ("odds ratio of U on decompression", "OR of U on decompression {v}"),
    "outcome_effect": ("effect of U on the change (SD of the change)", "U's effect on the change {v} SD"),
    "prevalence": ("prevalence of U", "U prevalence {v}"),
    "analysis": ("analysis", "{v}"),
}
#: measure -> its label (else the name with spaces)
MEASURE_LABELS = {
    "rejection": "rejection rate (two-sided)", "rejection_benefit": "rejection in favour of treatment",
    "rejection_harm": "rejection against treatment", "coverage": "coverage of the 95% CI", "bias": "bias",
    "mse": "mean squared error", "empse": "empirical SE", "mean_n_pairs": "matched pairs (mean)",
}
#: the units of an outcome's change (conf/study labels)
OUTCOME_UNITS = {"barthel": "Barthel points", "eq5d": "EQ-5D index", "vas": "VAS mm", "face": "face-scale points"}
#: measures on a 0-1 scale, shared by every outcome (one y axis can hold all outcomes)
PROPORTION_PREFIXES = ("rejection", "coverage", "mean_share", "mean_mcid_excluded")
#: measures in the outcome's units (MSE: squared)
UNIT_PREFIXES = ("bias", "empse", "modelse", "mse", "true_", "mean_bound", "mean_ci_width")
BARS = "Bars: ± 2 MCSE (Monte Carlo SE)."


def is_proportion(measure: str) -> bool:
    return measure.startswith(PROPORTION_PREFIXES)


def _missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and not _missing(v)


def _label(v) -> str:
    if _missing(v):
        return "none"
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _last(factor: str) -> str:
    return factor.split(".")[-1]


def _exp_factor(factor: str) -> bool:
    """A factor held as a log odds ratio, shown as the odds ratio."""
    return _last(factor).endswith("log_or")


def factor_label(factor: str) -> str:
    """The axis label of a grid factor with its unit (FACTOR_LABELS; else its last name, spaced)."""
    hit = FACTOR_LABELS.get(factor) or FACTOR_LABELS.get(_last(factor))
    if hit:
        return hit[0]
    if _exp_factor(factor):
        return (_last(factor)[:-len("log_or")].replace("_", " ").strip() + " odds ratio").strip()
    return _last(factor).replace("_", " ")


def level_text(factor: str, v, legend: bool = False) -> str:
    """A level as a tick label ('none (no caliper)' for a missing one) or, with `legend`, as a
    legend entry ('caliper 0.2 SD', 'no caliper'); a log odds ratio as its odds ratio."""
    if _missing(v):
        return f"no {_last(factor).replace('_', ' ')}" if legend else f"none (no {_last(factor).replace('_', ' ')})"
    text = f"{np.exp(float(v)):.3g}" if _exp_factor(factor) and _is_number(v) else _label(v)
    if not legend:
        return text
    if factor == "analysis" and text.startswith("crude_"):
        return f"{text} (unmatched)"
    hit = FACTOR_LABELS.get(factor) or FACTOR_LABELS.get(_last(factor))
    return hit[1].format(v=text) if hit else f"{factor_label(factor)} = {text}"


def measure_label(measure: str) -> str:
    return MEASURE_LABELS.get(measure, measure.replace("_", " "))


def outcome_unit(measure: str, outcome: str) -> str | None:
    """The unit of `measure` for `outcome` ('Barthel points', '(VAS mm)²' for an MSE), None for a
    measure without the outcome's units."""
    if not measure.startswith(UNIT_PREFIXES):
        return None
    unit = OUTCOME_UNITS.get(outcome, "outcome units")
    return f"({unit})²" if measure.startswith("mse") else unit


def _ordered_levels(values: pd.Series) -> list:
    """Distinct levels ascending (numbers numerically, else as text), a missing level last
    (no caliper = the widest)."""
    present = [v for v in dict.fromkeys(values) if not _missing(v)]
    try:
        present = sorted(present, key=float)
    except (TypeError, ValueError):
        present = sorted(present, key=str)
    return present + ([None] if values.isna().any() else [])


def _code(values: pd.Series, levels: list) -> np.ndarray:
    labels = [_label(v) for v in levels]
    return np.array([labels.index(_label(v)) for v in values])


def select(df: pd.DataFrame, where: dict | None) -> pd.DataFrame:
    """The rows whose columns match `where`: a number matches numerically, None matches a missing
    value (e.g. no caliper), a string exactly, a list any of its entries."""
    mask = np.ones(len(df), dtype=bool)
    for k, v in (where or {}).items():
        if k not in df:
            return df.iloc[:0]
        col, hit = df[k], np.zeros(len(df), dtype=bool)
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if x is None:
                hit |= col.isna().to_numpy()
            elif isinstance(x, str):
                hit |= (col.astype(str) == x).to_numpy()
            else:
                num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                hit |= np.isclose(num, float(x))
        mask &= hit
    return df[mask]


@dataclass
class XAxis:
    """The x axis of a factor: numeric levels at their values (on a log scale when positive and
    spanning a factor 8 or more; a log odds ratio on its own scale, labelled as odds ratios), then
    the other levels (a missing one last: no caliper, the widest) past a break, one step apart."""
    factor: str
    levels: list
    pos: np.ndarray
    n_numeric: int
    log: bool

    @classmethod
    def of(cls, values: pd.Series, factor: str) -> "XAxis":
        levels = _ordered_levels(values)
        num = sorted((v for v in levels if _is_number(v)), key=float)
        other = [v for v in levels if not _is_number(v)]
        t = np.array(num, dtype=float)
        log = len(t) >= 3 and t.min() > 0 and t.max() / t.min() >= 8 and not _exp_factor(factor)
        t = np.log10(t) if log else t
        span = float(np.ptp(t)) if len(t) > 1 else 0.0
        step = span / (len(t) - 1) if len(t) > 1 else 1.0
        start = t.max() + (max(1.5 * step, 0.2 * span) if span > 0 else 1.0) if len(t) else 0.0
        pos = np.concatenate([t, start + step * np.arange(len(other))])
        return cls(factor, num + other, pos, len(num), log)

    def where(self, values) -> np.ndarray:
        at = {_label(v): p for v, p in zip(self.levels, self.pos)}
        return np.array([at[_label(v)] for v in values], dtype=float)

    def numeric(self, values) -> np.ndarray:
        return np.array([_is_number(v) for v in values], dtype=bool)

    @property
    def span(self) -> float:
        return float(np.ptp(self.pos)) if len(self.pos) > 1 else 1.0

    def label(self) -> str:
        text = factor_label(self.factor)
        if not (self.log or (_exp_factor(self.factor) and self.n_numeric)):
            return text
        return text[:-1] + "; log scale)" if text.endswith(")") else text + " (log scale)"

    def ticklabels(self) -> list[str]:
        return [level_text(self.factor, v).replace(" (", "\n(") for v in self.levels]

    def draw(self, ax, fontsize: float = 7) -> None:
        ax.set_xticks(self.pos, self.ticklabels(), fontsize=fontsize)
        pad = 0.07 * self.span
        ax.set_xlim(self.pos.min() - pad, self.pos.max() + pad)
        if 0 < self.n_numeric < len(self.levels):  # the break between numbers and the other levels
            b = (self.pos[self.n_numeric - 1] + self.pos[self.n_numeric]) / 2
            ax.axvline(b, color="0.6", lw=0.7, ls=(0, (2, 2)), gid="break")
            ax.text(b, 0, "//", transform=blended_transform_factory(ax.transData, ax.transAxes), ha="center",
                    va="center", fontsize=8, clip_on=False, bbox=dict(fc="white", ec="none", pad=0.5))

    def note(self) -> str:
        other = [level_text(self.factor, v) for v in self.levels[self.n_numeric:]]
        if not other or not self.n_numeric:
            return ""
        return f"Right of the break (//), not on the numeric scale, open markers: {', '.join(other)}."


def _fit(text_artist, text: str, max_px: float, renderer) -> None:
    """Wrap the text (each paragraph) until its rendered width is at most `max_px`."""
    paras = text.split("\n")
    width = max(len(p) for p in paras)
    while True:
        text_artist.set_text("\n".join(textwrap.fill(p, width) if p else p for p in paras))
        if text_artist.get_window_extent(renderer).width <= max_px or width <= 20:
            return
        width = int(width * 0.92)


def finish(fig, title: str, handles: Sequence = (), labels: Sequence[str] = (), note: str = "",
           title_size: float = 10, dpi: float = 110) -> None:
    """Finish a figure made with constrained layout: the title wrapped to the figure's width, the
    panels laid out, then one figure-level legend (`handles`, `labels`) and a footnote (`note`)
    under them; the figure grows by their height (the layout is frozen, the panels moved up).
    Measured at the `dpi` it is saved with (text widths do not scale exactly with the dpi)."""
    fig.set_dpi(dpi)
    renderer = fig.canvas.get_renderer()
    _fit(fig.suptitle("", fontsize=title_size), title, 0.97 * fig.bbox.width, renderer)
    fig.draw_without_rendering()  # the constrained layout of the panels, titles and axis labels
    fig.set_layout_engine("none")
    width_in, height_in = fig.get_size_inches()
    inches = blended_transform_factory(fig.transFigure, fig.dpi_scale_trans)
    bottom = 0.06
    if note:
        foot = fig.text(0.01, bottom, "", fontsize=7, color="0.25", ha="left", va="bottom", transform=inches)
        _fit(foot, note, 0.97 * fig.bbox.width, renderer)
        bottom += foot.get_window_extent(renderer).height / fig.dpi + 0.06
    if handles:
        for ncol in range(len(labels), 0, -1):  # the most columns that fit the width
            leg = fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, bottom),
                             bbox_transform=inches, ncol=ncol, fontsize=7.5, frameon=False)
            if ncol == 1 or leg.get_window_extent(renderer).width <= 0.97 * fig.bbox.width:
                break
            leg.remove()
        bottom += leg.get_window_extent(renderer).height / fig.dpi + 0.02
    scale, shift = height_in / (height_in + bottom), bottom / (height_in + bottom)
    fig.set_figheight(height_in + bottom)
    for ax in fig.axes:
        p = ax.get_position()
        ax.set_position([p.x0, shift + scale * p.y0, p.width, scale * p.height])
    for text in (fig._suptitle, fig._supxlabel, fig._supylabel):
        if text is not None:
            text.set_y(shift + scale * text.get_position()[1])

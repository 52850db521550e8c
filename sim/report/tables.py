"""Side-by-side tables (published vs synthetic) as Markdown."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sim.cohort.study import GROUPS, Study


def _fmt_mean(m: float, s: float) -> str:
    digits = 2 if abs(m) < 5 else 1
    return f"{m:.{digits}f} ({s:.{digits}f})"


def _fmt_prop(k: float, n: float) -> str:
    return f"{int(round(k))} ({100 * k / n:.1f}%)" if n else "-"


def mean_sd_cell(x: np.ndarray) -> str:
    x = x[~np.isnan(x)]
    return _fmt_mean(float(x.mean()), float(x.std(ddof=1))) if x.size > 1 else "-"


def _synthetic_prop(x: np.ndarray) -> str:
    return f"{100 * float(np.mean(x)):.1f}%" if x.size else "-"


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if np.isnan(v) else f"{v:.4g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def key_table_markdown(table: pd.DataFrame) -> str:
    """A key table as Markdown: as it is, or, in the pivoted layout (a `measure` column, see
    sim.report.montecarlo.pivot_key_table), one table per measure under its label in bold."""
    if "measure" not in table.columns:
        return markdown(table)
    return "\n".join(f"**{m}**\n\n" + markdown(d.drop(columns="measure"))
                     for m, d in table.groupby("measure", sort=False))


def table1(study: Study, columns: Mapping[str, np.ndarray], sections: Sequence[str] = ("covariates", "surgery", "survival"),
           label: str = "synthetic") -> pd.DataFrame:
    """Table 1 by group: published value beside the synthetic one."""
    t = columns["treated"] == 1
    masks = {"treated": t, "control": ~t}
    rows = []
    for section in sections:
        for name, var in (study.raw.get(section) or {}).items():
            if not isinstance(var, Mapping) or "kind" not in var:
                continue
            if var["kind"] == "continuous":
                cells = {}
                for g in GROUPS:
                    cells[f"published {g}"] = _fmt_mean(var[g]["mean"], var[g]["sd"])
                    cells[f"{label} {g}"] = mean_sd_cell(columns[name][masks[g]].astype(float))
                rows.append({"variable": f"{name}, mean (SD)", **cells})
            elif var["kind"] == "binary":
                cells = {}
                for g in GROUPS:
                    cells[f"published {g}"] = _fmt_prop(var[g]["n"], study.n[g])
                    cells[f"{label} {g}"] = _synthetic_prop(columns[name][masks[g]])
                rows.append({"variable": f"{name}, n (%)", **cells})
            else:
                for k, cat in enumerate(var["categories"]):
                    cells = {}
                    for g in GROUPS:
                        cells[f"published {g}"] = _fmt_prop(var[g]["n"][k], study.n[g])
                        cells[f"{label} {g}"] = _synthetic_prop(columns[name][masks[g]] == k)
                    rows.append({"variable": f"{name} = {cat}, n (%)", **cells})
    order = ["variable"] + [f"{s} {g}" for g in GROUPS for s in ("published", label)]
    return pd.DataFrame(rows)[order]


def outcome_table(study: Study, columns: Mapping[str, np.ndarray], figure: str = "fig1",
                  masks: Mapping[str, np.ndarray] | None = None, label: str = "synthetic") -> pd.DataFrame:
    """Fig. 1 / Fig. 2 outcome means (SD) by group and time, published beside synthetic."""
    if masks is None:
        t = columns["treated"] == 1
        masks = {"treated": t, "control": ~t}
    rows = []
    for name, o in study.outcomes.items():
        for time in study.times:
            cells = {}
            for g in GROUPS:
                cells[f"published {g}"] = _fmt_mean(*o[figure][g][time])
                cells[f"{label} {g}"] = mean_sd_cell(columns[f"{name}_{time}"][masks[g]].astype(float))
            rows.append({"outcome": f"{name} {time}", **cells})
    order = ["outcome"] + [f"{s} {g}" for g in GROUPS for s in ("published", label)]
    return pd.DataFrame(rows)[order]

"""The curated answer of unmeasured_confounding (README.md, "## Answer"), computed from the run's
summary by `python -m sim.report.curate RUN_DIR`: how strong would an unmeasured confounder have to
be to hide a one-MCID benefit of decompression in half of the studies like this one?"""

from pathlib import Path

import numpy as np
import pandas as pd

from sim.report.curate import pick, units
from sim.report.units import UNITS_FILE, UNITS_SECTION, at_visit

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "missed_benefit.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units of each outcome's change (the run's effect_units.csv)
README_TABLES = (UNITS_SECTION,)
TIME = "m6"


def _cell(d: pd.DataFrame, log_or: float, effect: float) -> pd.Series:
    row = d[np.isclose(d["treatment_log_or"], log_or) & np.isclose(d["outcome_effect"], effect)]
    return row.iloc[0]


def _tipping(d: pd.DataFrame) -> str:
    """The weakest grid cells in which the design misses the benefit in at least half the studies."""
    none = _cell(d, 0.0, 0.0)
    if none["miss"] >= 0.5:
        return f"no confounder at all (missed in {none['miss']:.2f} ({none['mcse']:.2f}) of studies without U)"
    found = []
    for effect in sorted(d["outcome_effect"].unique(), reverse=True):
        if effect == 0:
            continue
        hit = d[np.isclose(d["outcome_effect"], effect) & (d["miss"] >= 0.5)].sort_values("treatment_log_or")
        if len(hit):
            r = hit.iloc[0]
            found.append(f"odds ratio {np.exp(r['treatment_log_or']):.2g} with {effect:g} SD "
                         f"(missed in {r['miss']:.2f} ({r['mcse']:.2f}))")
    return "a confounder of " + " or ".join(found[:2]) if found else "no confounder within the grid"


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = summary
    power = pick(s, effect_mcid=1.0, analysis="wilcoxon", measure="rejection_benefit", timepoint=TIME).copy()
    power["miss"] = 1.0 - power["value"]
    parts = [f"{o}: {_tipping(d)}" for o, d in power.groupby("outcome", sort=False)]
    excl = pick(s, effect_mcid=0.0, analysis="rosenbaum", measure="mean_mcid_excluded_at_1", timepoint=TIME)
    excl = excl[np.isclose(excl["treatment_log_or"], 0.0) & np.isclose(excl["outcome_effect"], 0.0)]
    equiv = pick(s, effect_mcid=0.0, analysis="tost", measure="rejection", timepoint=TIME)
    equiv = equiv[np.isclose(equiv["treatment_log_or"], 0.0) & np.isclose(equiv["outcome_effect"], 0.0)]
    null = pick(s, effect_mcid=0.0, analysis="wilcoxon", measure="rejection_harm", timepoint=TIME)
    strong = null[np.isclose(null["treatment_log_or"], null["treatment_log_or"].max())
                  & np.isclose(null["outcome_effect"], null["outcome_effect"].min())]
    return (f"At 6 months ({at_visit(units(run_dir), TIME, list(dict.fromkeys(power['outcome'])))}, the unit of "
            "U's effect on the outcome), hiding a true benefit of one MCID from the paper's matched Wilcoxon test (no "
            "significant benefit) in half of the studies like this one takes: " + "; ".join(parts) + ". "
            "The reverse question is as sobering: with no effect and no hidden confounder, the matched pairs "
            "exclude a one-MCID benefit (Rosenbaum, Γ = 1) in only "
            + ", ".join(f"{r.outcome} {r.value:.2f} ({r.mcse:.2f})" for r in excl.itertuples())
            + " of studies and show equivalence within one MCID (TOST) in "
            + ", ".join(f"{r.outcome} {r.value:.2f} ({r.mcse:.2f})" for r in equiv.itertuples())
            + f", while the strongest masking confounder of the grid makes the Wilcoxon test declare decompression "
            f"harmful, when it does nothing, in {strong['value'].min():.2f}-{strong['value'].max():.2f} of studies: "
            f"a null result of this design is uninformative rather than reassuring.")

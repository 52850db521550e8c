"""The curated answer of sample_size (README.md, "## Answer"), computed from the run's summary by
`python -m sim.report.curate RUN_DIR`."""

from pathlib import Path

import pandas as pd

from sim.report.curate import by_outcome, pick, units, value_range
from sim.report.units import UNITS_FILE, UNITS_SECTION, in_sd

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "rejection.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units of each outcome's change (the run's effect_units.csv)
README_TABLES = (UNITS_SECTION,)


def _extremes(d: pd.DataFrame, u: pd.DataFrame) -> str:
    """'0.15 (eq5d m6, 1 MCID = 0.22 SD) to 0.86 (face m1, 1 MCID = 0.67 SD)': the lowest and
    highest rate with where it is and what one MCID is there in SD units."""
    lo, hi = d.loc[d["value"].idxmin()], d.loc[d["value"].idxmax()]
    return " to ".join(f"{r.value:.2f} ({r.outcome} {r.timepoint}, {in_sd(u, r.outcome, r.timepoint)})"
                       for r in (lo, hi))


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = summary
    u = units(run_dir)
    col = "cohort.n"
    power = pick(s, analysis="wilcoxon", measure="rejection_benefit", effect_mcid=1.0)
    small, big = power[power[col] == power[col].min()], power[power[col] == power[col].max()]
    null = pick(s, analysis="wilcoxon", measure="rejection", effect_mcid=0.0)
    null_big = null[null[col] == null[col].max()]
    inflated = null_big[null_big["value"] - 0.05 > 3 * null_big["mcse"]]
    cover = pick(s, analysis="diff_means", measure="coverage", effect_mcid=0.0)
    cover = cover[cover[col] == cover[col].max()]
    low = cover[0.95 - cover["value"] > 3 * cover["mcse"]]
    cover_txt = (f" and the 95 % CI of the difference in mean change covers the truth in only {by_outcome(low)}"
                 if len(low) else "")
    tail = (f"Larger cohorts do not fix residual confounding (Frankel D vs E is not in the paper's PS): at "
            f"N = {int(null_big[col].iloc[0])} the type-I error exceeds 5 % by more than 3 MCSE for "
            f"{by_outcome(inflated)}{cover_txt}, so a bigger registry is no substitute for a randomised trial."
            if len(inflated) else
            f"The type-I error at N = {int(null_big[col].iloc[0])} is {value_range(null_big)}, none more than "
            f"3 MCSE above 5 %.")
    return (f"At the paper's size (N = {int(small[col].iloc[0])}) the matched design detects a one-MCID effect "
            f"with power {_extremes(small, u)} across outcomes and times, and it takes an observational cohort of "
            f"N = {int(big[col].iloc[0])} to reach {value_range(big)}. " + tail)

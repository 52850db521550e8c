"""The curated answer of sample_size (README.md, "## Answer"), computed from the run's summary by
`python -m sim.report.curate RUN_DIR`; every comparative word comes from sim.report.phrasing."""

from pathlib import Path

import pandas as pd

from sim.report import phrasing as P
from sim.report.curate import pick, units
from sim.report.units import UNITS_FILE, UNITS_SECTION, in_sd

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "rejection.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units of each outcome's change (the run's effect_units.csv)
README_TABLES = (UNITS_SECTION,)
COL, ALPHA, TARGET = "cohort.n", 0.05, 0.8


def _extremes(d: pd.DataFrame, u: pd.DataFrame) -> str:
    """The lowest and highest rate, each with where it is and what one MCID is there in SD units."""
    lo, hi = d.loc[d["value"].idxmin()], d.loc[d["value"].idxmax()]
    return " to ".join(P.fmt(P.Est.of(r), note=f"{r.outcome} {r.timepoint}, {in_sd(u, r.outcome, r.timepoint)}")
                       for r in (lo, hi))


def _reached(power: pd.DataFrame, n: int) -> tuple[int, int]:
    """How many outcome x time comparisons have power above 80 % beyond 2 MCSE at N = n, of how many."""
    d = pick(power, **{COL: n})
    return sum(P.compare(P.Est.of(r), TARGET, "above", "below") == "above" for r in d.itertuples()), len(d)


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = summary
    u = units(run_dir)
    mcid = u.drop_duplicates("outcome").set_index("outcome")["mcid"]
    power = pick(s, analysis="wilcoxon", measure="rejection_benefit", effect_mcid=1.0)
    sizes = sorted(int(n) for n in power[COL].unique())
    reached = {n: _reached(power, n) for n in sizes}
    first = next((n for n in sizes if reached[n][0] == reached[n][1]), None)
    below = [n for n in sizes if first is not None and n < first]
    if first is None:
        grid_txt = (f"no N of the grid (up to {sizes[-1]}) brings every comparison above 80 % power beyond 2 MCSE")
    else:
        grid_txt = (f"every outcome x time comparison is above 80 % power beyond 2 MCSE first at N = {first} "
                    f"({P.span([P.Est.of(r) for r in pick(power, **{COL: first}).itertuples()])})"
                    + (f", against {reached[below[-1]][0]} of {reached[below[-1]][1]} at N = {below[-1]}; the grid has "
                       f"no point between {below[-1]} and {first}, so {first} is an upper bound on the N needed"
                       if below else ""))
    big = sizes[-1]
    null_big = pick(s, analysis="wilcoxon", measure="rejection", effect_mcid=0.0, **{COL: big})
    bias_big = pick(s, analysis="diff_means", measure="bias", effect_mcid=0.0, **{COL: big})
    words = {(r.outcome, r.timepoint): P.compare(P.Est.of(r), ALPHA, "above", "below") for r in null_big.itertuples()}
    inflated = [(o, t) for (o, t), w in words.items() if w == "above"]
    parts = []
    for o, t in inflated:
        b = P.Est.of(pick(bias_big, outcome=o, timepoint=t).iloc[0])
        x = P.Est.of(pick(null_big, outcome=o, timepoint=t).iloc[0])
        in_mcid = P.Est(b.value / mcid[o], b.mcse / mcid[o])
        parts.append(f"{o} {t}: {P.fmt(x)}, {(x.value - ALPHA) / x.mcse:+.1f} MCSE from 5 %, behind a bias of "
                     f"{P.fmt(b)} outcome units = {P.fmt(in_mcid)} MCID")
    tail = (f"At N = {big} the type-I error is above 5 % beyond 2 MCSE in {len(inflated)} of {len(null_big)} "
            f"comparisons ({'; '.join(parts)}): residual confounding the paper's PS leaves (Frankel D vs E), small in "
            f"outcome units but no longer hidden by noise as N grows, so a bigger registry does not remove it."
            if inflated else
            f"At N = {big} no comparison's type-I error is above 5 % beyond 2 MCSE "
            f"({P.span([P.Est.of(r) for r in null_big.itertuples()])}).")
    return (f"Monte Carlo SEs are in brackets. At the paper's size (N = {sizes[0]}) the matched design detects a "
            f"one-MCID effect with power {_extremes(pick(power, **{COL: sizes[0]}), u)} across outcomes and times; "
            f"{grid_txt}. " + tail)

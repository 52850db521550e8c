"""The curated answer of rct_planning (README.md, "## Answer"), computed from the run's
sample_size.csv by `python -m sim.report.curate RUN_DIR`."""

from pathlib import Path

import pandas as pd

KEY_TABLE = "sample_size.csv"
# the first of the run's figures in name order, as before answer.py declared it
KEY_FIGURE = "bias.png"


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    t = pd.read_csv(run_dir / KEY_TABLE)
    t = t[(t["effect_mcid"] == 1.0) & (t["power"] == 0.8)]

    def span(col: str) -> str:
        d = t.dropna(subset=[col])
        lo, hi = d.loc[d[col].idxmin()], d.loc[d[col].idxmax()]
        return (f"{int(lo[col])} ({lo.outcome} {lo.timepoint}) to {int(hi[col])} ({hi.outcome} {hi.timepoint})"
                + ("" if len(d) == len(t) else f"; {len(t) - len(d)} not reached within the grid"))

    both = t.dropna(subset=["sim_ttest"])
    rel = (both["sim_ttest"] / both["closed_ttest"] - 1).abs()
    return (f"For 80 % power to detect one MCID, a randomised 1:1 trial analysed by ANCOVA on baseline needs "
            f"{span('sim_ancova')} patients per arm, against {span('sim_ttest')} with a change-score t-test, so "
            f"the choice of primary outcome and of ANCOVA decides the trial's size. "
            f"The simulated t-test sizes agree with the closed-form normal approximation inflated for deaths "
            f"before the visit to within {100 * rel.max():.0f} % (median {100 * rel.median():.0f} %).")

"""The curated answer of rct_planning (README.md, "## Answer"), computed from the run's
sample_size.csv by `python -m sim.report.curate RUN_DIR`: the simulated N per arm (probit fit of
the simulated power curve, with its 95 % interval) and the largest relative gap to the closed
forms (sim.power.gaps: t and ANCOVA by the noncentral t, Wilcoxon by Noether)."""

from pathlib import Path

import pandas as pd

from sim.power import GAP_PAIRS, gaps, largest_gap

KEY_TABLE = "sample_size.csv"
# the first of the run's figures in name order, as before answer.py declared it
KEY_FIGURE = "bias.png"
#: how a sample_size.csv status reads in the answer
WHY = {"below the grid": "reached below the smallest n of the grid", "beyond the grid": "not reached within the grid",
       "not increasing": "power not increasing with n", "too few points": "too few informative grid points",
       "no fit": "power curve not identified"}


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    ss = pd.read_csv(run_dir / KEY_TABLE)
    t = ss[(ss["effect_mcid"] == 1.0) & (ss["power"] == 0.8)]

    def n(r, an: str) -> str:
        return f"{int(r[f'sim_{an}'])} [{int(r[f'sim_{an}_low'])}, {int(r[f'sim_{an}_high'])}]"

    def span(an: str) -> str:
        d = t.dropna(subset=[f"sim_{an}"])
        if d.empty:
            return "no simulated N within the grid"
        lo, hi = d.loc[d[f"sim_{an}"].idxmin()], d.loc[d[f"sim_{an}"].idxmax()]
        out = (f"{n(lo, an)} ({lo.outcome} {lo.timepoint}) to {n(hi, an)} ({hi.outcome} {hi.timepoint}) "
               "patients per arm")
        missing = t[t[f"sim_{an}"].isna()]
        if len(missing):
            why = [WHY.get(s, s) for s in missing[f"sim_{an}_status"]]
            where = zip(missing["outcome"], missing["timepoint"], why)
            out += " (" + "; ".join(f"{o} {tp}: {w}" for o, tp, w in where) + ")"
        return out

    g = gaps(ss)
    top = largest_gap(ss)
    names = {"closed_ttest_nct": "noncentral-t", "closed_ancova_nct": "noncentral-t ANCOVA",
             "closed_wilcoxon": "Noether"}
    pairs = ", ".join(f"{a} with {names.get(c, c)}" for a, c in GAP_PAIRS)
    if top is None:
        gap = f"No simulated N lies within the grid to compare with its closed form ({pairs})."
    else:
        gap = (f"Over {len(g)} comparisons of a simulated N with its closed form ({pairs}), the largest relative "
               f"gap is {100 * top.gap:+.0f} % ({top.analysis}, {top.outcome} {top.timepoint}, "
               f"{top.effect_mcid:g} MCID, {100 * top.power:.0f} % power: {int(top.sim)} [{int(top.sim_low)}, "
               f"{int(top.sim_high)}] simulated against {int(top.closed_n)}), and the closed form lies inside the "
               f"simulated interval in {int(g['inside'].sum())} of {len(g)}.")
    return (f"For 80 % power to detect one MCID, a randomised 1:1 trial analysed by ANCOVA on baseline needs "
            f"{span('ancova')}, against {span('ttest')} with a change-score t-test "
            f"(simulated N [95 % interval] from a probit fit of the simulated power curve), so the choice of "
            f"primary outcome and of ANCOVA decides the trial's size. " + gap)

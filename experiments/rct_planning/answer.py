"""The curated answer of rct_planning (README.md, "## Answer"), computed from the run's
sample_size.csv by `python -m sim.report.curate RUN_DIR`: the simulated N per arm (probit fit of
the simulated power curve, with its 95 % interval) and the largest relative gap to the closed
forms (sim.power.gaps: t and ANCOVA by the noncentral t, Wilcoxon by Noether)."""

from pathlib import Path

import pandas as pd

from sim.power import GAP_PAIRS, MODERATE_SD, gaps, largest_gap
from sim.report.rct import UNITS_SECTION
from sim.report.units import UNITS_FILE, in_sd, run_units

KEY_TABLE = "sample_size.csv"
# the first of the run's figures in name order, as before answer.py declared it
KEY_FIGURE = "bias.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units, and the closed-form n for one MCID and for 0.5 SD
README_TABLES = (UNITS_SECTION,)
#: how a sample_size.csv status reads in the answer
WHY = {"below the grid": "reached below the smallest n of the grid", "beyond the grid": "not reached within the grid",
       "not increasing": "power not increasing with n", "too few points": "too few informative grid points",
       "no fit": "power curve not identified"}


def _standardised(units: pd.DataFrame, power: float) -> str:
    """The closed-form n per arm at one MCID against that at MODERATE_SD SD, t-test and ANCOVA."""
    u = units[units["power"] == power]
    tag = f"{MODERATE_SD:g}sd"

    def rng(col: str) -> tuple[str, float]:
        lo, hi = u.loc[u[col].idxmin()], u.loc[u[col].idxmax()]
        return (f"{int(lo[col])} ({lo.outcome} {lo.timepoint}) to {int(hi[col])} ({hi.outcome} {hi.timepoint})",
                hi[col] / lo[col])

    (t1, rt1), (ts, rts) = rng("n_ttest_one_mcid"), rng(f"n_ttest_{tag}")
    (a1, ra1), (as_, ras) = rng("n_ancova_one_mcid"), rng(f"n_ancova_{tag}")
    lo, hi = u.loc[u["mcid_in_sd"].idxmin()], u.loc[u["mcid_in_sd"].idxmax()]
    return (f"One MCID is a different share of each outcome's SD ({lo.mcid_in_sd:.2f} SD of the change for "
            f"{lo.outcome} {lo.timepoint} to {hi.mcid_in_sd:.2f} SD for {hi.outcome} {hi.timepoint}): for "
            f"{100 * power:.0f} % power the "
            f"closed forms (noncentral t, divided by the share seen) need {t1} per arm for one MCID with the "
            f"change-score t-test (largest / smallest {rt1:.1f}) but {ts} for an effect of {MODERATE_SD:g} SD on "
            f"every outcome ({rts:.1f}); with ANCOVA {a1} ({ra1:.1f}) against {as_} ({ras:.1f}).")


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    ss = pd.read_csv(run_dir / KEY_TABLE)
    units = run_units(run_dir)
    t = ss[(ss["effect_mcid"] == 1.0) & (ss["power"] == 0.8)]

    def n(r, an: str) -> str:
        return f"{int(r[f'sim_{an}'])} [{int(r[f'sim_{an}_low'])}, {int(r[f'sim_{an}_high'])}]"

    def span(an: str) -> str:
        d = t.dropna(subset=[f"sim_{an}"])
        if d.empty:
            return "no simulated N within the grid"
        lo, hi = d.loc[d[f"sim_{an}"].idxmin()], d.loc[d[f"sim_{an}"].idxmax()]
        out = (f"{n(lo, an)} ({lo.outcome} {lo.timepoint}, {in_sd(units, lo.outcome, lo.timepoint)}) to "
               f"{n(hi, an)} ({hi.outcome} {hi.timepoint}, {in_sd(units, hi.outcome, hi.timepoint)}) patients per arm")
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
            f"primary outcome and of ANCOVA decides the trial's size. " + _standardised(units, 0.8) + " " + gap)

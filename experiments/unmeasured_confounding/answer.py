"""The curated answer of unmeasured_confounding (README.md, "## Answer"), computed from the run's
summary by `python -m sim.report.curate RUN_DIR`: how strong would an unmeasured confounder have to
be to hide a one-MCID benefit of decompression in half of the studies like this one? Every
comparative word comes from sim.report.phrasing; a tipping cell is named only where its miss rate
is above one half beyond 2 MCSE, and cells that cannot be told from one half are given as such."""

from pathlib import Path

import numpy as np
import pandas as pd

from sim.report import phrasing as P
from sim.report.curate import pick, units
from sim.report.units import UNITS_FILE, UNITS_SECTION, at_visit

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "missed_benefit.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units of each outcome's change (the run's effect_units.csv)
README_TABLES = (UNITS_SECTION,)
TIME, HALF = "m6", 0.5


def _no_u(d: pd.DataFrame) -> pd.DataFrame:
    return d[np.isclose(d["treatment_log_or"], 0.0) & np.isclose(d["outcome_effect"], 0.0)]


def _cell_name(r) -> str:
    return f"odds ratio {np.exp(r.treatment_log_or):.2g} with {r.outcome_effect:g} SD"


def _tipping(miss: pd.DataFrame) -> str:
    """Where one outcome's miss rate (1 - power of the rank-sum test for a benefit) crosses one half."""
    base = _no_u(miss).iloc[0]
    word = P.compare(P.Est.of(base), HALF, "above", "below")
    if word == "above":
        return f"it is missed already without U, in {P.fmt(P.Est.of(base))} of studies ({word} one half beyond 2 MCSE)"
    above, undecided = [], []
    for effect in sorted(miss["outcome_effect"].unique(), reverse=True):
        if effect == 0:
            continue
        col = miss[np.isclose(miss["outcome_effect"], effect)].sort_values("treatment_log_or")
        verdicts = [(r, P.compare(P.Est.of(r), HALF, "above", "below")) for r in col.itertuples()]
        first = next((r for r, w in verdicts if w == "above"), None)
        if first is not None:
            above.append(f"{_cell_name(first)} ({P.fmt(P.Est.of(first))})")
        undecided += [f"{_cell_name(r)} ({P.fmt(P.Est.of(r))})" for r, w in verdicts
                      if w.startswith("indistinguishable") and (first is None or r.treatment_log_or < first.treatment_log_or)]
    text = ("the weakest cells above one half beyond 2 MCSE are " + " and ".join(above[:2]) if above
            else "no cell of the grid is above one half beyond 2 MCSE")
    if undecided:
        text += "; " + ", ".join(undecided[:3]) + " cannot be told from one half"
    return f"it is missed in {P.fmt(P.Est.of(base))} of studies without U; {text}"


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = pick(summary, timepoint=TIME)
    u = units(run_dir)
    mcid = u.drop_duplicates("outcome").set_index("outcome")["mcid"]
    power = pick(s, effect_mcid=1.0, analysis="wilcoxon", measure="rejection_benefit").copy()
    power["value"] = 1.0 - power["value"]  # missed: no significant benefit (MCSE unchanged)
    outcomes = list(dict.fromkeys(power["outcome"]))
    parts = [f"For {o}, {_tipping(d)}." for o, d in power.groupby("outcome", sort=False)]
    real = pick(s, effect_mcid=1.0, analysis="diff_means", measure="true_matched")
    in_mcid = lambda d, o: [P.Est(r.value / mcid[o], r.mcse / mcid[o]) for r in d.itertuples()]  # noqa: E731
    real_txt = "; ".join(f"{o} {P.fmt(in_mcid(_no_u(d), o)[0])} without U, {P.span(in_mcid(d, o))} across the grid"
                         for o, d in real.groupby("outcome", sort=False))
    excl = _no_u(pick(s, effect_mcid=0.0, analysis="rosenbaum", measure="mean_mcid_excluded_at_1"))
    equiv = _no_u(pick(s, effect_mcid=0.0, analysis="tost", measure="rejection"))
    ev = _no_u(pick(s, effect_mcid=0.0, analysis="evalue", measure="mean_evalue_mcid"))
    null = pick(s, effect_mcid=0.0, analysis="wilcoxon", measure="rejection_harm")
    strong = null[np.isclose(null["treatment_log_or"], null["treatment_log_or"].max())
                  & np.isclose(null["outcome_effect"], null["outcome_effect"].min())]
    rate = lambda d: ", ".join(f"{r.outcome} {P.fmt(P.Est.of(r))}" for r in d.itertuples())  # noqa: E731
    return (f"Monte Carlo SEs are in brackets. At 6 months ({at_visit(u, TIME, outcomes)}, the unit of U's effect on "
            "the outcome), the paper's matched Wilcoxon test misses a true benefit (no significant benefit: one minus "
            "its power for a benefit) in studies like this one as follows. " + " ".join(parts) + " "
            "The benefit it tests is the effect among the matched treated, which ceilings, floors and the matched "
            f"population make differ from the nominal one MCID: in MCID units it is {real_txt}. "
            "With no effect and no hidden confounder, the matched pairs exclude a one-MCID benefit (Rosenbaum, Γ = 1) "
            f"in {rate(excl)} of studies, show equivalence with a margin of one MCID (TOST) in {rate(equiv)}, and report a mean "
            f"E-value for moving their estimate to a one-MCID benefit of {rate(ev)} (the risk-ratio strength a "
            "confounder would need to hide such a benefit); the strongest masking confounder of the grid makes the "
            "Wilcoxon test declare decompression harmful, when it does nothing, in "
            f"{P.span([P.Est.of(r) for r in strong.itertuples()])} of studies.")

"""The curated answer of caliper_sweep (README.md, "## Answer"), computed from the run's summary by
`python -m sim.report.curate RUN_DIR`; every comparative word comes from sim.report.phrasing."""

from pathlib import Path

import pandas as pd

from sim.report import phrasing as P
from sim.report.curate import pick, units
from sim.report.units import UNITS_FILE, UNITS_SECTION, in_sd, span

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "rejection.png"
EXTRA_FILES = (UNITS_FILE,)  # one MCID in SD units of each outcome's change (the run's effect_units.csv)
README_TABLES = (UNITS_SECTION,)
ALPHA, TARGET = 0.05, 0.8


def _rates(d: pd.DataFrame, u: pd.DataFrame | None = None) -> str:
    return ", ".join(f"{r.outcome} {r.timepoint} "
                     + P.fmt(P.Est.of(r), note=in_sd(u, r.outcome, r.timepoint) if u is not None else None)
                     for r in d.itertuples())


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    s = summary
    u = units(run_dir)
    null = pick(s, caliper=0.2, effect_mcid=0.0, analysis="wilcoxon", measure="rejection")
    power = pick(s, caliper=0.2, effect_mcid=1.0, analysis="wilcoxon", measure="rejection_benefit")
    power_none = pick(s, caliper=None, effect_mcid=1.0, analysis="wilcoxon", measure="rejection_benefit")
    bias02 = pick(s, caliper=0.2, effect_mcid=0.0, analysis="diff_means", measure="bias")
    bias_none = pick(s, caliper=None, effect_mcid=0.0, analysis="diff_means", measure="bias")
    null_none = pick(s, caliper=None, effect_mcid=0.0, analysis="wilcoxon", measure="rejection")
    # power is read only where the test keeps its size: type-I error not told apart from 5 %
    sized_words = {(r.outcome, r.timepoint): P.compare(P.Est.of(r), ALPHA, "above", "below")
                   for r in null.itertuples()}
    sized = {k for k, w in sized_words.items() if w.startswith("indistinguishable")}
    off = [f"{o} {t} ({w} 5 %)" for (o, t), w in sized_words.items() if (o, t) not in sized]
    size_txt = (f"a type-I error indistinguishable (within 2 MCSE) from 5 % in {len(sized)} of the {len(null)} "
                f"outcome x time comparisons ({P.span([P.Est.of(r) for r in null.itertuples()])}"
                + (f"; not {', '.join(off)}" if off else "") + ")")
    power = power[[k in sized for k in zip(power.outcome, power.timepoint)]]
    verdicts = {(r.outcome, r.timepoint): P.compare(P.Est.of(r), TARGET, "above", "below")
                for r in power.itertuples()}
    above = power[[verdicts[k] == "above" for k in zip(power.outcome, power.timepoint)]]
    below = power[[verdicts[k] == "below" for k in zip(power.outcome, power.timepoint)]]
    near = power[[verdicts[k].startswith("indistinguishable") for k in zip(power.outcome, power.timepoint)]]
    target_txt = "; ".join(t for t in (
        f"power is below 80 % beyond 2 MCSE for {len(below)} of these {len(power)}" if len(below) else "",
        f"above 80 % beyond 2 MCSE for {_rates(above)}" if len(above) else "",
        f"not distinguishable from 80 % for {_rates(near)}" if len(near) else "") if t)
    verdict = (f"A null result of this design therefore cannot rule out a clinically important benefit of "
               f"decompression on {len(below)} of the {len(power)} outcome x time comparisons where its size holds. "
               if len(below) else "")
    worst = bias_none.loc[bias_none["value"].abs().idxmax()]
    at02 = pick(bias02, outcome=worst.outcome, timepoint=worst.timepoint).iloc[0]
    worst_null = null_none.loc[null_none["value"].idxmax()]
    return (f"Monte Carlo SEs are in brackets. With the paper's caliper (0.2 SD of the logit PS) its Wilcoxon "
            f"test has {size_txt}. Where it keeps its "
            f"size, its power to detect a true improvement of one MCID (significant in its favour) is "
            f"{_rates(power, u)}: {target_txt}; one MCID is {span(u)} of the change, so these rates compare effects "
            f"of different standardised sizes. {verdict}"
            f"Without a caliper the rejection rate for a benefit is {P.span([P.Est.of(r) for r in power_none.itertuples()])}, "
            f"but that comes with confounding bias (largest for {worst.outcome} {worst.timepoint}: "
            f"{P.fmt(P.Est.of(worst))} without a caliper against {P.fmt(P.Est.of(at02))} at 0.2, outcome units) and "
            f"a type-I error of up to {P.fmt(P.Est.of(worst_null))} ({worst_null.outcome} {worst_null.timepoint}), "
            f"so those rejections are not power.")

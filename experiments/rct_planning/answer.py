"""The curated answer of rct_planning (README.md, "## Answer"), computed from the run's tables by
`python -m sim.report.curate RUN_DIR`: the simulated N per arm (probit fit of the simulated power
curve of results significant in favour of treatment, with its 95 % interval) from sample_size.csv;
the unrounded gaps to the closed forms (closed_vs_simulated.csv) and their direct checks
(direct_checks.csv); the composite's dilution by deaths, the Bonferroni factor and what each
endpoint estimates (ICH E9(R1)), with the complete case's bias from the summary. Every number with a
Monte Carlo SE is quoted with it, and every comparative word comes from sim.report.phrasing."""

from pathlib import Path

import pandas as pd

from sim.power import GAP_PAIRS, MODERATE_SD, gaps, largest_gap
from sim.power.estimand import largest_bias, multiplicity, pooled_bias
from sim.report.phrasing import Est, bound_phrase, compare, fmt, number
from sim.report.rct import CHECKS_FILE, COMPARISON_FILE, UNITS_SECTION
from sim.report.units import UNITS_FILE, in_sd, run_units

KEY_TABLE = "sample_size.csv"
# the first of the run's figures in name order, as before answer.py declared it
KEY_FIGURE = "bias.png"
EXTRA_FILES = (UNITS_FILE, COMPARISON_FILE, CHECKS_FILE)
README_TABLES = (UNITS_SECTION,)
#: how a sample_size.csv status reads in the answer
NAN = float("nan")
WHY = {"below the grid": "reached below the smallest n of the grid", "beyond the grid": "not reached on the grid",
       "not increasing": "power not increasing with n", "too few points": "too few informative grid points",
       "no fit": "power curve not identified"}
NAMES = {"closed_ttest_nct": "noncentral t", "closed_ancova_nct": "noncentral-t ANCOVA", "closed_wilcoxon": "Noether",
         "closed_composite": "Noether at the diluted P"}


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


def _where(r) -> str:
    return f"{r.analysis} {r.outcome} {r.timepoint}, {r.effect_mcid:g} MCID, {100 * r.power:.0f} % power"


def _checks(checks: pd.DataFrame) -> str:
    """Per checked gap: the directly simulated power at each n against the target, and what it says
    of the closed form rounded up."""
    out = []
    for _, g in checks.groupby(["effect_mcid", "outcome", "timepoint", "power", "analysis"], sort=False):
        g = g.sort_values("n_per_arm")
        r = g.iloc[0]
        at = "; ".join(f"{fmt(Est(c.power_direct, c.mcse))} at {int(c.n_per_arm)}, "
                       f"{bound_phrase(Est(c.power_direct, c.mcse), c.power)}" for c in g.itertuples())
        ceil = g[g["role"] == "ceil"].iloc[0]
        word = compare(Est(ceil.power_direct, ceil.mcse), ceil.power, "above", "below",
                       "indistinguishable (within 2 MCSE) from")
        verdict = {"below": "the closed form rounded up falls short of the target there",
                   "above": "the closed form rounded up is conservative there"}.get(
            word, "at the closed form rounded up the target is met up to Monte Carlo error")
        out.append(f"{_where(r)} (closed form {r.closed_n:.2f}, simulated {r.sim_n:.1f} [{r.sim_low:.1f}, "
                   f"{r.sim_high:.1f}]): power {at}, so {verdict}")
    return "; ".join(out)


def _gaps(cmp: pd.DataFrame, checks: pd.DataFrame) -> str:
    g = gaps(cmp)
    pairs = ", ".join(f"{a} with {NAMES.get(c, c)}" for a, c in GAP_PAIRS)
    if g.empty:
        return f"No simulated N lies within the grid to compare with its closed form ({pairs})."
    top = largest_gap(cmp)
    text = (f"Compared unrounded ({len(g)} pairs of a simulated N and its closed form: {pairs}), the largest relative "
            f"gap is {100 * top.gap:+.1f} % ({_where(top)}: {top.sim_n:.1f} [{top.sim_low:.1f}, {top.sim_high:.1f}] "
            f"simulated against {top.closed_n:.2f}), and the closed form lies inside the simulated interval in "
            f"{int(g['inside'].sum())} of {len(g)}.")
    if len(checks):
        reps = int(checks["reps"].min())
        text += (f" Simulating the power directly ({reps:,} trials per n) at the closed-form n rounded down and up "
                 f"for the {checks.groupby(['effect_mcid', 'outcome', 'timepoint', 'power', 'analysis']).ngroups} "
                 f"largest gaps: {_checks(checks)}.")
    return text


def _composite(ss: pd.DataFrame, cmp: pd.DataFrame) -> str:
    """The composite's dilution by deaths: q per visit, (1 - q)^-3, and the simulated ratio."""
    if not {"q_composite", "sim_composite", "sim_wilcoxon"} <= set(ss.columns):
        return ""
    q = ss.groupby("timepoint", sort=False)["q_composite"].mean()  # one reference cohort per effect
    per = ", ".join(f"{(1 - v) ** -3:.2f} times at {t} (q = {v:.2f})" for t, v in q.items())
    both = ss.dropna(subset=["sim_composite", "sim_wilcoxon"]).assign(
        ratio=lambda d: d["sim_composite"] / d["sim_wilcoxon"])
    sim = "; ".join(f"{g['ratio'].min():.2f} to {g['ratio'].max():.2f} at {t} ({len(g)} rows)"
                    for t, g in both.groupby("timepoint", sort=False))
    c = gaps(cmp, [("composite", "closed_composite")])
    fit = (f"; its closed form lies inside the composite's simulated interval in {int(c['inside'].sum())} of "
           f"{len(c)} comparisons (largest |gap| {100 * c['gap'].abs().max():.1f} %)" if len(c) else "")
    return ("The death-ranks-worst composite follows an ICH E9(R1) composite strategy (death before the visit is "
            "part of the outcome, ranked below every change, earlier lower; alive-but-missed patients are left "
            "out), so it estimates another quantity, and deaths the treatment does not change dilute it: with the "
            "same deaths in both arms (no effect on survival in this design) its P(T > C) - 1/2 is (1 - q)^2 times "
            "that of the patients seen, q the share dead among the patients it ranks, so Noether's formula at that "
            f"P, divided by the share ranked, needs (1 - q)^-3 times the complete-case Wilcoxon n: {per}"
            + (f"; the simulated N ratio, where both are fitted, is {sim}" if sim else "") + fit + ".")


def _estimand(summary: pd.DataFrame, ss: pd.DataFrame) -> str:
    top = largest_bias(summary)
    if top is None:
        return ""
    o, t, eff, b, m = top
    bias = Est(b, m)
    ancova = Est(*pooled_bias(summary, "ancova", o, t, eff))
    truth = _pooled(summary, "true_ate", o, t, eff)
    also = f" (ANCOVA {fmt(ancova)})" if pd.notna(ancova.value) else ""
    cc = "the t-tests, ANCOVA" + (" and the Wilcoxon test" if ss["death_strategy"].iloc[0] == "complete_case" else "")
    word = compare(bias, 0.0, "above", "below", "indistinguishable (within 2 MCSE) from")
    differs = ("which even in a randomised trial differs from the effect among all survivors"
               if word in ("above", "below") else "which here cannot be told apart from the effect among all survivors")
    return (f"{cc[0].upper()}{cc[1:]} analyse the patients seen at the visit, an ICH E9(R1) 'while alive and seen' "
            f"strategy: they estimate the effect among those seen, who started healthier, {differs}: for {o} {t} "
            f"at {eff:g} MCID (survivors' effect {fmt(truth)}) the t-test's bias against it is {fmt(bias)} "
            f"points{also}, pooled over n, {word} 0.")


def _pooled(summary: pd.DataFrame, measure: str, o: str, t: str, eff: float) -> Est:
    """The mean of a measure over the n per arm (ttest rows), its MCSE from the per-n MCSEs."""
    d = summary[(summary["measure"] == measure) & (summary["analysis"] == "ttest") & (summary["outcome"] == o)
                & (summary["timepoint"] == t) & (summary["effect_mcid"] == eff)]
    return Est(float(d["value"].mean()), float((d["mcse"] ** 2).sum() ** 0.5 / len(d))) if len(d) else Est(NAN)


def _multiplicity(ss: pd.DataFrame) -> str:
    alpha = float(ss["alpha"].iloc[0])
    k, f = multiplicity(ss, alpha, sorted(set(ss["power"])))
    if not k:
        return ""
    per = " and ".join(f"{number(v)} at {100 * p:.0f} % power" for p, v in f.items())
    return (f"Each of these sample sizes is for one of {k} outcome x visit comparisons tested at alpha = {alpha:g}; "
            f"testing all {k} with Bonferroni (alpha / {k} = {number(alpha / k)} each) multiplies every "
            f"normal-theory closed-form n by {per}.")


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    ss = pd.read_csv(run_dir / KEY_TABLE)
    units = run_units(run_dir)
    cmp = pd.read_csv(run_dir / COMPARISON_FILE)
    checks = pd.read_csv(run_dir / CHECKS_FILE)
    t = ss[(ss["effect_mcid"] == 1.0) & (ss["power"] == 0.8)]

    def n(r, an: str) -> str:
        return f"{int(r[f'sim_{an}'])} [{int(r[f'sim_{an}_low'])}, {int(r[f'sim_{an}_high'])}]"

    def span(an: str) -> str:
        d = t.dropna(subset=[f"sim_{an}"])
        if d.empty:
            return "no simulated N on the grid"
        lo, hi = d.loc[d[f"sim_{an}"].idxmin()], d.loc[d[f"sim_{an}"].idxmax()]
        out = (f"{n(lo, an)} ({lo.outcome} {lo.timepoint}, {in_sd(units, lo.outcome, lo.timepoint)}) to "
               f"{n(hi, an)} ({hi.outcome} {hi.timepoint}, {in_sd(units, hi.outcome, hi.timepoint)}) patients per arm")
        missing = t[t[f"sim_{an}"].isna()]
        if len(missing):
            why = [WHY.get(s, s) for s in missing[f"sim_{an}_status"]]
            where = zip(missing["outcome"], missing["timepoint"], why)
            out += " (" + "; ".join(f"{o} {tp}: {w}" for o, tp, w in where) + ")"
        return out

    both = t.dropna(subset=["sim_ancova", "sim_ttest"])
    share = both["sim_ancova"] / both["sim_ttest"]
    ratio = (f"; where both are fitted, ANCOVA's N is {share.min():.2f} to {share.max():.2f} times the t-test's"
             if len(both) else "")
    first = (f"For 80 % power (a result significant in favour of decompression) to detect one MCID, a randomised 1:1 "
             f"trial analysed by ANCOVA on baseline needs {span('ancova')}, against {span('ttest')} with a "
             f"change-score t-test (simulated N [95 % interval] from a probit fit of the simulated power curve, "
             f"rounded up){ratio}.")
    paragraphs = [[first, _standardised(units, 0.8), _multiplicity(ss)], [_gaps(cmp, checks)],
                  [_composite(ss, cmp), _estimand(summary, ss)]]
    return "\n\n".join(" ".join(p for p in para if p) for para in paragraphs if any(para))

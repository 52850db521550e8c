"""Figures and report.md of the randomised-trial planning job (experiment rct_planning): power,
type-I error, bias and coverage against n per arm, and the sample size per arm beside the closed
forms of sim.power."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim import power as PW
from sim.methods.trial import RANK_ANALYSES, TrialSpec
from sim.report.figures import label_panel, save_panels
from sim.report.montecarlo import run_lines
from sim.report import units as U
from sim.power.estimand import STRATEGY, largest_bias, multiplicity
from sim.report.phrasing import Est, fmt, number
from sim.report.settings import arm_words, figure_lines
from sim.report.tables import markdown

if TYPE_CHECKING:
    from sim.jobs.contract import ExperimentResult

COMPARISON_FILE = "closed_vs_simulated.csv"  #: simulated and closed-form n, unrounded (sim.power.comparison_table)
CHECKS_FILE = "direct_checks.csv"  #: power simulated directly at the closed-form n (sim.power.check)
DEATH_TEXT = {
    "complete_case": "complete case: each visit is analysed among the patients seen at it (alive and not missing "
                     "it); those started healthier than everyone (attrition depends on baseline health).",
    "worst_rank": "worst rank for the Wilcoxon test: a patient without a change at the visit (dead or missed) is "
                  "given the worst observed change at that visit minus 1; the t-tests and ANCOVA stay complete "
                  "case.",
}


def _at_effect(summary: pd.DataFrame, measure: str, effect: float) -> pd.DataFrame:
    return summary[(summary["measure"] == measure) & np.isclose(summary["effect_mcid"].astype(float), effect)]


def curve_plot(summary: pd.DataFrame, measure: str, effect: float, path: Path, title: str, ylabel: str,
               references: Sequence[float] = (), closed_form: pd.DataFrame | None = None,
               alpha: float = 0.05) -> Path | None:
    """`measure` vs n per arm (numeric axis) at one effect: one panel per outcome x time, one line
    per analysis, error bars 2 x MCSE, dotted reference lines. With `closed_form` (reference
    quantities: delta, sd_change, survival per outcome x time) a dashed line adds the closed-form
    noncentral-t power of the t-test at the expected number of survivors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = _at_effect(summary, measure, effect)
    if df.empty:
        return None
    outcomes = list(dict.fromkeys(df["outcome"]))
    times = list(dict.fromkeys(df["timepoint"]))
    fig, axes = plt.subplots(len(times), len(outcomes), figsize=(3.2 * len(outcomes), 2.8 * len(times)),
                             squeeze=False, sharex=True, sharey=measure in ("rejection", "coverage"))
    for i, t in enumerate(times):
        for j, o in enumerate(outcomes):
            ax = axes[i, j]
            d = df[(df["outcome"] == o) & (df["timepoint"] == t)]
            for an, g in d.groupby("analysis", sort=False):
                g = g.sort_values("n_per_arm")
                ax.errorbar(g["n_per_arm"], g["value"], yerr=2 * g["mcse"].fillna(0), marker="o", ms=3, capsize=2,
                            lw=1, label=an)
            if closed_form is not None:
                r = closed_form[(closed_form["outcome"] == o) & (closed_form["timepoint"] == t)]
                if len(r):
                    r = r.iloc[0]
                    grid = np.linspace(max(3.0, d["n_per_arm"].min() * 0.8), d["n_per_arm"].max(), 60)
                    ax.plot(grid, PW.power_ttest(grid, r.delta, r.sd_change, alpha, survival=r.seen),
                            color="black", ls="--", lw=0.9, label="closed form (t, nct)")
            for ref in references:
                ax.axhline(ref, color="grey", lw=0.7, ls=":")
            label_panel(ax, f"{o}, {t}", first_col=j == 0, last_row=i == len(times) - 1, xlabel="n per arm",
                        ylabel=ylabel)
    return save_panels(fig, axes, path, title, dpi=100)


def figures(summary: pd.DataFrame, refs: pd.DataFrame, spec: TrialSpec, targets: Sequence[float],
            out_dir: Path) -> list[Path]:
    """type1_error.png (effect 0), power_effect<e>.png per other effect (with the closed form of
    `refs`, the reference quantities with an effect_mcid column), bias.png and coverage.png at the
    largest effect."""
    effects = sorted({float(v) for v in summary["effect_mcid"]})
    out = []
    for eff in effects:
        if eff == 0:
            out.append(curve_plot(summary, "rejection", eff, out_dir / "type1_error.png",
                                  "Type-I error of a 1:1 randomised trial (effect 0) vs n per arm",
                                  "type-I error", references=[spec.alpha]))
        else:
            ref = refs[np.isclose(refs["effect_mcid"], eff)] if len(refs) else None
            out.append(curve_plot(summary, PW.POWER_MEASURE, eff, out_dir / f"power_effect{eff:g}.png",
                                  f"Power (significant, favouring treatment) at effect = {eff:g} MCID vs n per arm",
                                  "power", references=targets, closed_form=ref, alpha=spec.alpha))
    top = effects[-1]
    out.append(curve_plot(summary, "bias", top, out_dir / "bias.png",
                          f"Bias vs the cohort's ATE among survivors (effect = {top:g} MCID)", "bias",
                          references=[0.0]))
    out.append(curve_plot(summary, "coverage", top, out_dir / "coverage.png",
                          f"Coverage of the 95% CI (effect = {top:g} MCID)", "coverage", references=[0.95]))
    return [p for p in out if p is not None]


def _cell(v: float, m: float) -> str:
    return f"{v:.3f} ({m:.3f})" if pd.notna(m) else f"{v:.3f}"


def _measure_wide(summary: pd.DataFrame, effect: float, measure: str, analyses: Sequence[str]) -> pd.DataFrame:
    d = _at_effect(summary, measure, effect).copy()
    if d.empty:
        return pd.DataFrame()
    d["cell"] = [_cell(v, m) for v, m in zip(d["value"], d["mcse"])]
    w = d.pivot_table(index=["outcome", "timepoint", "n_per_arm"], columns="analysis", values="cell",
                      aggfunc="first", sort=False)
    w = w[[a for a in analyses if a in w.columns]].reset_index()
    w.columns.name = None
    return w


_STATUS_CELL = {"below the grid": "below grid", "beyond the grid": "beyond grid", "not increasing": "not increasing",
                "too few points": "too few n", "no fit": "no fit", "not run": "not run"}
_CLOSED = {"closed_ttest": "closed form t (normal)", "closed_ttest_nct": "closed form t (nct)",
           "closed_ancova": "closed form ANCOVA", "closed_ancova_nct": "closed form ANCOVA (nct)",
           "closed_wilcoxon": "closed form Wilcoxon (Noether)", "closed_wilcoxon_ties": "closed form Wilcoxon, ties",
           "closed_composite": "closed form composite (Noether, diluted P)",
           "closed_ttest_table2sd": "closed form t, Table 2 SD",
           "closed_ttest_informative": "closed form t, informative loss"}


def _n_cell(n: float, low: float, high: float, status: str) -> str:
    if status == "fitted" and pd.notna(n):
        return f"{n:g} [{low:g}, {high:g}]"
    return _STATUS_CELL.get(status, status)


def _int_cell(v) -> str:
    return f"{v:g}" if pd.notna(v) else ""


def _sample_size_md(ss: pd.DataFrame, analyses: Sequence[str]) -> pd.DataFrame:
    out = ss[["effect_mcid", "outcome", "timepoint", "power", "delta"]].copy()
    out["delta"] = [f"{v:.3g}" for v in out["delta"]]
    for an in analyses:
        out[f"simulated {an}"] = [_n_cell(*v) for v in zip(ss[f"sim_{an}"], ss[f"sim_{an}_low"], ss[f"sim_{an}_high"],
                                                            ss[f"sim_{an}_status"])]
    for col, label in _CLOSED.items():
        if col in ss.columns:
            out[label] = [_int_cell(v) for v in ss[col]]
    out["SD change"] = [f"{v:.3g}" for v in ss["sd_change"]]
    out["rho"] = [f"{v:.2f}" for v in ss["rho"]]
    out["survival"] = [f"{v:.3f}" for v in ss["survival"]]
    out["seen"] = [f"{v:.3f}" for v in ss["seen"]]
    out["P(Y1 > Y0)"] = [f"{v:.3f}" for v in ss["p_superiority"]]
    out["tie factor"] = [f"{v:.3f}" for v in ss["tie_factor"]]
    if "q_composite" in ss.columns:
        out["q (composite)"] = [f"{v:.3f}" for v in ss["q_composite"]]
    return out


def sample_size_text(ss: pd.DataFrame, analyses: Sequence[str]) -> str:
    return markdown(_sample_size_md(ss, analyses)) if len(ss) else "(no effect > 0 in the grid)"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _sim_n(r) -> str:
    return f"{r.sim_n:.1f} [{r.sim_low:.1f}, {r.sim_high:.1f}]"


def check_text(checks: pd.DataFrame) -> list[str]:
    """Per checked gap: '<analysis> <outcome> <time>, <e> MCID, <p> % power: closed form 27.88,
    simulated 30.4 [29.1, 31.9]; power at 27: 0.885 (0.002), at 28: ...' (sim.power.check)."""
    out = []
    for _, g in checks.groupby(["effect_mcid", "outcome", "timepoint", "power", "analysis"], sort=False):
        r = g.iloc[0]
        at = "; ".join(f"at {int(c.n_per_arm)}: {fmt(Est(c.power_direct, c.mcse))}" for c in g.itertuples())
        out.append(f"{r.analysis} {r.outcome} {r.timepoint}, {r.effect_mcid:g} MCID, {100 * r.power:.0f} % power: "
                   f"closed form {r.closed_n:.2f}, simulated {_sim_n(r)}; power simulated directly ({int(r.reps):,} "
                   f"trials per n) {at}")
    return out


def gap_note(cmp: pd.DataFrame, checks: pd.DataFrame | None = None) -> str:
    """The largest relative gap between a simulated n and its closed form, both unrounded (the
    pairs of sim.power.GAP_PAIRS), per pair the median and largest |gap| and how often the closed
    form lies inside the simulated interval, and the direct checks of the largest gaps."""
    g = PW.gaps(cmp)
    if g.empty:
        return "No simulated N could be compared with a closed form (none fitted within the grid)."
    top = PW.largest_gap(cmp)
    lines = [f"Simulated n against its closed form, both unrounded ({COMPARISON_FILE}; simulated / closed - 1 over "
             f"{len(g)} comparisons of {', '.join(f'{a} with {_CLOSED[c]}' for a, c in PW.GAP_PAIRS)}): the largest "
             f"gap is **{_pct(top.gap)}**, {top.analysis} at {top.outcome} {top.timepoint}, effect "
             f"{top.effect_mcid:g} MCID, power {top.power:g}: simulated {_sim_n(top)} against {top.closed_n:.2f} "
             f"({_CLOSED[top.closed]}).", ""]
    for (an, closed), d in g.groupby(["analysis", "closed"], sort=False):
        w = d.loc[d["gap"].abs().idxmax()]
        lines.append(f"- {an} vs {_CLOSED[closed]}: median |gap| {100 * d['gap'].abs().median():.1f} %, largest "
                     f"{_pct(w.gap)} ({w.outcome} {w.timepoint}, effect {w.effect_mcid:g}, power {w.power:g}); the "
                     f"closed form inside the simulated 95 % interval in {int(d['inside'].sum())} of {len(d)}")
    if checks is not None and len(checks):
        lines += ["", f"The largest gaps checked by simulating the power (significant, favouring treatment) directly "
                      f"at the closed-form n rounded down and up ({CHECKS_FILE}; power (Monte Carlo SE)):", ""]
        lines += [f"- {t}" for t in check_text(checks)]
    return "\n".join(lines)


def estimand_lines(summary: pd.DataFrame, spec: TrialSpec) -> list[str]:
    """The ICH E9(R1) strategy behind each analysis, and the complete case's bias from the run."""
    cc = [a for a in spec.analyses if a not in RANK_ANALYSES or (a == "wilcoxon" and spec.death_strategy ==
                                                                 "complete_case")]
    lines = [f"- {', '.join(f'`{a}`' for a in cc)}: {STRATEGY['complete_case']}" if cc else ""]
    top = largest_bias(summary)
    if top is not None:
        o, t, eff, b, m = top
        lines[-1] += (f" (t-test at {o} {t}, {eff:g} MCID: bias {fmt(Est(b, m))} against the effect among all "
                      "survivors, pooled over n)")
    if "wilcoxon" in spec.analyses and spec.death_strategy == "worst_rank":
        lines.append(f"- `wilcoxon`: {STRATEGY['worst_rank']}")
    if "composite" in spec.analyses:
        lines.append(f"- `composite`: {STRATEGY['composite']}")
    return [x for x in lines if x]


def multiplicity_text(ss: pd.DataFrame, alpha: float, targets: Sequence[float]) -> str:
    k, f = multiplicity(ss, alpha, targets)
    if not k:
        return ""
    per = ", ".join(f"{number(v)} at {100 * p:.0f} % power" for p, v in f.items())
    return (f"Multiplicity: {k} outcome x visit comparisons per analysis, each tested at alpha = {alpha:g} "
            f"(two-sided); a Bonferroni correction (alpha / {k} = {number(alpha / k)} each) multiplies every "
            f"closed-form n by {per} (((z_(1-alpha/(2k)) + z_power) / (z_(1-alpha/2) + z_power))^2).")


def _bias_coverage(summary: pd.DataFrame, analyses: Sequence[str]) -> pd.DataFrame:
    est = [a for a in analyses if a not in ("wilcoxon", "composite")]
    b = summary[summary["analysis"].isin(est) & summary["measure"].isin(["bias", "coverage"])]
    rows = []
    for (an, o, t), g in b.groupby(["analysis", "outcome", "timepoint"], sort=False):
        bias = g[g["measure"] == "bias"]
        cov = g[g["measure"] == "coverage"]
        z = (bias["value"] / bias["mcse"]).abs()
        rows.append({"analysis": an, "outcome": o, "timepoint": t,
                     "max abs bias": float(bias["value"].abs().max()),
                     "max abs bias / MCSE": float(z.max()),
                     "coverage min": float(cov["value"].min()), "coverage max": float(cov["value"].max())})
    return pd.DataFrame(rows)


def _ties_text(ss: pd.DataFrame) -> str:
    if not len(ss) or "tie_factor" not in ss.columns:
        return "no table"
    t = ss["tie_factor"]
    lo, hi = ss.loc[t.idxmin()], ss.loc[t.idxmax()]
    return (f"tie factor {lo.tie_factor:.3f} at {lo.outcome} {lo.timepoint} to {hi.tie_factor:.3f} at {hi.outcome} "
            f"{hi.timepoint}")


UNITS_CAPTION = (
    U.UNITS_CAPTION + f" Beside them, per target power, the closed-form patients to randomise per arm for an effect "
    f"of one MCID (`n_ttest_one_mcid`, `n_ancova_one_mcid`: as 'closed form t (nct)' and 'closed form ANCOVA (nct)' "
    f"of the sample-size table at one MCID) and for an effect of {PW.MODERATE_SD:g} SD of the change on every "
    f"outcome, a conventional 'moderate' effect (`n_ttest_{PW.MODERATE_SD:g}sd`, `n_ancova_{PW.MODERATE_SD:g}sd`), "
    "with the same planning inputs (SD of the change, pre-post correlation, share seen at the visit): at one "
    "standardised effect the outcomes differ only through those inputs.")
UNITS_SECTION = (U.UNITS_TITLE, U.UNITS_FILE, UNITS_CAPTION)


def report_text(cfg: DictConfig, result: "ExperimentResult", spec: TrialSpec, reference_n: int,
                figure_paths: list[Path], ss: pd.DataFrame, units: pd.DataFrame | None = None,
                cmp: pd.DataFrame | None = None, checks: pd.DataFrame | None = None) -> str:
    exp = cfg.experiment
    summary = result.summary
    effects = sorted({float(v) for v in summary["effect_mcid"]})
    lines = [
        f"# {exp.name}", "", str(exp.get("description", "")).strip(), "",
        "## What was run",
        *run_lines(cfg, result),
        "- conditions are n per arm x effect in MCIDs",
        f"- per replicate: a cohort of 2 x n_per_arm patients from the calibrated outcome model with confounding "
        f"{cfg.cohort.confounding:g}; exactly n_per_arm randomised to {arm_words(cfg)['treated']} with the replicate's RNG; "
        "observed change = the potential change under the randomised arm",
        f"- deaths before the visit (`experiment.death_strategy: {spec.death_strategy}`): "
        f"{DEATH_TEXT[spec.death_strategy]}",
        "- analyses: `ttest` Student t-test of the change score, `welch` Welch t-test of the change score, "
        "`ancova` OLS of the follow-up value on arm + baseline, `wilcoxon` rank-sum test of the change (p only), "
        "`composite` rank-sum test of death before the visit (worst, earlier deaths lower) and the change of the "
        "patients seen (an alternative primary endpoint: survival and function together; p only)",
        f"- alpha = {spec.alpha:g}, two-sided; power = the rate of results significant AND in favour of treatment "
        "(`rejection_benefit`, the one-sided level alpha/2 test), type-I error = the two-sided rejection rate "
        "(`rejection`); bias, MSE and coverage are against the cohort's survivor effect on the change (the mean "
        "individual effect among patients alive at the visit under both arms)",
        "",
        "## Estimands (ICH E9(R1))",
        "How each analysis handles deaths and missed visits, and so what it estimates:",
        *estimand_lines(summary, spec),
        "",
        "## Sample size per arm",
        "Simulated n per arm reaching the target power, by root-finding on the simulated power curve (as SimSolve "
        "of the R package SimDesign): per analysis, outcome and time the counts of results significant in favour "
        "of treatment over the grid of n per arm "
        "are fitted by a binomial GLM with probit link, probit(power) = b0 + b1 sqrt(n) (statsmodels; probit "
        "linear in sqrt(n) is the normal-theory power curve, probit in log n does not fit this grid), solved for "
        "the target, N [95 % interval] rounded up. The interval is Fieller's: the n at which the fitted curve's "
        "pointwise 95 % Wald interval (on the probit scale) contains the target, with the coefficients' "
        "covariance scaled by the Pearson X2/df when above 1 (a lack of fit widens it). 'beyond grid' / "
        "'below grid': the fitted curve reaches the target outside the grid of n (extrapolation, not reported; "
        "`notes` in sample_size.csv gives the extrapolated value); 'not increasing': power does not increase "
        "significantly with n; 'too few n' / 'no fit': fewer than two grid n with power strictly between 0 and 1, "
        "or a separated fit (the curve is not identified). Beside them the closed forms of `sim/power.py` "
        "(patients to randomise per arm, rounded up):",
        "- closed form t (normal): n = 2 (z_{1-a/2} + z_{1-b})^2 sigma^2 / delta^2 / S, with sigma the SD of the "
        "change score among survivors to the visit and S the share of randomised patients seen at the visit "
        "(alive and not missing it), both estimated "
        f"from a reference cohort of {reference_n:,} patients drawn from the generator at confounding "
        f"{cfg.cohort.confounding:g} and the same effect (sigma^2 = mean of the two arms' variances);",
        "- closed form t (nct): the same solved exactly with the noncentral t (df = 2n - 2);",
        "- closed form ANCOVA: sigma_post^2 (1 - rho^2) in place of sigma^2 (Borm et al. 2007), with sigma_post "
        "the SD of the follow-up value and rho the within-arm pre-post correlation among survivors (reference "
        "cohort), normal approximation, divided by S; closed form ANCOVA (nct): solved with the noncentral t, "
        "df = 2n - 3;",
        "- closed form Wilcoxon (Noether): Noether (1987): n per arm = (z_{1-a/2} + z_{1-b})^2 / (12 c (1 - c) "
        "(P - 1/2)^2) / 2 with c = 1/2, P = P(Y1 > Y0) + P(Y1 = Y0)/2 for a treated and a control patient "
        + ("with a change at the visit, the others (dead or missed) ranked below every change; every randomised "
           "patient analysed (no inflation)"
           if spec.death_strategy == "worst_rank" else
           "seen at the visit (their potential changes in the reference cohort), divided by the share seen") + ". "
        "Noether's formula assumes continuous data; the outcomes are on stepped scales, so changes tie "
        f"({_ties_text(ss)}); the test used is tie-corrected, whose null variance is smaller by the tie factor "
        "1 - sum pi_k^3 (pi_k the pooled share of each distinct change): closed form Wilcoxon, ties = Noether x "
        "tie factor. Noether's formula also uses the null variance of U under the alternative, which is accurate "
        "for small effects and overstates n as P moves away from 1/2;",
        "- closed form composite (Noether, diluted P): the composite ranks the patients dead or seen; with q the "
        "share dead among them (`q (composite)`, the same in both arms at hazard ratio 1) its P is 1/2 + (1 - q)^2 "
        "(P(Y1 > Y0) - 1/2) (a pair with a death carries no information on the treatment), Noether's n at that P "
        "divided by the share ranked. Per patient randomised it is (1 - q)^-3 times the complete-case Wilcoxon "
        "closed form: the deaths the treatment does not change dilute the composite;",
        "- closed form t, Table 2 SD: as closed form t (nct) with sigma = the pooled SD of the change in the paper's "
        "Table 2 (observational, before matching), for comparison;",
        "- closed form t, informative loss: as closed form t (nct), divided by the share seen as it is, but with "
        "sigma the SD of the change among the patients seen and delta the difference of the arms' mean change "
        "among them (the complete case's estimand) in place of the survivors' SD and effect.",
        "",
        multiplicity_text(ss, spec.alpha, sorted(set(ss["power"]))) if len(ss) else "",
        "",
        sample_size_text(ss, spec.analyses),
        "",
        gap_note(cmp, checks) if cmp is not None else "",
    ]
    if units is not None and len(units):
        lines += ["", f"## {U.UNITS_TITLE}", UNITS_CAPTION, "", markdown(units)]
    for eff in effects:
        measure = "rejection" if eff == 0 else PW.POWER_MEASURE
        w = _measure_wide(summary, eff, measure, spec.analyses)
        title = "Type-I error (effect 0)" if eff == 0 else f"Power at effect = {eff:g} MCID"
        what = ("Two-sided rejection rate" if eff == 0 else
                "Rate of results significant in favour of treatment")
        lines += ["", f"## {title}", f"{what} (Monte Carlo SE) per analysis.", "",
                  markdown(w) if len(w) else "(no rows)"]
    bc = _bias_coverage(summary, spec.analyses)
    if len(bc):
        lines += ["", "## Bias and coverage (over all conditions)",
                  "Against the cohort's true ATE among survivors; with no bias |bias| / MCSE exceeds 3 in about "
                  "0.3 % of conditions; coverage of the 95 % CI should be 0.95 within about 2 MCSE.", "",
                  markdown(bc)]
    lines += ["", "## Figures", *figure_lines(cfg, figure_paths), "",
              "## Monte Carlo precision",
              "Every measure in summary.csv has its Monte Carlo SE (`mcse`) and the number of replicates it used "
              "(`n`), as in Morris, White & Crowther (2019), Table 6. Error bars are 2 x MCSE. A simulated sample "
              "size carries the Monte Carlo error of the whole fitted power curve in its 95 % interval.",
              "", "## Configuration", "```yaml", OmegaConf.to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)

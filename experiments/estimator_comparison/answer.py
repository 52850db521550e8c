"""The curated answer of estimator_comparison (README.md, "## Answer"), computed from the run's
summary by `python -m sim.report.curate RUN_DIR`: which analysis of the same 263 patients would
have had the most power for a one-MCID benefit, at what bias and against which estimand? Every
comparative word comes from sim.report.phrasing; power is read only for analyses whose type-I
error is not above 5 % beyond 2 MCSE."""

from pathlib import Path

import numpy as np
import pandas as pd

from sim.methods.estimators import ESTIMAND_OF
from sim.report import phrasing as P
from sim.report.curate import pick

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "forest.png"
EXTRA_FILES = ("comparison.csv",)
README_TABLES = (("Each analysis at 6 months, no hidden confounder", "comparison.csv",
                  "Bias and coverage against each analysis' own estimand (the matched treated for the paper's "
                  "pairs and regression after matching), power = significant in favour of decompression, size = "
                  "rejection with no effect; patients used per arm; Monte Carlo SEs in brackets."),)
TIME, ALPHA = "m6", 0.05
PAPER = "wilcoxon"
#: the weighting analyses, whose CIs use the small-sample SE (sim.methods.estimators.weighting)
WEIGHTING = ("ipw_att", "ipw_ate", "overlap", "aipw_att", "aipw_ate")


def _est(d: pd.DataFrame, **eq) -> P.Est:
    r = pick(d, **eq)
    return P.Est.of(r.iloc[0]) if len(r) else P.Est(float("nan"), float("nan"))


def comparison(summary: pd.DataFrame, u_or: float = 0.0, u_effect: float = 0.0) -> pd.DataFrame:
    """Per outcome and analysis: estimand, bias, empirical SE, coverage, size, power and patients used."""
    s = summary[(summary["timepoint"] == TIME) & np.isclose(summary["treatment_log_or"], u_or)
                & np.isclose(summary["outcome_effect"], u_effect)]
    rows = []
    for (o, a), d in s.groupby(["outcome", "analysis"], sort=False):
        null, one = d[np.isclose(d["effect_mcid"], 0.0)], d[np.isclose(d["effect_mcid"], 1.0)]
        size = _est(null, measure="rejection")
        power = _est(one, measure="rejection_benefit")
        rows.append({"outcome": o, "analysis": a, "estimand": ESTIMAND_OF.get(a) or "matched",
                     "bias": P.fmt(_est(null, measure="bias")), "empirical SE": P.fmt(_est(null, measure="empse")),
                     "coverage": P.fmt(_est(null, measure="coverage")), "size": P.fmt(size), "power": P.fmt(power),
                     "used (treated / control)": f"{_est(one, measure='mean_n_used_treated').value:.0f} / "
                                                 f"{_est(one, measure='mean_n_used_control').value:.0f}",
                     "power_est": power, "size_est": size, "coverage_est": _est(null, measure="coverage")})
    return pd.DataFrame(rows)


def _best(d: pd.DataFrame, masked: pd.DataFrame) -> tuple[str, list[str]]:
    """The analysis with the most power among those that keep their size, against the paper's test,
    with its power under the hidden confounder; and the analyses left out for their size."""
    kept = d[[P.compare(x, ALPHA, "above", "below") != "above" for x in d["size_est"]]]
    lost = [a for a in d["analysis"] if a not in set(kept["analysis"])]
    best = kept.loc[kept["power_est"].map(lambda e: e.value).idxmax()]
    paper = d[d["analysis"] == PAPER].iloc[0]
    word = P.compare(best["power_est"], paper["power_est"], "more than", "less than")
    with_u = masked[masked["analysis"] == best["analysis"]]
    u_txt = f"; {P.fmt(with_u['power_est'].iloc[0])} under the hidden confounder" if len(with_u) else ""
    return (f"{best['analysis']} ({best['estimand']}; {best['used (treated / control)']} patients used): power "
            f"{P.fmt(best['power_est'])}, {word} the paper's Wilcoxon test's {P.fmt(paper['power_est'])}{u_txt}, "
            f"bias {best['bias']}, coverage {best['coverage']}"), lost


def _weighting_coverage(table: pd.DataFrame) -> str:
    """The coverage of the weighting analyses' CIs with no effect, and where it falls short of 0.95."""
    rows = [r for r in table.itertuples() if r.analysis in WEIGHTING]
    short = [f"{r.analysis} {r.outcome} {P.fmt(r.coverage_est)}" for r in rows
             if P.compare(r.coverage_est, 0.95, "above", "below", "indistinguishable") == "below"]
    return (" The weighting analyses (IPW, overlap weights, AIPW) refer a small-sample SE (HC2 on each "
            "patient's weight share and outcome-regression leverage) to a Welch-Satterthwaite t: their 95 % CIs "
            f"cover with no effect in {P.span([r.coverage_est for r in rows])}; "
            + (f"below 0.95 beyond 2 MCSE: {', '.join(short)}." if short else "none below 0.95 beyond 2 MCSE."))


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    table = comparison(summary)
    shown = table.drop(columns=["power_est", "size_est", "coverage_est"])
    shown.to_csv(run_dir / "comparison.csv", index=False)
    masked = comparison(summary, 0.6931471806, -0.5)
    parts, lost = [], {}
    for o, d in table.groupby("outcome", sort=False):
        text, out = _best(d, masked[masked["outcome"] == o])
        parts.append(f"{o}: {text}")
        for a in out:
            lost.setdefault(a, []).append(o)
    cover = [r.coverage_est for r in table.itertuples() if r.outcome in lost.get(r.analysis, ())]
    lost_txt = "; ".join(f"{a} ({', '.join(os)})" for a, os in lost.items())
    return ("Monte Carlo SEs are in brackets. At 6 months, among the analyses whose type-I error is not above 5 % "
            "beyond 2 MCSE, the most power for a true one-MCID benefit (significant in its favour) has, per "
            "outcome: " + "; ".join(parts) + ". Bias and coverage are against each analysis' own estimand, with no "
            "effect; the hidden confounder has odds ratio 2 on decompression and -0.5 SD on the change. Left out "
            f"for a type-I error above 5 % beyond 2 MCSE: {lost_txt or 'none'}"
            + (f"; there the coverage of their 95 % CI is {P.span(cover)} (comparison.csv)." if lost else ".")
            + _weighting_coverage(table))

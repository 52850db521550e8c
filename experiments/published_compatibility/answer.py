"""The curated answer of published_compatibility (README.md, "## Answer"), computed from the run's
tables by `python -m sim.report.curate RUN_DIR`: which true benefits of decompression does the
published null result still allow, once the design that produced it is taken into account? Every
comparative word comes from sim.report.phrasing."""

from pathlib import Path

import numpy as np
import pandas as pd

from sim.report import phrasing as P

KEY_TABLE = "key_table.csv"
KEY_FIGURE = "compatibility_map.png"
EXTRA_FILES = ("compatibility.csv", "bias_adjusted.csv", "surrogate.csv")
TIME = "m6"
STRONG = (1.0986122887, -1.0)
REACH = 0.97  # sim.jobs.compatibility.REACH: a θ beyond the bounded scale's limit is simulated at this share of it  # the strongest masking confounder of the grid: odds ratio 3, -1 SD


def _cell(d: pd.DataFrame, lor: float, effect: float) -> pd.Series | None:
    r = d[np.isclose(d["treatment_log_or"], lor) & np.isclose(d["outcome_effect"], effect)]
    return r.iloc[0] if len(r) else None


def _upper(r: pd.Series) -> str:
    """The largest compatible benefit, in MCID and outcome units, or an open end at its limit."""
    if r.open_high:
        bound = (f"{REACH:.0%} of the largest the bounded scale allows" if r.theta_max_is_scale_bound
                 else "the end of the grid")
        return f"every benefit simulated, up to {r.theta_max:.2f} MCID ({bound}; open)"
    x = P.Est(r.high_mcid, r.high_mcid_mcse)
    return f"{P.fmt(x)} MCID = {P.fmt(P.Est(r.high, r.high_mcse))} in outcome units"


def _rank_upper(r: pd.Series) -> str:
    """The upper end through the paper's own test (its published Wilcoxon p, signed by the difference)."""
    if r.rank_open_high is True or r.rank_open_high == 1:
        return f"open ({r.theta_max:.2f} MCID, the largest simulated)"
    return P.fmt(P.Est(r.rank_high_mcid, r.rank_high_mcid_mcse))


def _versus_naive(r: pd.Series) -> str:
    if r.open_high:
        return f"the naive t-interval stops at {r.naive_high_mcid:.2f}"
    word = P.compare(P.Est(r.high_mcid, r.high_mcid_mcse), r.naive_high_mcid, "above", "below")
    return f"{word} the naive t-interval's {r.naive_high_mcid:.2f}"


def _one_mcid(r: pd.Series) -> str:
    """Whether a benefit of one MCID lies inside the design-based interval, beyond its MCSE."""
    if r.open_high:
        return "compatible" if r.theta_max >= 1 else "beyond what was simulated"
    word = P.compare(P.Est(r.high_mcid, r.high_mcid_mcse), 1.0, "above", "below")
    return {"above": "compatible", "below": "excluded"}.get(word, "at the edge of the interval")


def _masking(c: pd.DataFrame) -> str:
    """How the strongest masking confounder moves each finite upper end, beyond its MCSE."""
    moves = []
    for o, d in c.groupby("outcome", sort=False):
        base, strong = _cell(d, 0.0, 0.0), _cell(d, *STRONG)
        if strong is None or base.open_high or strong.open_high:
            continue
        moves.append((o, P.compare(P.Est(strong.high_mcid, strong.high_mcid_mcse),
                                   P.Est(base.high_mcid, base.high_mcid_mcse), "higher", "lower")))
    if not moves:
        return ""
    words = {w for _, w in moves}
    if words == {"higher"}:
        return (f"where both upper ends lie inside the grid ({', '.join(o for o, _ in moves)}), the strongest masking "
                "confounder moves the upper end higher beyond 2 MCSE: hidden confounding of this kind widens what "
                "the published null result allows towards larger benefits. ")
    return ("the strongest masking confounder moves the upper end: " + ", ".join(f"{o} {w}" for o, w in moves) + ". ")


def _sizes(rows: pd.DataFrame) -> str:
    """'33/30' when every outcome has the same numbers analysed, else one per outcome."""
    sizes = {f"{r.n_treated:g}/{r.n_control:g}" for r in rows.itertuples()}
    if len(sizes) == 1:
        return sizes.pop()
    return ", ".join(f"{r.outcome} {r.n_treated:g}/{r.n_control:g}" for r in rows.itertuples())


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def answer(summary: pd.DataFrame, run_dir: Path) -> str:
    compat = pd.read_csv(run_dir / "compatibility.csv")
    adjusted = pd.read_csv(run_dir / "bias_adjusted.csv")
    c = compat[compat["timepoint"] == TIME]
    parts, verdicts = [], {}
    for o, d in c.groupby("outcome", sort=False):
        base, strong = _cell(d, 0.0, 0.0), _cell(d, *STRONG)
        text = f"{o}: {_upper(base)} without U ({_versus_naive(base)})"
        if strong is not None:
            text += f", {_upper(strong)} under U with odds ratio 3 and -1 SD"
        parts.append(text)
        verdicts[o] = _one_mcid(base)
    groups = {v: [o for o, w in verdicts.items() if w == v]
              for v in ("compatible", "at the edge of the interval", "excluded", "beyond what was simulated")}
    one = "; ".join(f"{v} for {', '.join(os)}" for v, os in groups.items() if os)
    rank = [(o, _rank_upper(_cell(d, 0.0, 0.0))) for o, d in c.groupby("outcome", sort=False)
            if "rank_high_mcid" in d and np.isfinite(_cell(d, 0.0, 0.0).published_z)]
    rank_txt = ("Inverting instead the Wilcoxon p-values the paper published (each signed by its difference in means) "
                "through the same design gives, without U, upper ends of " + ", ".join(f"{o} {t}" for o, t in rank)
                + " MCID. ") if rank else ""
    a = adjusted[adjusted["timepoint"] == TIME]
    pba = ", ".join(f"{r.outcome} {r.total_median_mcid:.2f} ({r.total_q025_mcid:.2f} to {r.total_q975_mcid:.2f}"
                    + (f"; {r.share_theta_clipped:.0%} of draws at the {r.theta_min:.2f} to {r.theta_max:.2f} simulated"
                       " limits" if r.share_theta_clipped >= 0.005 else "") + ")"
                    for r in a.itertuples())
    misfit = float(a["surrogate_misfit_mcse"].max())
    base_rows = c[np.isclose(c["treatment_log_or"], 0) & np.isclose(c["outcome_effect"], 0)]
    return (
        "Monte Carlo SEs are in brackets. θ is the true effect on the change from baseline in MCID units, simulated "
        "through the paper's whole design (calibrated cohort, its PS, greedy 1:1 matching at 0.2 SD of the logit "
        "PS, complete-case difference in mean change); the published Table 5 differences (with "
        + _sizes(base_rows) + " analysed per arm at 6 months) are inverted over θ into 95 % compatibility "
        "intervals. At 6 months the "
        "largest true benefit of decompression still compatible with what the paper published is: "
        + "; ".join(parts) + ". "
        f"A true benefit of one MCID is, without hidden confounding, {one}. "
        + rank_txt
        + _sentence(_masking(c))
        + f"With priors on U ({a['priors'].iloc[0]}), the bias-adjusted θ at 6 months has median (2.5-97.5 %) {pba}, "
        "random error included "
        f"({int(a['draws'].iloc[0])} draws; the largest gap between the linear surrogate behind it and the simulated "
        f"means it is fitted to is {misfit:.1f} MCSE).")

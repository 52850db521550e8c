"""Sensitivity of the paper's own matched result, from its published summaries (Table 5).

Why: the paper's conclusion ("no difference" after matching, 51 pairs) rests on Wilcoxon p-values
of the change from baseline. Without individual data we can still ask, from Table 5's means, SDs
and sizes alone: how precise is each difference in mean change, is it *shown* to lie within one
MCID (TOST), and how strong would unmeasured confounding have to be to explain it away or to hide
a true benefit of one MCID (E-values)?

Sign convention (checked against the study file and the paper). The paper's Methods define
Δ as "postsurgery score - presurgery score", but Table 5 (and Table 2) report every Δ as an
*improvement*: post - pre for Barthel and EQ-5D-5L (``higher_is_better: true``), pre - post for
pain VAS and the face scale (``higher_is_better: false``); e.g. matched VAS at 6 months falls
59.9 -> 18.9 in the decompression group (Fig. 2c) and Table 5 prints +45.4. The study file states
this convention (``outcomes:`` header comment) and the same rule the generator uses
(``OutcomeModel.direction()``: change = direction x (post - pre), direction = +1 if higher is
better, else -1). So the Table 5 values are used as they are, and ``diff`` =
mean improvement with decompression - mean improvement without: positive always favours
decompression, whatever the outcome's direction. ``diff_raw`` = direction x ``diff`` is the same
difference on the paper's Methods scale (follow-up minus baseline). ``published_sensitivity``
checks the convention against Fig. 2 (same matched sample): if, for an outcome, the sign of every
Table 5 mean contradicts direction x (Fig. 2 follow-up mean - Fig. 2 pre mean), the direction
flag (or the transcription) is wrong and it raises.

Sizes: Table 5's header gives N = 51 per group (``matched.n``); it gives no count per visit,
although 18 and 21 of the matched patients died (Table 4). SEs computed with 51 are therefore,
if anything, too small, and equivalence too easily shown; ``n=`` overrides them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import special

from sim.methods.equivalence import tost_from_summary
from sim.methods.evalue import evalue_diff_means
from sim.report.tables import markdown
from sim.study import GROUPS, Study, load_study

__all__ = ["published_sensitivity", "published_sensitivity_markdown", "READINGS", "TIME_LABELS"]

TIME_LABELS = {"m1": "1 month", "m6": "6 months"}

READINGS = {
    "inconclusive": "no significant difference and not shown equivalent: inconclusive",
    "equivalent": "no significant difference and shown equivalent within one MCID",
    "sig_equivalent": "significant difference, but shown equivalent within one MCID",
    "sig_t": "significant difference favouring decompression; not shown equivalent",
    "sig_c": "significant difference favouring no decompression; not shown equivalent",
}

COLUMNS = [
    "outcome", "label", "time", "higher_is_better", "mcid",
    "n_treated", "mean_treated", "sd_treated", "n_control", "mean_control", "sd_control",
    "p_published", "diff", "diff_raw", "se", "df", "ci_low", "ci_high", "p_welch",
    "sd_pooled", "d", "evalue_estimate", "evalue_ci", "evalue_mcid", "evalue_mcid_ci",
    "tost_p", "ci90_low", "ci90_high", "equivalent", "reading",
]


def _sizes(study: Study, n: Mapping[str, int] | None) -> dict[str, int]:
    if n is None:
        matched = study.raw.get("matched")
        if not isinstance(matched, Mapping) or not isinstance(matched.get("n"), Mapping):
            raise ValueError(f"study {study.name!r} has no matched.n (the matched group sizes of Table 5); "
                             "pass n={'treated': ..., 'control': ...}")
        n = matched["n"]
    out = {}
    for g in GROUPS:
        v = n.get(g) if isinstance(n, Mapping) else None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"n[{g!r}] must be an integer >= 2; got {v!r}")
        out[g] = int(v)
    return out


def _check_direction(study: Study, name: str, out: Mapping[str, Any]) -> None:
    """Raise if every Table 5 sign contradicts direction x (Fig. 2 follow-up - baseline)."""
    direction = 1.0 if out["higher_is_better"] else -1.0
    fig, tab = out.get("fig2"), out["table5"]
    if not isinstance(fig, Mapping):
        return
    agree = disagree = 0
    for g in GROUPS:
        for t in study.follow_up:
            s_fig = np.sign(direction * (fig[g][t][0] - fig[g][study.baseline][0]))
            s_tab = np.sign(tab[g][t][0])
            if s_fig and s_tab:
                agree += s_fig == s_tab
                disagree += s_fig != s_tab
    if disagree and not agree:
        raise ValueError(
            f"outcomes.{name}: Table 5 changes are improvements (study file convention), but with "
            f"higher_is_better={out['higher_is_better']} the Fig. 2 means imply the opposite sign at every "
            f"visit; check outcomes.{name}.higher_is_better or the signs of outcomes.{name}.table5")


def _reading(sig: bool, equivalent: bool, diff: float) -> str:
    if equivalent:
        return READINGS["sig_equivalent" if sig else "equivalent"]
    if not sig:
        return READINGS["inconclusive"]
    return READINGS["sig_t" if diff > 0 else "sig_c"]


def published_sensitivity(study: Study | Mapping | str, *, n: Mapping[str, int] | None = None,
                          alpha: float = 0.05) -> pd.DataFrame:
    """One row per outcome x time of Table 5 (the matched changes from baseline): E-values and TOST.

    Columns: outcome, label, time (the study's follow-up visits: m1, m6), higher_is_better, mcid; n/mean/sd per group
    (``_treated`` = decompression, ``_control`` = no decompression; n from ``matched.n`` unless
    ``n`` is given); p_published (the paper's Wilcoxon p); diff = mean improvement with
    decompression - without (> 0 favours decompression for every outcome: Table 5's changes are
    improvement-signed, see the module docstring); diff_raw = the same on the follow-up - baseline
    scale (= diff x direction); se, df, ci_low, ci_high, p_welch: Welch SE, Satterthwaite df,
    (1 - alpha) CI and two-sided p; sd_pooled = sqrt((sd_t² + sd_c²)/2) of the change and
    d = diff / sd_pooled; evalue_estimate / evalue_ci: E-values to explain the estimate / the CI
    limit nearer 0 away (``evalue_diff_means`` with the Welch CI, 1 if it contains 0);
    evalue_mcid / evalue_mcid_ci: to move the estimate / CI to a true benefit of one MCID
    (``true = mcid``); tost_p, ci90_low, ci90_high, equivalent: TOST (Welch) against ±MCID with its
    (1 - 2 alpha) CI; reading: "significant" means the Welch CI excludes 0.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    sizes = _sizes(study, n)
    n1, n0 = sizes["treated"], sizes["control"]
    rows = []
    for name, out in study.outcomes.items():
        _check_direction(study, name, out)
        direction = 1.0 if out["higher_is_better"] else -1.0
        mcid = float(out["mcid"]["value"])
        tab = out["table5"]
        for t in study.follow_up:
            (m1, s1), (m0, s0) = tab["treated"][t], tab["control"][t]
            m1, s1, m0, s0 = float(m1), float(s1), float(m0), float(s0)
            tost = tost_from_summary(m1, s1, n1, m0, s0, n0, mcid, alpha)
            diff, se, df = tost.estimate, tost.se, tost.df
            q = float(special.stdtrit(df, 1.0 - alpha / 2.0))
            ci = (diff - q * se, diff + q * se)
            p_welch = float(2.0 * special.stdtr(df, -abs(diff / se)))
            sd = math.sqrt((s1 * s1 + s0 * s0) / 2.0)
            null = evalue_diff_means(diff, sd, se, ci=ci)
            shift = evalue_diff_means(diff, sd, se, ci=ci, true=mcid)
            sig = not (ci[0] <= 0.0 <= ci[1])
            rows.append({
                "outcome": name, "label": out.get("label", name), "time": t,
                "higher_is_better": bool(out["higher_is_better"]), "mcid": mcid,
                "n_treated": n1, "mean_treated": m1, "sd_treated": s1,
                "n_control": n0, "mean_control": m0, "sd_control": s0,
                "p_published": tab.get("p", {}).get(t, float("nan")),
                "diff": diff, "diff_raw": direction * diff + 0.0, "se": se, "df": df,  # + 0.0: no -0.0
                "ci_low": ci[0], "ci_high": ci[1], "p_welch": p_welch,
                "sd_pooled": sd, "d": null["d"],
                "evalue_estimate": null["evalue_estimate"], "evalue_ci": null["evalue_ci"],
                "evalue_mcid": shift["evalue_estimate"], "evalue_mcid_ci": shift["evalue_ci"],
                "tost_p": tost.p_value, "ci90_low": tost.ci_low, "ci90_high": tost.ci_high,
                "equivalent": bool(tost.equivalent), "reading": _reading(sig, bool(tost.equivalent), diff),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def _num(x: float) -> str:
    """Fixed precision by size: 0.02, 2.3, 12.6."""
    a = abs(x)
    return f"{x:.3f}" if a < 1 else f"{x:.2f}" if a < 10 else f"{x:.1f}"


def _where(row) -> str:
    return f"{row['label']}, {TIME_LABELS.get(row['time'], row['time'])}"


def published_sensitivity_markdown(table: pd.DataFrame) -> str:
    """A report section: the table of ``published_sensitivity`` and sentences computed from it."""
    if not len(table):
        raise ValueError("published_sensitivity_markdown needs at least one row")
    show = pd.DataFrame({
        "outcome": table["label"],
        "time": [TIME_LABELS.get(t, t) for t in table["time"]],
        "MCID": [f"{m:g}" for m in table["mcid"]],
        "decompression mean (SD)": [f"{m:g} ({s:g})" for m, s in zip(table["mean_treated"], table["sd_treated"])],
        "no decompression mean (SD)": [f"{m:g} ({s:g})" for m, s in zip(table["mean_control"], table["sd_control"])],
        "n": [f"{a}/{b}" for a, b in zip(table["n_treated"], table["n_control"])],
        "published p": [str(p) for p in table["p_published"]],
        "difference (95% CI)": [f"{_num(d)} ({_num(lo)} to {_num(hi)})"
                                for d, lo, hi in zip(table["diff"], table["ci_low"], table["ci_high"])],
        "d": [f"{d:.2f}" for d in table["d"]],
        "E-value (CI)": [f"{e:.2f} ({c:.2f})" for e, c in zip(table["evalue_estimate"], table["evalue_ci"])],
        "E-value to 1 MCID (CI)": [f"{e:.2f} ({c:.2f})" for e, c in zip(table["evalue_mcid"], table["evalue_mcid_ci"])],
        "TOST p (90% CI)": [f"{p:.3f} ({_num(lo)} to {_num(hi)})"
                            for p, lo, hi in zip(table["tost_p"], table["ci90_low"], table["ci90_high"])],
        "equivalent": ["yes" if e else "no" for e in table["equivalent"]],
        "reading": table["reading"],
    })
    total = len(table)
    eq = table[table["equivalent"].astype(bool)]
    inconclusive = int((table["reading"] == READINGS["inconclusive"]).sum())
    listed = f" ({'; '.join(_where(r) for _, r in eq.iterrows())})" if len(eq) else ""
    s1 = (f"{len(eq)} of {total} comparisons are shown equivalent within one MCID{listed}, and "
          f"{inconclusive} of {total} show no significant difference without being shown equivalent "
          "(inconclusive: for those the non-significant test is not evidence of no difference).")
    top = table.loc[table["evalue_mcid"].idxmax()]
    low = table.loc[table["evalue_mcid"].idxmin()]
    s2 = (f"The largest E-value to move an estimate to a true benefit of one MCID is "
          f"{top['evalue_mcid']:.2f} ({_where(top)}: difference {_num(top['diff'])} vs MCID {top['mcid']:g}), "
          f"the smallest {low['evalue_mcid']:.2f} ({_where(low)}): unmeasured confounding associated with both "
          f"decompression and the change by risk ratios of {top['evalue_mcid']:.2f} could move every one of the "
          f"{total} point estimates to a true benefit of one MCID.")
    s3 = ("Rosenbaum bounds need the matched pair differences, which the paper does not publish: with "
          "individual data, `python -m sim.sensitivity DIR/matched.csv --outcome COL --gamma 1,1.5,2,3 "
          "--mcid X` (add `--lower-is-better` for a raw VAS or face-scale column) computes them.")
    note = ("Differences are decompression minus no decompression in the *improvement* of each score "
            "(Table 5 prints VAS and face-scale changes as pre - post), so > 0 favours decompression; Welch "
            "SE and CI from the published means and SDs with the published group sizes (deaths at follow-up "
            "make the true sizes smaller, the CIs wider); d = difference / sqrt((SD_t² + SD_c²)/2); E-values "
            "as VanderWeele & Ding (RR ≈ exp(0.91 d)), of the estimate and of the 95% CI limit nearer the "
            "null (1 if the CI includes it); TOST (Welch) against ±1 MCID, equivalent when the 90% CI lies "
            "inside.")
    return "\n".join([
        "# Published Table 5: precision, equivalence and E-values (summary data only)", "",
        markdown(show), note, "", s1, "", s2, "", s3, "",
    ])

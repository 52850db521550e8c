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

Sizes: Table 5's header gives N = 51 per group, but no count per visit, although 18 and 21 of
the matched patients died (Table 4): SEs computed with 51 are too small and equivalence too
easily shown. So each visit uses the number analysed the study file gives (``analysed``: a point
``n`` and a plausible range [low, high] per group, each with its source or assumption), and
``sim.report.published_n`` sweeps every decision over that range; ``n=`` overrides them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from sim.report.published_n import DECISIONS, comparison, decision_ranges
from sim.report.tables import markdown
from sim.cohort.study import DEFAULT_WORDS, GROUPS, Study, load_study

__all__ = ["published_sensitivity", "published_sensitivity_markdown", "comparison", "READINGS", "TIME_LABELS",
           "DECISIONS"]

#: a visit's words in the reports: the study's visits.labels (Study.visit_labels), else its name
TIME_LABELS: dict[str, str] = {}

READINGS = {
    "inconclusive": "no significant difference and not shown equivalent: inconclusive",
    "equivalent": "no significant difference and shown equivalent within one MCID",
    "sig_equivalent": "significant difference, but shown equivalent within one MCID",
    "sig_t": "significant difference favouring {treated}; not shown equivalent",  # the study's words
    "sig_c": "significant difference favouring {control}; not shown equivalent",
}

COLUMNS = [
    "outcome", "label", "time", "higher_is_better", "mcid",
    "n_treated", "mean_treated", "sd_treated", "n_control", "mean_control", "sd_control",
    "n_treated_low", "n_treated_high", "n_control_low", "n_control_high", "n_basis",
    "p_published", "diff", "diff_raw", "se", "df", "ci_low", "ci_high", "p_welch",
    "sd_pooled", "d", "evalue_estimate", "evalue_ci", "evalue_mcid", "evalue_mcid_ci",
    "tost_p", "ci90_low", "ci90_high", "equivalent", "ci_excludes_zero", "ci_excludes_mcid", "reading", "alpha",
]
#: per decision (DECISIONS), from sim.report.published_n.decision_ranges: its sidedness, its value at
#: the low and high ends of the plausible n, over that range, and the n per arm at which it flips
RANGE_FIELDS = ("sidedness", "holds_at_low", "holds_at_high", "over_range", "flip_n", "by_n")


def _group_sizes(n: Any, where: str) -> dict[str, int]:
    out = {}
    for g in GROUPS:
        v = n.get(g) if isinstance(n, Mapping) else None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"{where}[{g!r}] must be an integer >= 2; got {v!r}")
        out[g] = int(v)
    return out


def _sizes(study: Study, n: Mapping | None) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, str]]:
    """Per follow-up visit and group {"n", "low", "high"}, and per visit the basis of n: from the
    study's ``analysed`` section, or ``n`` ({group: size} for every visit, or {visit: {group:
    size}}), whose range is the point itself."""
    if n is None:
        sizes = study.analysed_sizes()
        return sizes, {t: study.analysed_basis(t)["n"] for t in study.follow_up}
    per_visit = isinstance(n, Mapping) and all(t in n for t in study.follow_up) and not any(g in n for g in GROUPS)
    sizes, basis = {}, {}
    for t in study.follow_up:
        got = _group_sizes(n[t], f"n[{t!r}]") if per_visit else _group_sizes(n, "n")
        sizes[t] = {g: {"n": v, "low": v, "high": v} for g, v in got.items()}
        basis[t] = "given (n=)"
    return sizes, basis


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


def _reading(sig: bool, equivalent: bool, diff: float, words: Mapping[str, str]) -> str:
    if equivalent:
        return READINGS["sig_equivalent" if sig else "equivalent"]
    if not sig:
        return READINGS["inconclusive"]
    return READINGS["sig_t" if diff > 0 else "sig_c"].format(**words)


def published_sensitivity(study: Study | Mapping | str, *, n: Mapping | None = None,
                          alpha: float = 0.05, ranges: bool = True) -> pd.DataFrame:
    """One row per outcome x time of Table 5 (the matched changes from baseline): E-values and TOST.

    Columns: outcome, label, time (the study's follow-up visits: m1, m6), higher_is_better, mcid; n/mean/sd per group
    (``_treated`` = decompression, ``_control`` = no decompression; n = the number analysed at
    that visit, ``analysed.<visit>.<group>.n`` of the study file, unless ``n`` is given: {group:
    n} for every visit or {visit: {group: n}}); n_<group>_low / _high: the plausible range of
    that number and n_basis its source or assumption; p_published (the paper's Wilcoxon p);
    diff = mean improvement with decompression - without (> 0 favours decompression for every
    outcome: Table 5's changes are improvement-signed, see the module docstring); diff_raw = the
    same on the follow-up - baseline scale (= diff x direction); se, df, ci_low, ci_high, p_welch:
    Welch SE, Satterthwaite df, (1 - alpha) CI and two-sided p; sd_pooled = sqrt((sd_t² + sd_c²)/2)
    of the change and d = diff / sd_pooled; evalue_estimate / evalue_ci: E-values to explain the
    estimate / the CI limit nearer 0 away (``evalue_diff_means`` with the Welch CI, 1 if it
    contains 0); evalue_mcid / evalue_mcid_ci: to move the estimate / CI to a true benefit of one
    MCID (``true = mcid``); tost_p, ci90_low, ci90_high, equivalent: TOST (Welch) against ±MCID
    with its (1 - 2 alpha) CI; ci_excludes_zero, ci_excludes_mcid: the (1 - alpha) CI excludes 0 /
    +1 MCID (DECISIONS); reading: "significant" means the Welch CI excludes 0; alpha. With
    ``ranges``, per decision D: D_sidedness, D_holds_at_low / D_holds_at_high (at the low / high
    ends of the plausible n of both groups), D_over_range ("yes throughout", "no throughout" or
    how many (n_treated, n_control) of the range it holds at), D_flip_n (the n per arm, equal in
    both groups, from which on it is as at the largest plausible n; NaN if it never flips) and
    D_by_n (that in words): ``sim.report.published_n.decision_ranges``.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    sizes, basis = _sizes(study, n)
    rows = []
    for name, out in study.outcomes.items():
        _check_direction(study, name, out)
        direction = 1.0 if out["higher_is_better"] else -1.0
        mcid = float(out["mcid"]["value"])
        tab = out["table5"]
        for t in study.follow_up:
            (m1, s1), (m0, s0) = tab["treated"][t], tab["control"][t]
            m1, s1, m0, s0 = float(m1), float(s1), float(m0), float(s0)
            size = sizes[t]
            c = comparison(m1, s1, size["treated"]["n"], m0, s0, size["control"]["n"], mcid, alpha)
            rows.append({
                **c, "outcome": name, "label": out.get("label", name), "time": t,
                "higher_is_better": bool(out["higher_is_better"]), "mcid": mcid,
                "mean_treated": m1, "sd_treated": s1, "mean_control": m0, "sd_control": s0,
                **{f"n_{g}_{k}": size[g][k] for g in GROUPS for k in ("low", "high")}, "n_basis": basis[t],
                "p_published": tab.get("p", {}).get(t, float("nan")),
                "diff_raw": direction * c["diff"] + 0.0,  # + 0.0: no -0.0
                "reading": _reading(c["ci_excludes_zero"], c["equivalent"], c["diff"], study.words), "alpha": alpha,
            })
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not ranges:
        return table
    rng = decision_ranges(table, alpha)
    for d in DECISIONS:
        part = rng[rng["decision"] == d].reset_index(drop=True)
        for f in RANGE_FIELDS:
            table[f"{d}_{f}"] = part[f].to_numpy()
    return table


def _num(x: float) -> str:
    """Fixed precision by size: 0.02, 2.3, 12.6."""
    a = abs(x)
    return f"{x:.3f}" if a < 1 else f"{x:.2f}" if a < 10 else f"{x:.1f}"


def _where(row, labels: Mapping[str, str]) -> str:
    return f"{row['label']}, {labels.get(row['time'], row['time'])}"


def _yes(x) -> str:
    return "yes" if bool(x) else "no"


def _sizes_section(table: pd.DataFrame, study: Study | None, words: Mapping[str, str],
                   labels: Mapping[str, str]) -> list[str]:
    """Where each visit's n and its range come from (the study file's `analysed` basis)."""
    out = ["## The number analysed at each visit", ""]
    per_visit = table.drop_duplicates("time")
    if study is None or "analysed" not in study.report:
        for _, r in per_visit.iterrows():
            out.append(f"- {labels.get(r['time'], r['time'])}: n = {r['n_treated']}/{r['n_control']} "
                       f"({words['treated']}/{words['control']}), {r['n_basis']}.")
        return out + [""]
    block, size = study.report["analysed"], (study.raw.get("matched") or {}).get("n", study.n)["treated"]
    out.append(f"Table 5 prints N = {size} per group and no count per visit. Deaths among the matched: "
               f"{block['deaths']['treated']}/{block['deaths']['control']} ({block['deaths']['source']}).")
    out.append("")
    from sim.report.published_n import paper_bounds

    bounds = paper_bounds(study)
    for _, r in per_visit.iterrows():
        t = r["time"]
        basis = study.analysed_basis(t)
        out += [f"**{labels.get(t, t)}**: n used {r['n_treated']}/{r['n_control']}; plausible range "
                f"{r['n_treated_low']}-{r['n_treated_high']} / {r['n_control_low']}-{r['n_control_high']} "
                f"({words['treated']} / {words['control']}; at most {bounds[t]['treated']}/{bounds[t]['control']} by "
                "Fig. 2 vs Table 5).", "",
                f"- n: {basis['n']}", f"- low: {basis['low']}", f"- high: {basis['high']}", ""]
    return out


def _decisions_section(table: pd.DataFrame, labels: Mapping[str, str]) -> list[str]:
    """Each decision at the study's n, at the ends of the plausible range, over it, and by n (the
    decisions that are 'no' at every n are counted, not listed)."""
    rows, never = [], 0
    for _, r in table.iterrows():
        for d, (what, _) in DECISIONS.items():
            if not r[d] and r[f"{d}_over_range"] == "no throughout" and r[f"{d}_flip_n"] != r[f"{d}_flip_n"]:
                never += 1
                continue
            rows.append({
                "outcome": r["label"], "time": labels.get(r["time"], r["time"]), "decision": what,
                "at n used": f"{_yes(r[d])} ({r['n_treated']}/{r['n_control']})",
                "at range low": f"{_yes(r[f'{d}_holds_at_low'])} ({r['n_treated_low']}/{r['n_control_low']})",
                "at range high": f"{_yes(r[f'{d}_holds_at_high'])} ({r['n_treated_high']}/{r['n_control_high']})",
                "over the range": r[f"{d}_over_range"], "by n per arm (brute force)": r[f"{d}_by_n"]})
    sided = "; ".join(f"{what}: {how}" for what, how in DECISIONS.values())
    fragile = [f"{_where(r, labels)}, {DECISIONS[d][0]}: {r[f'{d}_over_range']} ({r[f'{d}_by_n']})"
               for _, r in table.iterrows() for d in DECISIONS if r[f"{d}_over_range"].startswith("depends")]
    near = [f"{_where(r, labels)}, {DECISIONS[d][0]}: {r[f'{d}_by_n']}, range low {r['n_treated_low']}/{r['n_control_low']}"
            for _, r in table.iterrows() for d in DECISIONS
            if r[f"{d}_over_range"] == "yes throughout" and r[f"{d}_flip_n"] == r[f"{d}_flip_n"]
            and r[f"{d}_flip_n"] > min(r["n_treated_low"], r["n_control_low"]) - 5]
    out = ["## Decisions over the plausible number analysed", "",
           f"Sidedness (alpha = {table['alpha'].iloc[0]:g}): {sided}. 'Over the range': every (n_treated, "
           "n_control) with each group inside its plausible range; 'by n per arm': both groups at the same n, "
           "every n from 2 to the largest plausible one, the decision recomputed at each "
           "(published_sensitivity_by_n.csv has each n's statistics).", ""]
    out += [markdown(pd.DataFrame(rows)) if rows else "", f"The other {never} decisions are 'no' at every n.", ""]
    out += ["Decisions that change inside the plausible range: " + ("; ".join(fragile) if fragile else "none") + ".",
            ""]
    if near:
        out += ["Decisions that hold over the whole range but flip (by n per arm) within 5 patients of its low end: "
                + "; ".join(near) + ".", ""]
    return out


def published_sensitivity_markdown(table: pd.DataFrame, study: Study | None = None) -> str:
    """A report section: the table of ``published_sensitivity``, sentences computed from it, where
    each visit's n comes from (``study``'s ``analysed`` basis, if given) and every decision over the
    plausible n (the table's range columns)."""
    if not len(table):
        raise ValueError("published_sensitivity_markdown needs at least one row")
    words = study.words if study is not None else DEFAULT_WORDS
    labels = study.visit_labels if study is not None else TIME_LABELS
    t_, c_ = words["treated"], words["control"]
    show = pd.DataFrame({
        "outcome": table["label"],
        "time": [labels.get(t, t) for t in table["time"]],
        "MCID": [f"{m:g}" for m in table["mcid"]],
        f"{t_} mean (SD)": [f"{m:g} ({s:g})" for m, s in zip(table["mean_treated"], table["sd_treated"])],
        f"{c_} mean (SD)": [f"{m:g} ({s:g})" for m, s in zip(table["mean_control"], table["sd_control"])],
        "n used": [f"{a}/{b}" for a, b in zip(table["n_treated"], table["n_control"])],
        "published p": [str(p) for p in table["p_published"]],
        "difference (95% CI)": [f"{_num(d)} ({_num(lo)} to {_num(hi)})"
                                for d, lo, hi in zip(table["diff"], table["ci_low"], table["ci_high"])],
        "d": [f"{d:.2f}" for d in table["d"]],
        "E-value (CI)": [f"{e:.2f} ({c:.2f})" for e, c in zip(table["evalue_estimate"], table["evalue_ci"])],
        "E-value to 1 MCID (CI)": [f"{e:.2f} ({c:.2f})" for e, c in zip(table["evalue_mcid"], table["evalue_mcid_ci"])],
        "TOST p (90% CI)": [f"{p:.3f} ({_num(lo)} to {_num(hi)})"
                            for p, lo, hi in zip(table["tost_p"], table["ci90_low"], table["ci90_high"])],
        "equivalent": [_yes(e) for e in table["equivalent"]],
        "reading": table["reading"],
    })
    total = len(table)
    eq = table[table["equivalent"].astype(bool)]
    inconclusive = int((table["reading"] == READINGS["inconclusive"]).sum())
    listed = f" ({'; '.join(_where(r, labels) for _, r in eq.iterrows())})" if len(eq) else ""
    s1 = (f"{len(eq)} of {total} comparisons are shown equivalent within one MCID{listed} at the n used, and "
          f"{inconclusive} of {total} show no significant difference without being shown equivalent "
          "(inconclusive: for those the non-significant test is not evidence of no difference).")
    top = table.loc[table["evalue_mcid"].idxmax()]
    low = table.loc[table["evalue_mcid"].idxmin()]
    s2 = (f"The largest E-value to move an estimate to a true benefit of one MCID is "
          f"{top['evalue_mcid']:.2f} ({_where(top, labels)}: difference {_num(top['diff'])} vs MCID {top['mcid']:g}), "
          f"the smallest {low['evalue_mcid']:.2f} ({_where(low, labels)}): unmeasured confounding associated with both "
          f"{t_} and the change by risk ratios of {top['evalue_mcid']:.2f} could move every one of the "
          f"{total} point estimates to a true benefit of one MCID. These E-values of the estimates do not depend "
          "on n; those of the CIs do (below).")
    s3 = ("Rosenbaum bounds need the matched pair differences, which the paper does not publish: with "
          "individual data, `python -m sim.sensitivity DIR/matched.csv --outcome COL --gamma 1,1.5,2,3 "
          "--mcid X` (add `--lower-is-better` for a raw VAS or face-scale column) computes them.")
    note = (f"Differences are {t_} minus {c_} in the *improvement* of each score "
            f"(Table 5 prints VAS and face-scale changes as pre - post), so > 0 favours {t_}; Welch "
            "SE and CI from the published means and SDs with the number analysed at each visit (n used: "
            f"{t_}/{c_}, from the study file, below); d = difference / sqrt((SD_t² + "
            "SD_c²)/2); E-values as VanderWeele & Ding (RR ≈ exp(0.91 d)), of the estimate and of the 95% CI "
            "limit nearer the null (1 if the CI includes it); TOST (Welch) against ±1 MCID, equivalent when "
            "the 90% CI lies inside.")
    parts = ["# Published Table 5: precision, equivalence and E-values (summary data only)", "",
             markdown(show), note, "", s1, "", s2, "", s3, "", *_sizes_section(table, study, words, labels)]
    if all(f"{d}_over_range" in table for d in DECISIONS):
        parts += _decisions_section(table, labels)
    return "\n".join(parts)

"""The published result's decisions against the number analysed at each visit (Table 5 has none).

Why: Table 5 gives the means and SDs of the change among the matched but not how many of the
51 + 51 had a change at each visit, and 18 and 21 of them died (Table 4). Every decision a reader
takes from a row (DECISIONS: TOST equivalence within one MCID, the CI excluding 0, the CI
excluding a benefit of one MCID; the last two are the E-values of the CI exceeding 1) depends on
that n. So each is recomputed at every n per arm over the plausible range the study file gives
(`analysed`), at every (n_treated, n_control) of that range, and the n per arm at which it flips is
found by brute force over n = 2 .. the largest plausible n. `subset_bounds` gives the hard upper
bounds on n that Fig. 2 vs Table 5 imply.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Iterable, Mapping

import pandas as pd
from scipy import special

from sim.methods.sensitivity.equivalence import tost_from_summary
from sim.methods.sensitivity.evalue import evalue_diff_means
from sim.cohort.study import GROUPS, Study

__all__ = ["DECISIONS", "comparison", "decisions_by_n", "decision_ranges", "flip_points", "paper_bounds",
           "published_decimals", "subset_bound", "subset_bounds"]

#: the decisions a reader takes from a row: name -> (what it says, its sidedness at alpha = 0.05)
DECISIONS = {
    "equivalent": ("shown equivalent within ±1 MCID (TOST)",
                   "two one-sided Welch t-tests at alpha each: the (1 - 2 alpha) CI inside ±MCID"),
    "ci_excludes_zero": ("CI excludes no difference (E-value of the CI > 1)",
                         "two-sided Welch (1 - alpha) CI against 0"),
    "ci_excludes_mcid": ("CI excludes a true benefit of one MCID (E-value of the CI to one MCID > 1)",
                         "two-sided Welch (1 - alpha) CI against +1 MCID (one-sided alpha/2)"),
}
STATISTICS = ["tost_p", "ci90_low", "ci90_high", "ci_low", "ci_high", "evalue_ci", "evalue_mcid_ci"]


def comparison(m1: float, s1: float, n1: int, m0: float, s0: float, n0: int, mcid: float,
               alpha: float = 0.05) -> dict[str, Any]:
    """Every statistic and decision of one comparison from its summaries (the one code path of the
    main table and of the sweep over n): Welch difference, (1 - alpha) CI and p, d, E-values to 0
    and to one MCID, TOST against ±MCID, and the DECISIONS."""
    tost = tost_from_summary(m1, s1, n1, m0, s0, n0, mcid, alpha)
    diff, se, df = tost.estimate, tost.se, tost.df
    q = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    ci = (diff - q * se, diff + q * se)
    sd = math.sqrt((s1 * s1 + s0 * s0) / 2.0)
    null = evalue_diff_means(diff, sd, se, ci=ci)
    shift = evalue_diff_means(diff, sd, se, ci=ci, true=mcid)
    return {
        "n_treated": int(n1), "n_control": int(n0), "diff": diff, "se": se, "df": df,
        "ci_low": ci[0], "ci_high": ci[1], "p_welch": float(2.0 * special.stdtr(df, -abs(diff / se))),
        "sd_pooled": sd, "d": null["d"],
        "evalue_estimate": null["evalue_estimate"], "evalue_ci": null["evalue_ci"],
        "evalue_mcid": shift["evalue_estimate"], "evalue_mcid_ci": shift["evalue_ci"],
        "tost_p": tost.p_value, "ci90_low": tost.ci_low, "ci90_high": tost.ci_high,
        "equivalent": bool(tost.equivalent), "ci_excludes_zero": not (ci[0] <= 0.0 <= ci[1]),
        "ci_excludes_mcid": not (ci[0] <= mcid <= ci[1]),
    }


def _at(row: Mapping, n1: int, n0: int, alpha: float) -> dict[str, Any]:
    return comparison(row["mean_treated"], row["sd_treated"], n1, row["mean_control"], row["sd_control"], n0,
                      row["mcid"], alpha)


def flip_points(row: Mapping, decision: str, n_max: int, alpha: float = 0.05,
                sweep: list[Mapping] | None = None) -> list[int]:
    """Every n per arm (n_treated = n_control = n, 2 < n <= n_max) at which `decision` differs
    from its value at n - 1: brute force, no monotonicity assumed. `sweep`: the comparisons at
    n = 2 .. n_max, if already computed."""
    sweep = sweep if sweep is not None else [_at(row, n, n, alpha) for n in range(2, n_max + 1)]
    held = [c[decision] for c in sweep]
    return [n for n, a, b in zip(range(3, n_max + 1), held[:-1], held[1:]) if a != b]


def _flip_text(holds_at_max: bool, flips: list[int], n_max: int) -> str:
    yes, no = ("yes", "no") if holds_at_max else ("no", "yes")
    if not flips:
        return f"{yes} at every n per arm 2-{n_max}"
    last = flips[-1]
    text = f"{yes} at n >= {last} per arm, {no} at {last - 1}"
    return text + (f" (also changes at n = {', '.join(map(str, flips[:-1]))})" if len(flips) > 1 else "")


def decision_ranges(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per row of ``published_sensitivity`` and decision: the decision at the study's n, at the low
    and high ends of the plausible range, over every (n_treated, n_control) of that range (share
    that holds) and the n per arm at which it flips (``flip_n``: the smallest n from which on it
    is as at the largest plausible n, NaN if it never changes over 2 .. that n)."""
    rows = []
    for _, r in table.iterrows():
        lo = {g: int(r[f"n_{g}_low"]) for g in GROUPS}
        hi = {g: int(r[f"n_{g}_high"]) for g in GROUPS}
        n_max = max(hi.values())
        box = [_at(r, a, b, alpha) for a in range(lo["treated"], hi["treated"] + 1)
               for b in range(lo["control"], hi["control"] + 1)]
        at_lo, at_hi = _at(r, lo["treated"], lo["control"], alpha), _at(r, hi["treated"], hi["control"], alpha)
        sweep = [_at(r, n, n, alpha) for n in range(2, n_max + 1)]
        for d, (what, sided) in DECISIONS.items():
            flips = flip_points(r, d, n_max, alpha, sweep)
            top = sweep[-1][d]
            k = sum(c[d] for c in box)
            rows.append({
                "outcome": r["outcome"], "label": r["label"], "time": r["time"], "decision": d, "meaning": what,
                "sidedness": sided, "alpha": alpha, "n_treated": int(r["n_treated"]), "n_control": int(r["n_control"]),
                "holds": bool(r[d]), "n_treated_low": lo["treated"], "n_control_low": lo["control"],
                "holds_at_low": bool(at_lo[d]), "n_treated_high": hi["treated"], "n_control_high": hi["control"],
                "holds_at_high": bool(at_hi[d]), "range_pairs": len(box), "range_holds": k,
                "over_range": ("yes throughout" if k == len(box) else "no throughout" if k == 0
                               else f"depends on n: yes at {k} of {len(box)} (n_treated, n_control)"),
                "flip_n": float(flips[-1]) if flips else float("nan"), "by_n": _flip_text(bool(top), flips, n_max),
            })
    return pd.DataFrame(rows)


def decisions_by_n(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The decision at each n per arm (n_treated = n_control = n) from the smallest plausible n of
    either group to the largest, plus the study's own (n_treated, n_control) and the two ends of
    the plausible range: one row per comparison, n and decision, with its sidedness, whether that
    n lies in both groups' plausible ranges, and the statistics it rests on."""
    rows = []
    for _, r in table.iterrows():
        lo = {g: int(r[f"n_{g}_low"]) for g in GROUPS}
        hi = {g: int(r[f"n_{g}_high"]) for g in GROUPS}
        points = [("per arm", n, n) for n in range(min(lo.values()), max(hi.values()) + 1)]
        points += [("study n", int(r["n_treated"]), int(r["n_control"])),
                   ("range low", lo["treated"], lo["control"]), ("range high", hi["treated"], hi["control"])]
        for path, a, b in points:
            c = _at(r, a, b, alpha)
            inside = lo["treated"] <= a <= hi["treated"] and lo["control"] <= b <= hi["control"]
            for d, (_, sided) in DECISIONS.items():
                rows.append({"outcome": r["outcome"], "label": r["label"], "time": r["time"], "decision": d,
                             "sidedness": sided, "alpha": alpha, "path": path, "n_treated": a, "n_control": b,
                             "in_range": inside, "holds": bool(c[d]), **{k: c[k] for k in STATISTICS}})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ hard bounds from the paper
def published_decimals(values: Iterable[float]) -> int:
    """The published precision of a set of numbers: the most decimals any of them shows."""
    return max((max(0, -Decimal(repr(float(v))).normalize().as_tuple().exponent) for v in values), default=0)


def subset_bound(n: int, sd: float, d: float) -> int:
    """The largest k such that k of n values (sample SD `sd`) can have a mean `d` away from the
    mean of all n: between-subset sum of squares k n d² / (n - k) <= (n - 1) sd²."""
    if d <= 0:
        return int(n)
    return int(math.floor(n * (n - 1) * sd * sd / (n * d * d + (n - 1) * sd * sd) + 1e-12))


def subset_bounds(study: Study, n: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Per outcome, follow-up visit and matched group: the baseline of the patients with a change
    (Fig. 2 at the visit minus the improvement-signed Table 5 change) against everyone's (Fig. 2
    'pre', SD s), the gap d shrunk by the rounding of its three published numbers, and the most
    patients that can share that baseline (`subset_bound`). Assumes Fig. 2's visit mean and Table
    5's change are over the same patients, and Fig. 2's baseline over all n."""
    if n is None:
        matched = study.raw.get("matched")
        if not isinstance(matched, Mapping) or not isinstance(matched.get("n"), Mapping):
            raise ValueError(f"study {study.name!r} has no matched.n (the matched group sizes)")
        n = matched["n"]
    rows = []
    for name, out in study.outcomes.items():
        fig, tab = out["fig2"], out["table5"]
        half = 0.5 * 10.0 ** -published_decimals(v for blk in (fig, tab) for g in GROUPS
                                                 for pair in blk[g].values() for v in pair[:1])
        direction = 1.0 if out["higher_is_better"] else -1.0
        for t in study.follow_up:
            for g in GROUPS:
                pre, sd = (float(x) for x in fig[g][study.baseline])
                seen = float(fig[g][t][0]) - direction * float(tab[g][t][0])
                gap = seen - pre
                d_min = max(0.0, abs(gap) - 3 * half)
                rows.append({"outcome": name, "time": t, "group": g, "n": int(n[g]), "baseline_all": pre,
                             "sd_all": sd, "baseline_seen": seen, "gap": gap, "rounding": 3 * half,
                             "gap_min": d_min, "bound": subset_bound(int(n[g]), sd, d_min)})
    return pd.DataFrame(rows)


def paper_bounds(study: Study) -> dict[str, dict[str, int]]:
    """{visit: {group: the smallest subset_bound over outcomes}}: the most patients per group that
    can have had a change at the visit, given Fig. 2 and Table 5."""
    b = subset_bounds(study)
    return {t: {g: int(b[(b["time"] == t) & (b["group"] == g)]["bound"].min()) for g in GROUPS}
            for t in study.follow_up}

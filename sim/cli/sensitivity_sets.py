"""`python -m sim.sensitivity` for matched sets that are not 1:1 pairs: 1:k matching and full
matching (each set one treated unit with >= 1 controls, or one control with >= 1 treated units),
as sim.match records them in matched.json (``structure: matched_sets``).

Why another bound: the signed-rank bound needs pairs. For sets, Rosenbaum's m-statistic bound
(sim.methods.sensitivity.matched_sets: Huber's psi, trim 3, scale = the median absolute within-set
difference, as sensitivitymv::senm / sensitivityfull::senfm), with the separable normal
approximation (``--method exact``: the exact tail under the same worst case, small studies only).
Same sidedness rules as the pairs (sim.cli.sensitivity_tables): two-sided = 2 x the smaller
one-sided bound; Γ* = the largest Γ still significant; the MCID test is the bound for τ < MCID.
Subclasses have several of each arm per set, so no bound applies: refused by the caller.
"""

from __future__ import annotations

import math

import numpy as np

from sim.cli.common import InputError, write_sensitivity_files
from sim.cli.sensitivity_tables import ALTERNATIVES, SIDES, mcid_level
from sim.methods.sensitivity.matched_sets import senm_bounds, senm_gamma_star

__all__ = ["TEST", "BOUND", "set_data", "set_bound", "set_table", "set_gamma_star", "set_gamma_mcid"]

TEST = "m-statistic (Huber psi, trim 3; senm)"
BOUND = "matched sets: m-statistic bound (Rosenbaum 2007; sensitivitymv::senm)"


def set_data(df, outcome, pair, treatment, lower_is_better=False):
    """(y, treated, set id) of the rows in a set (y negated with ``lower_is_better``), after the
    checks: numeric outcome, 0/1 treatment, integer set ids, each set one treated or one control."""
    import pandas as pd

    m = df[df[pair].notna()]
    if m.empty:
        raise InputError(f"pair column {pair!r} is empty: no matched rows")
    t, y, s = m[treatment], m[outcome], m[pair]
    if not pd.api.types.is_numeric_dtype(t) or not t.isin([0, 1]).all():
        raise InputError(f"treatment column {treatment!r} must be 0/1 in matched rows")
    if not pd.api.types.is_numeric_dtype(y) or np.isinf(y.to_numpy(dtype=float)).any():
        raise InputError(f"outcome column {outcome!r} must hold finite numbers (empty = missing)")
    if not pd.api.types.is_numeric_dtype(s) or not (s == s.round()).all():
        raise InputError(f"set column {pair!r} must hold whole numbers (empty = not in a set)")
    g = m.groupby(pair)[treatment].agg(["size", "sum"])
    bad = g[(g["sum"] < 1) | (g["sum"] == g["size"]) | ((g["sum"] > 1) & (g["size"] - g["sum"] > 1))]
    if len(bad):
        raise InputError(f"set(s) {', '.join(str(v) for v in bad.index[:5])} in column {pair!r} do not have one "
                         "treated unit with >= 1 controls or one control with >= 1 treated units")
    y = y.to_numpy(dtype=float)
    return (-y if lower_is_better else y), t.to_numpy().astype(int), s.to_numpy().astype(np.int64)


def _method(method: str) -> str:
    return "exact" if method == "exact" else "normal"  # auto: senm's normal approximation


def set_bound(y, t, s, gammas, *, alternative="two-sided", method="auto", tau=0.0):
    """The upper bound on the p-value at the sidedness ``alternative`` at every Γ of ``gammas``."""
    if alternative not in ALTERNATIVES:
        raise InputError(f"--alternative must be one of {', '.join(ALTERNATIVES)}; got {alternative!r}")
    b = {side: senm_bounds(y, t, s, gammas, alternative=side, method=_method(method), tau=tau) for side in SIDES}
    if alternative == "two-sided":
        return np.minimum(1.0, 2 * np.minimum(b["greater"], b["less"]))
    return b[alternative]


def set_table(y, t, s, gammas, *, alternative="two-sided", alpha=0.05, mcid=None, method="auto"):
    """One row per Γ: gamma, alternative, alpha, test, method, p_upper and, with ``mcid``,
    p_upper_mcid (the one-sided bound for τ < MCID), mcid_level, mcid_excluded."""
    import pandas as pd

    out = pd.DataFrame({"gamma": list(gammas), "alternative": alternative, "alpha": alpha, "test": TEST,
                        "method": BOUND, "p_upper": set_bound(y, t, s, gammas, alternative=alternative,
                                                              method=method)})
    if mcid is not None:
        level = mcid_level(alternative, alpha)
        p = senm_bounds(y, t, s, gammas, alternative="less", tau=mcid, method=_method(method))
        out["p_upper_mcid"], out["mcid_level"], out["mcid_excluded"] = p, level, p <= level
    return out


def set_gamma_star(y, t, s, alternative="two-sided", alpha=0.05) -> tuple[float, str]:
    """(Γ*, its direction) as sided_gamma_star for pairs: two-sided, the direction significant at
    Γ = 1 at alpha/2 each."""
    if alternative != "two-sided":
        return senm_gamma_star(y, t, s, alpha, alternative=alternative), alternative
    g = {side: senm_gamma_star(y, t, s, alpha / 2, alternative=side) for side in SIDES}
    side = max(g, key=g.get)
    return g[side], side


def set_gamma_mcid(y, t, s, mcid: float, level: float) -> float:
    """The largest Γ at which a benefit of one MCID stays excluded (the bound for τ < MCID <= level)."""
    return senm_gamma_star(y, t, s, level, alternative="less", tau=mcid)


def counts(y, t, s) -> dict:
    """Sets and units behind the numbers: all sets, those with a complete treated-control contrast,
    the units they hold."""
    codes, inv = np.unique(s, return_inverse=True)
    ok = ~np.isnan(y)
    n1 = np.bincount(inv, weights=ok & (t == 1), minlength=codes.size)
    n0 = np.bincount(inv, weights=ok & (t == 0), minlength=codes.size)
    used = ((n1 > 0) & (n0 > 0))[inv] & ok
    return {"sets_matched": int(codes.size), "sets_complete": int(((n1 > 0) & (n0 > 0)).sum()),
            "units_used": int(used.sum()), "treated_used": int((used & (t == 1)).sum()),
            "controls_used": int((used & (t == 0)).sum()), "largest_set": int(np.bincount(inv).max())}


def gamma_label(g: float) -> str:
    return "inf" if math.isinf(g) else f"{g:.3f}"


def run_sets(args, df, path, cols, files) -> int:
    """The command for matched sets: checks, table, Γ*, files (as for pairs) and the printed lines."""
    from pathlib import Path

    import pandas as pd

    from sim.methods.sensitivity.amplification import amplification_table

    treatment, pair, source = cols
    if args.binary or _is_binary(df.loc[df[pair].notna(), args.outcome]):
        raise InputError(f"outcome {args.outcome!r} is 0/1: the matched-set bound here is for a continuous outcome "
                         "(m-statistics); match 1:1 for McNemar's bound")
    y, t, s = set_data(df, args.outcome, pair, treatment, args.lower_is_better)
    n = counts(y, t, s)
    if n["sets_complete"] == 0:
        raise InputError(f"no complete sets: outcome {args.outcome!r} is missing in every set's treated or controls")
    alt, alpha = args.alternative, args.alpha
    try:
        table = set_table(y, t, s, args.gamma, alternative=alt, alpha=alpha, mcid=args.mcid, method=args.method)
        g_star, side = set_gamma_star(y, t, s, alt, alpha)
        g_m = None if args.mcid is None else set_gamma_mcid(y, t, s, args.mcid, mcid_level(alt, alpha))
    except ValueError as exc:
        raise InputError(f"matched-set bound: {exc}")
    direction = {"greater": "τ > 0, treatment better", "less": "τ < 0, treatment worse"}[side]
    if alt == "two-sided" and g_star <= 1:
        direction = "either direction"
    amp = amplification_table(g_star) if 1 < g_star < math.inf else pd.DataFrame(columns=["gamma", "lam", "delta"])
    finite = (lambda x: float(x) if x is not None and math.isfinite(x) else None)
    summary = {"input": str(path.resolve()), "outcome": args.outcome, "treatment": treatment, "pair": pair,
               "treatment_from": source["treatment"], "pair_from": source["pair"], "outcome_type": "continuous",
               "structure": "matched_sets", "test": TEST, "bound_method": BOUND,
               "differences": "control - treated (--lower-is-better)" if args.lower_is_better else "treated - control",
               **n, "alternative": alt, "alpha": alpha, "method": args.method,
               "bound": "exact" if args.method == "exact" else "normal (separable approximation)",
               "gammas": [float(g) for g in table["gamma"]], "gamma_star": finite(g_star),
               "gamma_star_direction": direction, "gamma_star_side": side if g_star > 1 or alt != "two-sided" else None,
               "gamma_star_one_sided_level": alpha / 2 if alt == "two-sided" else alpha,
               "significant_at_gamma_1": bool(g_star > 1), "amplification": amp[["lam", "delta"]].to_dict("records")}
    if args.mcid is not None:
        summary.update(mcid=args.mcid, mcid_level=mcid_level(alt, alpha), gamma_mcid=finite(g_m))
    summary["files"] = list(files)
    out_dir = path.parent if args.out is None else Path(args.out)
    write_sensitivity_files(out_dir, table, summary, amp, lambda png: _figure(png, args, (y, t, s), table, (g_star, direction), n))
    print(f"columns: treatment {treatment!r} (from {source['treatment']}), sets {pair!r} (from {source['pair']})")
    print(f"matched sets (not 1:1 pairs): {n['sets_complete']} complete of {n['sets_matched']} ({n['treated_used']} "
          f"treated, {n['controls_used']} controls; largest set {n['largest_set']} units)")
    print(f"test: {TEST}; bound: {BOUND}, {summary['bound']}")
    print(f"sidedness: {alt}, alpha {alpha:g}")
    line = f"sensitivity value Γ* ({alt}, alpha {alpha:g}; {direction}): {gamma_label(g_star)}"
    print(line if g_star > 1 else line + " (not significant at Γ = 1)")
    if args.mcid is not None:
        print(f"largest Γ excluding a benefit of one MCID ({args.mcid:g}) at one-sided {mcid_level(alt, alpha):g}: "
              f"{gamma_label(g_m)}" + ("" if g_m > 1 else " (not excluded at Γ = 1)"))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 200):
        print(table.drop(columns=["test", "method"]).to_string(index=False))
    print("wrote " + ", ".join(str(out_dir / f) for f in files))
    return 0


def _is_binary(values) -> bool:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    return bool(a.size) and bool(np.isin(a, (0.0, 1.0)).all())


def _figure(out_png, args, yts, table, star, n) -> None:
    from sim.report.sensitivity_figure import curve_grid, sensitivity_figure

    g_star, direction = star
    grid = curve_grid(list(table["gamma"]), g_star)
    curve = set_bound(*yts, grid, alternative=args.alternative, method=args.method)
    sensitivity_figure(out_png, grid=grid, curve=curve, points=(table["gamma"], table["p_upper"]), alpha=args.alpha,
                       gamma_star=g_star, star_label=(f"Γ* = {g_star:.3f} ({direction})" if g_star > 1 else
                                                      "Γ* = 1: not significant at Γ = 1"),
                       curve_label=f"upper bound on p ({args.alternative})",
                       title=f"Sensitivity to hidden bias: {args.outcome} ({n['sets_complete']} matched sets)",
                       subtitle=f"{TEST}; α = {args.alpha:g} {args.alternative}")

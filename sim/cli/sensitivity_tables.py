"""The numbers of `python -m sim.sensitivity`, at one sidedness for all of them: the pair
differences of a matched file, the per-Γ table and Γ* for a continuous outcome (Wilcoxon signed
rank, either zero method) and for a 0/1 outcome (McNemar on the discordant pairs), and the bound on
a fine Γ grid for the figure. ``sim.cli.sensitivity`` re-exports every public name.

Sidedness (``alternative``), shared by the bound, Γ*, the interval and the MCID verdict:
  two-sided  p_upper = 2 x the smaller one-sided bound (capped at 1); Γ* the largest Γ at which it
             stays <= alpha, i.e. the one-sided Γ* at alpha/2 of the direction significant at Γ = 1.
  greater    H1 τ > 0 (treatment better), one-sided at alpha.   less  H1 τ < 0, one-sided at alpha.
"""

from __future__ import annotations

import math

import numpy as np

from sim.cli.common import InputError
from sim.methods.sensitivity.mcnemar import discordant_counts, mcnemar_bound, mcnemar_sensitivity_value
from sim.methods.sensitivity.rosenbaum import (EXACT_MAX_N, hl_confidence_interval, hodges_lehmann,
                                               mcid_exclusion, sensitivity_value, signed_rank_bounds)

ALTERNATIVES = ("two-sided", "greater", "less")
SIDES = ("greater", "less")
TESTS = {"continuous": "Wilcoxon signed rank", "binary": "McNemar (discordant pairs)"}
#: the tables' method column: these are pair bounds (matched sets: sim.cli.sensitivity_sets)
PAIR_BOUND = {"continuous": "1:1 pairs: signed-rank bound", "binary": "1:1 pairs: McNemar bound"}


def _label(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def pair_differences(df, outcome, pair, treatment, lower_is_better=False):
    """(differences treated - control of the complete pairs, number of matched pairs)."""
    import pandas as pd

    missing = [c for c in dict.fromkeys((outcome, pair, treatment)) if c not in df.columns]
    if missing:
        raise InputError(f"column(s) not found in input: {', '.join(missing)}")
    if len({outcome, pair, treatment}) < 3:
        raise InputError("--outcome, --pair and --treatment must be three different columns")
    m = df[df[pair].notna()]
    if m.empty:
        raise InputError(f"pair column {pair!r} is empty: no matched rows")
    t, y = m[treatment], m[outcome]
    if not pd.api.types.is_numeric_dtype(t) or not t.isin([0, 1]).all():
        bad = t[~t.isin([0, 1])].iloc[0] if not t.isin([0, 1]).all() else t.iloc[0]
        raise InputError(f"treatment column {treatment!r} must be 0/1 in matched rows; got {bad!r}")
    if not pd.api.types.is_numeric_dtype(y):
        bad = pd.to_numeric(y, errors="coerce").isna() & y.notna()
        raise InputError(f"outcome column {outcome!r} is not numeric (e.g. {y[bad].iloc[0]!r})")
    if np.isinf(y.to_numpy(dtype=float)).any():
        raise InputError(f"outcome column {outcome!r} has infinite values")
    g = m.groupby(pair, sort=True)[treatment].agg(["size", "sum"])
    bad = g[(g["size"] != 2) | (g["sum"] != 1)]
    if len(bad):
        ids = ", ".join(_label(v) for v in bad.index[:5]) + (", ..." if len(bad) > 5 else "")
        raise InputError(f"pair(s) {ids} in column {pair!r} do not have exactly 1 treated and "
                         "1 control row (1:1 matching needed)")
    wide = m.assign(**{outcome: y.astype(float)}).pivot(index=pair, columns=treatment, values=outcome)
    d = (wide[1] - wide[0]).to_numpy(dtype=float)
    if lower_is_better:
        d = -d
    n_pairs = d.size
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise InputError(f"no complete pairs: outcome {outcome!r} is missing in every pair")
    return d, n_pairs


def is_binary(values) -> bool:
    """True when every (non-missing) value is 0 or 1, and there is at least one."""
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    return bool(a.size) and bool(np.isin(a, (0.0, 1.0)).all())


def _ci_label(alternative: str, alpha: float) -> str:
    level = f"{100 * (1 - alpha):g} %"
    return {"two-sided": f"two-sided {level}", "greater": f"one-sided {level} (lower limit)",
            "less": f"one-sided {level} (upper limit)"}[alternative]


def mcid_level(alternative: str, alpha: float) -> float:
    """The one-sided level at which a benefit of one MCID counts as excluded: alpha/2 for a
    two-sided analysis (the two-sided interval's upper end), alpha for 'less'."""
    if alternative == "greater":
        raise InputError("--mcid needs --alternative two-sided or less: excluding a benefit of one MCID needs an "
                         "upper confidence limit, which --alternative greater does not give")
    return alpha / 2 if alternative == "two-sided" else alpha


def _check_alternative(alternative):
    if alternative not in ALTERNATIVES:
        raise InputError(f"--alternative must be one of {', '.join(ALTERNATIVES)}; got {alternative!r}")


def _sided(bounds: dict, alternative: str) -> np.ndarray:
    """The bound at the sidedness: twice the smaller one-sided bound (capped at 1) or one side."""
    if alternative == "two-sided":
        return np.minimum(1.0, 2 * np.minimum(bounds["greater"], bounds["less"]))
    return np.asarray(bounds[alternative])


def side_bounds(d, gammas, *, binary=False, method="auto", zero_method="wilcox") -> dict:
    """{"greater": bounds for τ > 0, "less": for τ < 0} at every Γ of `gammas` (arrays)."""
    if binary:
        n_plus, n_minus = discordant_counts(d)
        return {s: np.atleast_1d(mcnemar_bound(n_plus, n_minus, gammas, alternative=s)) for s in SIDES}
    return {s: signed_rank_bounds(d, gammas, alternative=s, method=method, zero_method=zero_method) for s in SIDES}


def sided_bound(d, gammas, *, alternative="two-sided", binary=False, method="auto", zero_method="wilcox"):
    """The upper bound on the p-value at the sidedness `alternative`, at every Γ of `gammas` (the
    table's column p_upper, and the figure's curve on a fine grid)."""
    _check_alternative(alternative)
    return _sided(side_bounds(d, gammas, binary=binary, method=method, zero_method=zero_method), alternative)


def sided_table(d, gammas, *, alternative="two-sided", alpha=0.05, mcid=None, method="auto",
                zero_method="wilcox"):
    """One row per Γ, every number at the sidedness `alternative` (see the module docstring):
    gamma, alternative, alpha, test, zero_method, p_upper, hl_low, hl_high, ci, ci_low, ci_high
    and, with `mcid`, p_upper_mcid (the bound for τ < MCID), mcid_level, mcid_excluded."""
    import pandas as pd

    _check_alternative(alternative)
    level = mcid_level(alternative, alpha) if mcid is not None else None
    p = sided_bound(d, gammas, alternative=alternative, method=method, zero_method=zero_method)
    rows = []
    for g, p_g in zip(gammas, p):
        lo, hi = hl_confidence_interval(d, g, alpha if alternative == "two-sided" else 2 * alpha, method=method)
        lo, hi = (lo, math.inf) if alternative == "greater" else (-math.inf, hi) if alternative == "less" else (lo, hi)
        hl = hodges_lehmann(d, g)
        rows.append({"gamma": g, "alternative": alternative, "alpha": alpha, "test": TESTS["continuous"],
                     "method": PAIR_BOUND["continuous"], "zero_method": zero_method, "p_upper": float(p_g),
                     "hl_low": hl[0], "hl_high": hl[1],
                     "ci": _ci_label(alternative, alpha), "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows)
    if mcid is not None:
        m = mcid_exclusion(d, mcid, list(gammas), level, method=method, zero_method=zero_method)
        out["p_upper_mcid"] = m["p_upper_mcid"].to_numpy()
        out["mcid_level"] = level
        out["mcid_excluded"] = m["mcid_excluded"].to_numpy()
    return out


def binary_table(d, gammas, *, alternative="two-sided", alpha=0.05):
    """The table for a 0/1 outcome (d in -1, 0, 1): gamma, alternative, alpha, test, p_upper (the
    exact binomial bound on the discordant pairs), n_discordant, n_treated_only (treated 1, control
    0; after --lower-is-better, the pairs in the treatment's favour), n_control_only."""
    import pandas as pd

    _check_alternative(alternative)
    n_plus, n_minus = discordant_counts(d)
    p = sided_bound(d, gammas, alternative=alternative, binary=True)
    return pd.DataFrame({"gamma": list(gammas), "alternative": alternative, "alpha": alpha,
                         "test": TESTS["binary"], "method": PAIR_BOUND["binary"], "p_upper": p,
                         "n_discordant": n_plus + n_minus,
                         "n_treated_only": n_plus, "n_control_only": n_minus})


def sided_gamma_star(d, alternative="two-sided", alpha=0.05, method="auto", *, zero_method="wilcox",
                     binary=False) -> tuple[float, str]:
    """(Γ*, the direction it is for): the largest Γ at which the result stays significant at the
    sidedness `alternative` (two-sided: each direction at alpha/2, the one significant at Γ = 1)."""
    _check_alternative(alternative)

    def one(level, side):
        if binary:
            return mcnemar_sensitivity_value(*discordant_counts(d), level, alternative=side)
        return sensitivity_value(d, level, alternative=side, method=method, zero_method=zero_method)

    if alternative != "two-sided":
        return one(alpha, alternative), alternative
    g = {side: one(alpha / 2, side) for side in SIDES}
    side = max(g, key=g.get)
    return g[side], side


def bound_used(d, method: str, binary: bool) -> str:
    """How the bound was computed: exact binomial, or the signed-rank bound's exact recursion or
    normal approximation (``method="auto"``: exact for at most EXACT_MAX_N non-zero differences)."""
    if binary:
        return "exact (binomial)"
    if method != "auto":
        return method
    scale = float(np.max(np.abs(d))) if np.size(d) else 0.0
    nonzero = np.count_nonzero(np.round(np.asarray(d) / scale, 12)) if scale else 0  # as rosenbaum counts them
    return "exact" if nonzero <= EXACT_MAX_N else "normal"

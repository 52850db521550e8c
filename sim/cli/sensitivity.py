"""Rosenbaum sensitivity analysis of a matched CSV file (1:1 pairs).

    python -m sim.sensitivity MATCHED.csv --outcome COL [--pair pair] [--treatment treated]
        [--gamma 1,1.25,1.5,2,3] [--mcid X] [--alpha 0.05] [--alternative two-sided|greater|less]
        [--lower-is-better] [--method auto|exact|normal] [--out DIR]

Why: the same question ``sim`` asks of its synthetic cohorts — could hidden bias of strength Γ
hide or create the result? — asked of a user's own matched data, e.g. the ``matched.csv`` written
by ``python -m sim.match`` (one row per unit, pair id empty for unmatched units). Differences are
treated - control with "higher = better" (``--lower-is-better`` flips them); pairs with a missing
outcome are dropped. Prints the table and writes DIR/sensitivity.csv and DIR/sensitivity.png.
Bad input exits with one ``error: ...`` line and code 2.

Sidedness (``--alternative``), one choice for every number, so that the sensitivity value, the
MCID verdict and the interval agree (each is named in the printed header and in the file's
``alternative``, ``alpha`` and ``ci`` columns):
  two-sided (default)  p_upper = 2 x the smaller one-sided bound (capped at 1); Γ* the largest Γ
                       at which it stays <= alpha; the two-sided 1 - alpha interval; a benefit of
                       one MCID excluded when the bound for τ < MCID is <= alpha/2 (the interval's
                       upper end below the MCID).
  greater              H1 τ > 0 (treatment better) at one-sided alpha; the one-sided interval
                       [low, inf). No upper limit, so no MCID verdict (--mcid is refused).
  less                 H1 τ < 0 at one-sided alpha; the one-sided interval (-inf, high]; a benefit
                       of one MCID excluded when the bound for τ < MCID is <= alpha.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from sim.cli.common import InputError, Parser as _Parser, one_line_errors
from sim.methods.sensitivity.rosenbaum import (METHODS, amplify, hl_confidence_interval, hodges_lehmann, largest_gamma_excluding,
                                   mcid_exclusion, sensitivity_value, signed_rank_bound)

DEFAULT_GAMMAS = "1,1.25,1.5,2,3"
ALTERNATIVES = ("two-sided", "greater", "less")


def _gamma_list(text: str):
    parts = [s.strip() for s in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError("--gamma must be a comma-separated list of numbers >= 1; got an empty list")
    out = []
    for s in parts:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--gamma values must be numbers >= 1; got {s!r}")
        if not (math.isfinite(v) and v >= 1):
            raise argparse.ArgumentTypeError(f"--gamma values must be finite numbers >= 1; got {s!r}")
        out.append(v)
    return sorted(set(out))


def _alpha(text: str):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--alpha must be a number in (0, 0.5); got {text!r}")
    if not 0 < v < 0.5:
        raise argparse.ArgumentTypeError(f"--alpha must be in (0, 0.5); got {text!r}")
    return v


def _mcid(text: str):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mcid must be a number > 0; got {text!r}")
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--mcid must be a finite number > 0; got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m sim.sensitivity",
                description="Rosenbaum sensitivity analysis (Wilcoxon signed rank) of 1:1 matched pairs.")
    p.add_argument("input", help="matched CSV, one row per unit (e.g. matched.csv of sim.match)")
    p.add_argument("--outcome", required=True, help="outcome column (higher = better)")
    p.add_argument("--pair", default="pair", help="pair id column (empty = unmatched; default 'pair')")
    p.add_argument("--treatment", default="treated", help="0/1 treatment column (default 'treated')")
    p.add_argument("--gamma", type=_gamma_list, default=_gamma_list(DEFAULT_GAMMAS),
                   help=f"comma-separated Γ values >= 1 (default {DEFAULT_GAMMAS})")
    p.add_argument("--mcid", type=_mcid, default=None, help="minimal clinically important difference")
    p.add_argument("--alpha", type=_alpha, default=0.05,
                   help="level of the tests and 1 - confidence of the interval, for --alternative (default 0.05)")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided",
                   help="sidedness of every test and of the interval: two-sided (default; alpha/2 per side), "
                        "greater (τ > 0, treatment better) or less (τ < 0), each one-sided at alpha")
    p.add_argument("--method", choices=METHODS, default="auto", help="p-value bound: exact, normal or auto")
    p.add_argument("--lower-is-better", action="store_true", help="the outcome improves downwards")
    p.add_argument("--out", default=".", help="output directory (default '.')")
    return p


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
    wide = m.pivot(index=pair, columns=treatment, values=outcome)
    d = (wide[1] - wide[0]).to_numpy(dtype=float)
    if lower_is_better:
        d = -d
    n_pairs = d.size
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise InputError(f"no complete pairs: outcome {outcome!r} is missing in every pair")
    return d, n_pairs


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


def sided_table(d, gammas, *, alternative="two-sided", alpha=0.05, mcid=None, method="auto"):
    """One row per Γ, every number at the sidedness `alternative` (see the module docstring):
    gamma, alternative, alpha, p_upper, hl_low, hl_high, ci, ci_low, ci_high and, with `mcid`,
    p_upper_mcid (the bound for τ < MCID), mcid_level, mcid_excluded."""
    import pandas as pd

    if alternative not in ALTERNATIVES:
        raise InputError(f"--alternative must be one of {', '.join(ALTERNATIVES)}; got {alternative!r}")
    level = mcid_level(alternative, alpha) if mcid is not None else None
    rows = []
    for g in gammas:
        bound = {side: signed_rank_bound(d, g, alternative=side, method=method) for side in ("greater", "less")}
        p = min(1.0, 2 * min(bound.values())) if alternative == "two-sided" else bound[alternative]
        lo, hi = hl_confidence_interval(d, g, alpha if alternative == "two-sided" else 2 * alpha, method=method)
        lo, hi = (lo, math.inf) if alternative == "greater" else (-math.inf, hi) if alternative == "less" else (lo, hi)
        hl = hodges_lehmann(d, g)
        rows.append({"gamma": g, "alternative": alternative, "alpha": alpha, "p_upper": p, "hl_low": hl[0],
                     "hl_high": hl[1], "ci": _ci_label(alternative, alpha), "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows)
    if mcid is not None:
        m = mcid_exclusion(d, mcid, list(gammas), level, method=method)
        out["p_upper_mcid"] = m["p_upper_mcid"].to_numpy()
        out["mcid_level"] = level
        out["mcid_excluded"] = m["mcid_excluded"].to_numpy()
    return out


def sided_gamma_star(d, alternative="two-sided", alpha=0.05, method="auto") -> tuple[float, str]:
    """(Γ*, the direction it is for): the largest Γ at which the result stays significant at the
    sidedness `alternative` (two-sided: each direction at alpha/2, the one significant at Γ = 1)."""
    if alternative != "two-sided":
        return sensitivity_value(d, alpha, alternative=alternative, method=method), alternative
    g = {side: sensitivity_value(d, alpha / 2, alternative=side, method=method) for side in ("greater", "less")}
    side = max(g, key=g.get)
    return g[side], side


def _plot(table, alpha, mcid, path: Path, alternative: str = "two-sided"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    what = {"two-sided": "τ ≠ 0 (two-sided)", "greater": "τ > 0 (treatment better)", "less": "τ < 0"}[alternative]
    ax.plot(table["gamma"], table["p_upper"], marker="o", label=what)
    ax.axhline(alpha, color="grey", ls="--", lw=0.8, label=f"alpha = {alpha:g}")
    if mcid is not None:
        ax.plot(table["gamma"], table["p_upper_mcid"], marker="s", label=f"τ < MCID = {mcid:g} (one-sided)")
        ax.axhline(float(table["mcid_level"].iloc[0]), color="grey", ls=":", lw=0.8,
                   label=f"MCID level = {float(table['mcid_level'].iloc[0]):g}")
    ax.set_xlabel("Γ (hidden bias)")
    ax.set_ylabel("upper bound on p")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(argv=None) -> int:
    import pandas as pd

    args = build_parser().parse_args(argv)
    if args.mcid is not None:
        mcid_level(args.alternative, args.alpha)  # refuse --mcid with greater before reading anything
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"input file not found: {args.input}")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # parser errors, empty file, encoding
        raise InputError(f"cannot read {args.input}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if df.empty:
        raise InputError(f"input file has no data rows: {args.input}")
    header = pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0].tolist()  # pandas renames repeats
    dup = [c for c in dict.fromkeys((args.outcome, args.pair, args.treatment)) if header.count(c) > 1]
    if dup:
        raise InputError(f"column(s) named more than once in the header: {', '.join(dup)}")
    d, n_pairs = pair_differences(df, args.outcome, args.pair, args.treatment, args.lower_is_better)
    alt, alpha = args.alternative, args.alpha
    table = sided_table(d, args.gamma, alternative=alt, alpha=alpha, mcid=args.mcid, method=args.method)
    g_star, side = sided_gamma_star(d, alt, alpha, args.method)

    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "sensitivity.csv", index=False)
        _plot(table, alpha, args.mcid, out_dir / "sensitivity.png", alt)
    except OSError as exc:
        raise InputError(f"cannot write to {args.out}: {exc.strerror or exc}")

    sign = "lower is better: control - treated" if args.lower_is_better else "treated - control"
    print(f"pairs: {d.size} complete of {n_pairs} matched ({n_pairs - d.size} with a missing outcome); "
          f"differences {sign}, positive = treatment better")
    per_side = f"each one-sided bound at {alpha / 2:g}" if alt == "two-sided" else f"one-sided at {alpha:g}"
    print(f"sidedness: {alt}, alpha {alpha:g} ({per_side}); interval: {_ci_label(alt, alpha)}")
    direction = {"greater": "τ > 0, treatment better", "less": "τ < 0, treatment worse"}[side]
    if alt == "two-sided" and g_star <= 1:
        direction = "either direction"
    line = f"sensitivity value Γ* ({alt}, alpha {alpha:g}; {direction}): {g_star:.3f}"
    if 1 < g_star < math.inf:
        line += f" (e.g. Λ = {2 * g_star:.2f}, Δ = {amplify(g_star, 2 * g_star):.2f})"
    print(line if g_star > 1 else line + " (not significant at Γ = 1)")
    if args.mcid is not None:
        level = mcid_level(alt, alpha)
        g_m = largest_gamma_excluding(d, args.mcid, level, method=args.method)
        print(f"largest Γ excluding a benefit of one MCID ({args.mcid:g}) at one-sided {level:g} ({alt}): {g_m:.3f}"
              + ("" if g_m > 1 else " (not excluded at Γ = 1)"))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 160):
        print(table.to_string(index=False))
    print(f"wrote {out_dir / 'sensitivity.csv'} and {out_dir / 'sensitivity.png'}")
    return 0


def main(argv=None) -> int:
    return one_line_errors(run, argv)


"""Rosenbaum sensitivity analysis of a matched CSV file (1:1 pairs).

    python -m sim.sensitivity MATCHED.csv --outcome COL [--treatment COL] [--pair COL]
        [--gamma 1,1.25,1.5,2,3] [--mcid X] [--alpha 0.05] [--alternative two-sided|greater|less]
        [--zero-method wilcox|pratt] [--binary] [--lower-is-better] [--method auto|exact|normal]
        [--out DIR]

Why: the same question ``sim`` asks of its synthetic cohorts — could hidden bias of strength Γ
hide or create the result? — asked of a user's own matched data, e.g. the ``matched.csv`` written
by ``python -m sim.match`` (one row per unit, pair id empty for unmatched units). The treatment and
pair columns come from the flags, else from the roles file sim.match writes beside it
(``matched.json``), else 'treated' and 'pair'. Differences are treated - control with "higher =
better" (``--lower-is-better`` flips them); pairs with a missing outcome are dropped.

A continuous outcome gets the Wilcoxon signed-rank bound (zero differences dropped before ranking,
or ranked and then dropped with ``--zero-method pratt``), Hodges-Lehmann estimates and intervals
at each Γ and, with ``--mcid``, whether a benefit of one MCID is excluded. A 0/1 outcome (detected,
or ``--binary``) gets McNemar's bound on the discordant pairs (exact binomial). Writes, in DIR
(default: beside MATCHED.csv): sensitivity.csv (one row per Γ), sensitivity.json (Γ* with its
sidedness and direction, the settings, the pair counts, the amplification), amplification.csv
((Λ, Δ) pairs equivalent to Γ*) and sensitivity.png (the bound against Γ on a fine grid, α and
Γ*). Bad input exits with one ``error: ...`` line and code 2.

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

from sim.cli.common import (InputError, Parser as _Parser, one_line_errors, read_sidecar, sidecar_path,
                            write_sensitivity_files)
from sim.cli.sensitivity_tables import (ALTERNATIVES, PAIR_BOUND, TESTS, _ci_label, binary_table, bound_used,
                                        is_binary, mcid_level, pair_differences, sided_bound, sided_gamma_star,
                                        sided_table)
from sim.methods.sensitivity.amplification import amplification_table
from sim.methods.sensitivity.rosenbaum import METHODS, ZERO_METHODS, largest_gamma_excluding, mcid_exclusion

__all__ = ["ALTERNATIVES", "DEFAULT_GAMMAS", "build_parser", "pair_differences", "mcid_level", "sided_table",
           "sided_gamma_star", "binary_table", "run", "main"]

DEFAULT_GAMMAS = "1,1.25,1.5,2,3"
FILES = ("sensitivity.csv", "sensitivity.json", "amplification.csv", "sensitivity.png")
ZERO_HELP = {"wilcox": "dropped before ranking", "pratt": "ranked, then dropped from the statistic"}


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
                description="Rosenbaum sensitivity analysis of 1:1 matched pairs: Wilcoxon signed rank, "
                            "or McNemar for a 0/1 outcome.")
    p.add_argument("input", help="matched CSV, one row per unit (e.g. matched.csv of sim.match)")
    p.add_argument("--outcome", required=True, help="outcome column (higher = better)")
    p.add_argument("--pair", default=None,
                   help="pair id column (empty = unmatched; default: from matched.json beside the input, else 'pair')")
    p.add_argument("--treatment", default=None,
                   help="0/1 treatment column (default: from matched.json beside the input, else 'treated')")
    p.add_argument("--gamma", type=_gamma_list, default=_gamma_list(DEFAULT_GAMMAS),
                   help=f"comma-separated Γ values >= 1 (default {DEFAULT_GAMMAS})")
    p.add_argument("--mcid", type=_mcid, default=None, help="minimal clinically important difference")
    p.add_argument("--alpha", type=_alpha, default=0.05,
                   help="level of the tests and 1 - confidence of the interval, for --alternative (default 0.05)")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="two-sided",
                   help="sidedness of every test and of the interval: two-sided (default; alpha/2 per side), "
                        "greater (τ > 0, treatment better) or less (τ < 0), each one-sided at alpha")
    p.add_argument("--zero-method", choices=ZERO_METHODS, default="wilcox",
                   help="zero pair differences in the signed-rank bound: wilcox (default; dropped before ranking, "
                        "as rbounds::psens) or pratt (ranked, then dropped: DOS2::senWilcox)")
    p.add_argument("--binary", action="store_true",
                   help="0/1 outcome: McNemar bound on the discordant pairs (used anyway when every value is 0/1)")
    p.add_argument("--method", choices=METHODS, default="auto",
                   help="signed-rank bound: exact, normal or auto (exact up to 50 non-zero differences)")
    p.add_argument("--lower-is-better", action="store_true", help="the outcome improves downwards")
    p.add_argument("--out", default=None, help="output directory (default: the folder of the input file)")
    return p


def _read(path: Path, shown: str):
    import pandas as pd

    if not path.is_file():
        raise InputError(f"input file not found: {shown}")
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # parser errors, empty file, encoding
        raise InputError(f"cannot read {shown}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if df.empty:
        raise InputError(f"input file has no data rows: {shown}")
    header = pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0].tolist()  # pandas renames repeats
    return df, header


def _roles(args, path: Path):
    """(treatment, pair, {role: where it came from}, whether a roles file was read, the structure of
    the groups): each column from its flag, else from matched.json, else the default ('treated',
    'pair'); the structure (pairs, matched_sets) from matched.json unless --pair names the column."""
    roles = read_sidecar(path) or {}
    structure = "pairs"
    if roles and args.pair is None:
        ratio = roles.get("ratio") or 1
        structure = roles.get("structure") or ("overlapping" if roles.get("replace") else
                                               "matched_sets" if ratio != 1 else "pairs")
    if structure == "overlapping":
        raise InputError(f"{sidecar_path(path)}: matched with --replace (controls in several sets); the bounds need "
                         "sets without replacement: rerun python -m sim.match without --replace")
    if structure == "subclasses":
        raise InputError(f"{sidecar_path(path)}: subclassification (--method subclass); Rosenbaum bounds need "
                         "matched sets with one treated unit or one control each: rerun python -m sim.match with "
                         "--method full, greedy or optimal")
    source = {k: f"--{k}" if getattr(args, k) is not None else str(sidecar_path(path)) if roles else "default"
              for k in ("treatment", "pair")}
    treatment = args.treatment or roles.get("treatment") or "treated"
    pair = args.pair or roles.get("pair") or "pair"
    return treatment, pair, source, bool(roles), structure


def _check_columns(df, header, outcome, treatment, pair, args, has_roles):
    dup = [c for c in dict.fromkeys((outcome, pair, treatment)) if header.count(c) > 1]
    if dup:
        raise InputError(f"column(s) named more than once in the header: {', '.join(dup)}")
    missing = [c for c in dict.fromkeys((outcome, pair, treatment)) if c not in df.columns]
    if missing:
        hint = ""
        if treatment in missing and args.treatment is None and not has_roles:
            hint = (f" (no {sidecar_path(args.input).name} from sim.match beside the input, so --treatment "
                    "defaults to 'treated': name the 0/1 treatment column with --treatment COL)")
        raise InputError(f"column(s) not found in input: {', '.join(missing)}{hint}")


def _finite(x):
    return float(x) if x is not None and math.isfinite(x) else None  # JSON has no inf


def _summary(args, path, cols, d, n_pairs, binary, table, star, amp, gamma_mcid) -> dict:
    g_star, side, direction = star
    level = args.alpha / 2 if args.alternative == "two-sided" else args.alpha
    out = {
        "input": str(path.resolve()), "outcome": args.outcome, "treatment": cols[0], "pair": cols[1],
        "treatment_from": cols[2]["treatment"],
        "pair_from": cols[2]["pair"], "outcome_type": "binary" if binary else "continuous",
        "test": TESTS["binary" if binary else "continuous"], "structure": "pairs",
        "bound_method": PAIR_BOUND["binary" if binary else "continuous"],
        "differences": "control - treated (--lower-is-better)" if args.lower_is_better else "treated - control",
        "pairs_matched": int(n_pairs), "pairs_complete": int(d.size), "pairs_zero_difference": int((d == 0).sum()),
        "alternative": args.alternative, "alpha": args.alpha,
        "zero_method": None if binary else args.zero_method, "method": args.method,
        "bound": bound_used(d, args.method, binary), "gammas": [float(g) for g in table["gamma"]],
        "gamma_star": _finite(g_star), "gamma_star_direction": direction,
        "gamma_star_side": side if g_star > 1 or args.alternative != "two-sided" else None,
        "gamma_star_one_sided_level": level, "significant_at_gamma_1": bool(g_star > 1),
    }
    if binary:
        out.update({k: int(table[k].iloc[0]) for k in ("n_discordant", "n_treated_only", "n_control_only")})
    if math.isinf(g_star):
        out["gamma_star_note"] = "significant at every Γ tried (up to 1e6)"
    out["amplification"] = amp[["lam", "delta"]].to_dict("records")
    out["amplification_note"] = ("(Λ, Δ) with Γ* = (ΛΔ + 1)/(Λ + Δ): a hidden covariate raising the odds of "
                                 "treatment by Λ and of a positive pair difference by Δ (Rosenbaum & Silber 2009)"
                                 if len(amp) else "none: Γ* is infinite" if math.isinf(g_star)
                                 else "none: Γ* is not above 1 (not significant at Γ = 1)")
    if args.mcid is not None:
        out.update(mcid=args.mcid, mcid_level=mcid_level(args.alternative, args.alpha), gamma_mcid=_finite(gamma_mcid))
    out["files"] = list(FILES)
    return out


def _figure(out_png, args, d, binary, table, star, n_label):
    from sim.report.sensitivity_figure import curve_grid, sensitivity_figure

    g_star, side, direction = star
    alt = args.alternative
    grid = curve_grid(list(table["gamma"]), g_star)
    kw = {"binary": binary, "method": args.method, "zero_method": args.zero_method}
    curve = sided_bound(d, grid, alternative=alt, **kw)
    what = {"two-sided": "τ ≠ 0 (two-sided)", "greater": "τ > 0 (treatment better)", "less": "τ < 0"}[alt]
    star_label = (f"Γ* = {g_star:.3f} ({direction})" if g_star > 1 else "Γ* = 1: not significant at Γ = 1")
    mcid = {}
    if args.mcid is not None:
        level = mcid_level(alt, args.alpha)
        mcid = {"mcid_curve": mcid_exclusion(d, args.mcid, grid, level, method=args.method,
                                             zero_method=args.zero_method)["p_upper_mcid"].to_numpy(),
                "mcid_points": (table["gamma"], table["p_upper_mcid"]), "mcid_level": level,
                "mcid_label": f"upper bound on p, τ < MCID = {args.mcid:g} (one-sided)"}
    test = TESTS["binary" if binary else "continuous"]
    detail = "exact binomial" if binary else f"zeros: {args.zero_method}, {bound_used(d, args.method, False)}"
    sensitivity_figure(out_png, grid=grid, curve=curve, points=(table["gamma"], table["p_upper"]),
                       alpha=args.alpha, gamma_star=g_star, star_label=star_label,
                       curve_label=f"upper bound on p, {what}",
                       title=f"Sensitivity to hidden bias: {args.outcome} ({n_label})",
                       subtitle=f"{test}, {detail}; α = {args.alpha:g} {alt}", **mcid)


def run(argv=None) -> int:
    import pandas as pd

    args = build_parser().parse_args(argv)
    if args.mcid is not None:
        mcid_level(args.alternative, args.alpha)  # refuse --mcid with greater before reading anything
    path = Path(args.input)
    df, header = _read(path, args.input)
    treatment, pair, source, has_roles, structure = _roles(args, path)
    _check_columns(df, header, args.outcome, treatment, pair, args, has_roles)
    if structure == "matched_sets":
        from sim.cli.sensitivity_sets import run_sets

        return run_sets(args, df, path, (treatment, pair, source), FILES)
    d, n_pairs = pair_differences(df, args.outcome, pair, treatment, args.lower_is_better)
    y = df.loc[df[pair].notna(), args.outcome]
    binary = is_binary(y)
    if args.binary and not binary:
        bad = y[y.notna() & ~y.isin([0, 1])]
        raise InputError(f"--binary needs a 0/1 outcome; column {args.outcome!r} has "
                         + (f"{bad.iloc[0]!r} in matched rows" if len(bad) else "no values in matched rows"))
    if binary and args.mcid is not None:
        raise InputError(f"--mcid needs a continuous outcome; {args.outcome!r} is 0/1 (McNemar bound on the "
                         "discordant pairs): drop --mcid")
    alt, alpha = args.alternative, args.alpha
    if binary:
        table = binary_table(d, args.gamma, alternative=alt, alpha=alpha)
    else:
        table = sided_table(d, args.gamma, alternative=alt, alpha=alpha, mcid=args.mcid, method=args.method,
                            zero_method=args.zero_method)
    g_star, side = sided_gamma_star(d, alt, alpha, args.method, zero_method=args.zero_method, binary=binary)
    direction = {"greater": "τ > 0, treatment better", "less": "τ < 0, treatment worse"}[side]
    if alt == "two-sided" and g_star <= 1:
        direction = "either direction"
    star = (g_star, side, direction)
    amp = amplification_table(g_star) if 1 < g_star < math.inf else pd.DataFrame(columns=["gamma", "lam", "delta"])
    g_m = None
    if args.mcid is not None:
        g_m = largest_gamma_excluding(d, args.mcid, mcid_level(alt, alpha), method=args.method,
                                      zero_method=args.zero_method)
    summary = _summary(args, path, (treatment, pair, source), d, n_pairs, binary, table, star, amp, g_m)

    out_dir = path.parent if args.out is None else Path(args.out)
    n_label = f"{d.size} pairs" + (f", {summary['n_discordant']} discordant" if binary else "")
    write_sensitivity_files(out_dir, table, summary, amp, lambda png: _figure(png, args, d, binary, table, star, n_label))

    sign = "lower is better: control - treated" if args.lower_is_better else "treated - control"
    print(f"columns: treatment {treatment!r} (from {source['treatment']}), pair {pair!r} (from {source['pair']})")
    print(f"pairs: {d.size} complete of {n_pairs} matched ({n_pairs - d.size} with a missing outcome); "
          f"differences {sign}, positive = treatment better")
    if binary:
        print(f"outcome {args.outcome!r} is 0/1: {TESTS['binary']}, exact binomial bound; "
              f"{summary['n_discordant']} discordant pairs ({summary['n_treated_only']} with only the treated "
              f"unit 1, {summary['n_control_only']} with only the control 1)")
    else:
        print(f"test: {TESTS['continuous']} ({summary['bound']}); {summary['pairs_zero_difference']} zero "
              f"difference(s), --zero-method {args.zero_method}: {ZERO_HELP[args.zero_method]}")
    per_side = f"each one-sided bound at {alpha / 2:g}" if alt == "two-sided" else f"one-sided at {alpha:g}"
    print(f"sidedness: {alt}, alpha {alpha:g} ({per_side})"
          + ("" if binary else f"; interval: {_ci_label(alt, alpha)}"))
    line = f"sensitivity value Γ* ({alt}, alpha {alpha:g}; {direction}): {g_star:.3f}"
    print(line if g_star > 1 else line + " (not significant at Γ = 1)")
    if len(amp):
        print("amplification of Γ*: (Λ, Δ) = " + ", ".join(f"({r.lam:.2f}, {r.delta:.2f})" for r in amp.itertuples())
              + " (Λ: a hidden covariate's effect on the odds of treatment, Δ: on the odds of a positive pair "
              "difference)")
    if args.mcid is not None:
        level = mcid_level(alt, alpha)
        print(f"largest Γ excluding a benefit of one MCID ({args.mcid:g}) at one-sided {level:g} ({alt}): {g_m:.3f}"
              + ("" if g_m > 1 else " (not excluded at Γ = 1)"))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 200):
        print(table.to_string(index=False))
    print("wrote " + ", ".join(str(out_dir / f) for f in FILES))
    return 0


def main(argv=None) -> int:
    return one_line_errors(run, argv)

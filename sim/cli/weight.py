"""Command-line propensity-score weighting of a CSV file.

    python -m sim.weight INPUT.csv --treatment COL (--covariates a,b,c | --formula "age + I(age**2) + ...")
        [--estimand att|ate|ato] [--outcome COL] [--binary std|raw] [--denominator treated|control|pooled|all]
        [--alpha 0.05] [--out DIR]

A thin wrapper around :func:`sim.weight_data` (sim.methods.weighted); what is left here is reading
the file, printing and writing. Writes, in DIR (default INPUT_weighted/ beside INPUT.csv):
weighted.csv (every input row + ps, logit_ps, weight), ps_coefficients.csv, balance.csv, ess.csv,
estimate.csv (with --outcome), weight.json (roles and settings), love.png and overlap.png. Bad input
exits with one ``error: ...`` line and code 2; warnings (extreme weights, a PS model that did not
converge) are one ``warning: ...`` line each."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from sim.cli.common import InputError, Parser, one_line_errors

OUTPUT_COLUMNS = ("ps", "logit_ps", "weight")
ESTIMANDS = ("att", "ate", "ato")

_EPILOG = """\
weights (normalised per arm to sum to the arm's n): ATT treated 1, controls e/(1-e); ATE 1/e and
1/(1-e); ATO (overlap) 1-e and e. SMD denominators are computed on the unweighted sample (cobalt):
the treated SD for the ATT, the pooled SD sqrt((s1^2+s0^2)/2) for the ATE and the ATO.
refused with exit code 2 and one 'error: ...' line: a treatment that is not 0/1, fewer than 2 units
in an arm, missing values in a used column, an unknown estimand, a formula error, a PS of 0 or 1
where the weights divide by it (separation).
"""


def _names(text: str):
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return names


def _alpha(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0 < v < 0.5:
        raise argparse.ArgumentTypeError(f"--alpha must be a number in (0, 0.5); got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from sim.methods.balance_table import BINARY, DENOMINATORS

    p = Parser(prog="python -m sim.weight", description="Propensity-score weighting of a CSV file.",
               epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="input CSV file")
    p.add_argument("--treatment", required=True, help="0/1 treatment column")
    ps = p.add_mutually_exclusive_group(required=True)
    ps.add_argument("--covariates", type=_names, help="comma-separated PS covariates (main effects)")
    ps.add_argument("--formula", help="PS model right-hand side, e.g. \"age + I(age**2) + bs(re74, df=3) + black:married\"")
    p.add_argument("--estimand", default="att", help=f"one of {', '.join(ESTIMANDS)} (default att)")
    p.add_argument("--outcome", default=None, help="outcome column: the weighted difference with its SE")
    p.add_argument("--binary", choices=BINARY, default="std",
                   help="0/1 covariates: SMD (std, default) or raw difference in proportions (raw, cobalt's default)")
    p.add_argument("--denominator", choices=list(DENOMINATORS), default=None,
                   help="SMD denominator (unweighted sample); default: treated for att, pooled for ate/ato")
    p.add_argument("--alpha", type=_alpha, default=0.05, help="1 - confidence level of the CI (default 0.05)")
    p.add_argument("--out", default=None, help="output directory (default: INPUT_weighted/ beside INPUT.csv)")
    return p


def default_out(input_path) -> Path:
    """INPUT_weighted/ beside INPUT.csv (data/nsw.csv -> data/nsw_weighted/)."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_weighted")


def _load(path_text: str):
    import pandas as pd

    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"input file not found: {path_text}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next((row for row in csv.reader(fh) if len(row) > 1 or (row and row[0].strip())), [])
        df = pd.read_csv(path)
    except Exception as exc:  # parser errors, empty file, encoding
        raise InputError(f"cannot read {path_text}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    counts = Counter(name for name in header if name != "")
    repeated = [name for name, k in counts.items() if k > 1]
    if repeated:  # pandas would silently rename the second 'age' to 'age.1'
        raise InputError("input header names the same column more than once: " + ", ".join(repeated))
    if df.empty:
        raise InputError(f"input file has no data rows: {path_text}")
    return df


def _roles(args, w) -> dict:
    s = dict(w.settings)
    ess = {r.arm: {"n": int(r.n), "ess_after": float(r.ess_after)} for r in w.ess.itertuples()}
    est = None if w.estimate is None else {k: (v.item() if hasattr(v, "item") else v)
                                            for k, v in w.estimate.iloc[0].to_dict().items()}
    return {"format": "sim.weight/1", "created_by": "python -m sim.weight", "input": str(Path(args.input).resolve()),
            **s, "weight": "weight", "ps": "ps", "logit_ps": "logit_ps", "ps_converged": w.converged,
            "ess": ess, "estimate": est, "warnings": w.warnings}


def _print(w, out_dir: Path) -> None:
    import pandas as pd

    s = w.settings
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 160,
                           "display.max_columns", 30):
        print(f"PS model ({len(s['ps_terms'])} terms), logistic; odds ratios with Wald 95% CIs:")
        print(w.ps_coefficients.to_string(index=False))
        cols = ["covariate", "type", "diff_before", "diff_after", "vr_before", "vr_after",
                "ecdf_max_before", "ecdf_max_after"]
        print(f"\nbalance ({s['estimand'].upper()} weights; SMD denominator: {s['denominator_label']}"
              + ("; 0/1 covariates: raw difference in proportions" if s["binary"] == "raw" else "") + "):")
        print(w.balance[cols].to_string(index=False))
        print("\nKish effective sample size per arm:")
        print(w.ess.to_string(index=False))
    if w.estimate is not None:
        e = w.estimate.iloc[0]
        print(f"\n{e.estimand} of {e.outcome} (weighted treated - control): {e.estimate:.6g} "
              f"(SE {e.se:.4g}, {e.ci_level:.0%} CI {e.ci_low:.6g} to {e.ci_high:.6g}, p = {e.p_value:.3g})")
        print(f"SE: {e.se_method}; the WLS robust SE that treats the weights as known would be {e.se_weights_known:.4g}")


def run(argv=None) -> int:
    from sim.methods.weighted import weight_data
    from sim.report.weight_figures import love_plot, overlap_plot

    args = build_parser().parse_args(argv)
    if args.estimand.lower() not in ESTIMANDS:
        raise InputError(f"--estimand must be one of {', '.join(ESTIMANDS)}; got {args.estimand!r}")
    df = _load(args.input)
    try:
        w = weight_data(df, args.treatment, args.covariates, args.formula, estimand=args.estimand.lower(),
                        outcome=args.outcome, binary=args.binary, denominator=args.denominator, alpha=args.alpha,
                        key="--formula")
    except ValueError as exc:
        raise InputError(str(exc).replace("covariates:", "--covariates:").replace("outcome:", "--outcome:"))
    for line in w.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in w.notes:
        print(f"note: {line}")
    out_dir = default_out(args.input) if args.out is None else Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out_dir}: {exc.strerror or exc}")
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        print(f"warning: overwriting input column(s) {', '.join(clash)}", file=sys.stderr)
    written = ["weighted.csv", "ps_coefficients.csv", "balance.csv", "ess.csv"]
    try:
        w.data.to_csv(out_dir / "weighted.csv", index=False)
        w.ps_coefficients.to_csv(out_dir / "ps_coefficients.csv", index=False)
        w.balance.to_csv(out_dir / "balance.csv", index=False)
        w.ess.to_csv(out_dir / "ess.csv", index=False)
        if w.estimate is not None:
            w.estimate.to_csv(out_dir / "estimate.csv", index=False)
            written.append("estimate.csv")
        (out_dir / "weight.json").write_text(json.dumps(_plain(_roles(args, w)), indent=2, allow_nan=False) + "\n",
                                             encoding="utf-8")
        love_plot(out_dir / "love.png", w.balance, estimand=w.settings["estimand"])
        overlap_plot(out_dir / "overlap.png", w.data["ps"], df[args.treatment].to_numpy() == 1, w.weights,
                     estimand=w.settings["estimand"], ess=w.ess)
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}")
    _print(w, out_dir)
    written += ["weight.json", "love.png", "overlap.png"]
    print(f"\nwrote {', '.join(written)} in {out_dir}")
    return 0


def _plain(x):
    """JSON-ready: numpy scalars as Python numbers, NaN and inf as null (JSON has neither)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        x = x.item()
    return None if isinstance(x, float) and not np.isfinite(x) else x


def main(argv=None) -> int:
    return one_line_errors(run, argv)

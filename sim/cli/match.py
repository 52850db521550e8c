"""Command-line propensity-score matching of a CSV file.

    python -m sim.match INPUT.csv --treatment COL --covariates a,b,c [--out DIR]
        [--caliper 0.2 | --caliper none] [--caliper-scale logit|ps]
        [--caliper-sd pooled|whole|treated] [--order largest|smallest|random|data|closest]
        [--method greedy|optimal] [--ratio 1] [--replace] [--exact a,b] [--seed N]

A thin wrapper around :func:`sim.match_data` (the PS fit, the matching, the output frame and the
balance table all come from there); its defaults are the paper's (conf/method/paper.yaml, via
:func:`sim.api.paper_method`). What is left here is the command line and its input checks.

Writes DIR/matched.csv (all input rows/columns + ps, logit_ps, pair, weight), DIR/balance.csv
and DIR/matched.json (the roles: treatment and pair columns, covariates, every matching setting
and the caliper width, for ``python -m sim.sensitivity DIR/matched.csv`` to read); DIR defaults
to INPUT_matched/ beside INPUT.csv. Bad input exits with one ``error: ...`` line and code 2,
among others: a header naming the same column twice (pandas would silently
rename the second ``age.1``), fewer than 2 treated or fewer than 2 control rows
(the caliper's SDs and the PS model need two of each). A covariate listed twice
in --covariates is used once, with a ``warning: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from sim.api import match_data, paper_method
from sim.cli.common import InputError, Parser, one_line_errors, write_sidecar
from sim.methods.balance import max_abs_smd
from sim.methods.matching import ALGORITHMS, CALIPER_SCALES, CALIPER_SDS, ORDERS

OUTPUT_COLUMNS = ("ps", "logit_ps", "pair", "weight")
#: fewest rows per arm accepted (caliper SDs use ddof=1; the PS model needs both arms)
MIN_PER_ARM = 2

_EPILOG = f"""\
refused with exit code 2 and one 'error: ...' line:
  a header with the same column name twice; fewer than {MIN_PER_ARM} treated (1) or fewer
  than {MIN_PER_ARM} control (0) rows; a treatment column that is not 0/1; missing values
  in a used column; a non-numeric, non-finite or constant covariate.
a covariate listed more than once in --covariates is used once ('warning: ...').
"""


_Parser = Parser  # the tools' shared one-line-error parser


def _caliper(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--caliper must be a positive number or 'none'; got {text!r}")
    if not (np.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--caliper must be > 0 (or 'none'); got {text!r}")
    return v


def _pos_int(text: str):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ratio must be an integer >= 1; got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"--ratio must be an integer >= 1; got {text!r}")
    return v


def _names(text: str):
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return names


def build_parser() -> argparse.ArgumentParser:
    paper = paper_method()["matching"]  # every default is the paper's
    caliper = "none" if paper["caliper"] is None else paper["caliper"]
    p = _Parser(
        prog="python -m sim.match",
        description="Propensity-score matching of a CSV file.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="input CSV file")
    p.add_argument("--treatment", required=True, help="0/1 treatment column")
    p.add_argument("--covariates", required=True, type=_names, help="comma-separated PS covariates")
    p.add_argument("--caliper", type=_caliper, default=paper["caliper"],
                   help=f"caliper in SDs, or 'none' (default {caliper})")
    p.add_argument("--caliper-scale", choices=CALIPER_SCALES, default=paper["caliper_scale"])
    p.add_argument("--caliper-sd", choices=CALIPER_SDS, default=paper["caliper_sd"])
    p.add_argument("--order", choices=ORDERS, default=paper["order"])
    p.add_argument("--method", choices=ALGORITHMS, default=paper["algorithm"])
    p.add_argument("--ratio", type=_pos_int, default=paper["ratio"])
    p.add_argument("--replace", action="store_true", default=paper["replace"])
    p.add_argument("--exact", type=_names, default=list(paper["exact"]) or None,
                   help="comma-separated exact-match columns")
    p.add_argument("--seed", type=int, default=None, help="seed for --order random")
    p.add_argument("--out", default=None,
                   help="output directory (default: INPUT_matched/ beside INPUT.csv)")
    return p


def _header(path: Path, shown: str) -> list:
    """Column names of the header row as written (pandas would rename repeats ``a.1``).

    Like ``pandas.read_csv``: comma-separated, double quotes, a UTF-8 BOM
    ignored, blank (or whitespace-only) lines before the header skipped. []
    for an empty file.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                if len(row) > 1 or (row and row[0].strip()):
                    return row
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {shown}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    return []


def _load(args):
    import pandas as pd

    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"input file not found: {args.input}")
    # empty header cells are not names: pandas calls them "Unnamed: <position>"
    counts = Counter(name for name in _header(path, args.input) if name != "")
    repeated = [name for name, k in counts.items() if k > 1]
    if repeated:
        raise InputError(
            "input header names the same column more than once: "
            + ", ".join(f"{name!r} ({counts[name]}x)" for name in repeated)
            + "; rename the columns so that every name is unique"
        )
    try:
        df = pd.read_csv(path)
    except Exception as exc:  # parser errors, empty file, encoding
        raise InputError(f"cannot read {args.input}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if df.empty:
        raise InputError(f"input file has no data rows: {args.input}")
    needed = [args.treatment] + args.covariates + (args.exact or [])
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise InputError(f"column(s) not found in input: {', '.join(missing)}")
    if args.treatment in args.covariates:
        raise InputError(f"treatment column {args.treatment!r} cannot also be a covariate")
    for c in dict.fromkeys(needed):
        k = int(df[c].isna().sum())
        if k:
            raise InputError(f"column {c!r} has {k} missing value(s)")
    t = df[args.treatment]
    if not pd.api.types.is_numeric_dtype(t) or not t.isin([0, 1]).all():
        raise InputError(f"treatment column {args.treatment!r} must be binary 0/1")
    t = t.to_numpy().astype(int)
    n_t = int(t.sum())
    n_c = t.size - n_t
    if n_t < MIN_PER_ARM or n_c < MIN_PER_ARM:
        raise InputError(
            f"treatment column {args.treatment!r} needs at least {MIN_PER_ARM} treated (1) and "
            f"{MIN_PER_ARM} control (0) rows; got {n_t} treated and {n_c} control"
        )
    for c in args.covariates:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise InputError(f"covariate {c!r} is not numeric")
        if not np.all(np.isfinite(df[c].to_numpy(dtype=float))):
            raise InputError(f"covariate {c!r} has non-finite values")
        if df[c].nunique() < 2:
            raise InputError(f"covariate {c!r} is constant")
    return df


def _drop_repeated_covariates(args) -> None:
    """Keep the first mention of each covariate; one warning line names the repeats."""
    counts = Counter(args.covariates)
    repeated = [c for c, k in counts.items() if k > 1]
    if repeated:
        print(
            "warning: covariate(s) listed more than once in --covariates, repeats dropped: "
            + ", ".join(repeated),
            file=sys.stderr,
        )
        args.covariates = list(counts)  # insertion order = first mention


def default_out(input_path) -> Path:
    """INPUT_matched/ beside INPUT.csv (data/nsw.csv -> data/nsw_matched/)."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_matched")


def _roles(args, m) -> dict:
    """What matched.json records: the columns' roles and the settings that made the pairs."""
    res = m.result
    return {
        "created_by": "python -m sim.match", "input": str(Path(args.input).resolve()),
        "treatment": args.treatment, "pair": "pair", "weight": "weight", "ps": "ps", "logit_ps": "logit_ps",
        "covariates": list(args.covariates), "exact": list(args.exact or []), "method": args.method,
        "caliper": args.caliper, "caliper_scale": args.caliper_scale, "caliper_sd": args.caliper_sd,
        "caliper_width": None if res.caliper_width is None else float(res.caliper_width),
        "order": args.order, "ratio": int(args.ratio), "replace": bool(args.replace), "seed": args.seed,
        "n_rows": int(len(m.data)), "n_treated": int(res.n_treated), "n_control": int(res.n_control),
        "n_treated_matched": int(res.n_treated_matched), "n_pairs": int(res.n_pairs),
        "ps_converged": bool(m.converged), "max_abs_smd_after": _finite(max_abs_smd(m.balance)),
    }


def _finite(x: float):
    return float(x) if np.isfinite(x) else None  # JSON has no NaN


def run(argv=None) -> int:
    import pandas as pd

    args = build_parser().parse_args(argv)
    _drop_repeated_covariates(args)
    df = _load(args)
    try:
        m = match_data(
            df,
            args.treatment,
            args.covariates,
            algorithm=args.method,
            caliper=args.caliper,
            caliper_scale=args.caliper_scale,
            caliper_sd=args.caliper_sd,
            order=args.order,
            ratio=args.ratio,
            replace=args.replace,
            exact=args.exact or [],
            seed=args.seed,
            warn=lambda message: print(f"warning: propensity model: {message}", file=sys.stderr),
        )
    except ValueError as exc:
        raise InputError(str(exc))
    res, bal = m.result, m.balance
    out_dir = default_out(args.input) if args.out is None else Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out_dir}: {exc.strerror or exc}")
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        print(f"warning: overwriting input column(s) {', '.join(clash)}", file=sys.stderr)
    try:
        m.data.to_csv(out_dir / "matched.csv", index=False)
        bal.to_csv(out_dir / "balance.csv", index=False)
        roles = write_sidecar(out_dir / "matched.csv", _roles(args, m))
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}")

    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(bal.to_string(index=False))
    print(f"max |SMD| after matching: {max_abs_smd(bal):.3f}")
    width = "none" if res.caliper_width is None else f"{res.caliper_width:.4f}"
    print(
        f"pairs: {res.n_pairs} (treated matched {res.n_treated_matched} of {res.n_treated}; "
        f"controls {res.n_control}; caliper width {width})"
    )
    for note in res.notes:
        print(f"note: {note}")
    print(f"wrote {out_dir / 'matched.csv'}, {out_dir / 'balance.csv'} and {roles} (the roles: treatment "
          f"{args.treatment!r}, pair 'pair')")
    print(f"next: python -m sim.sensitivity {out_dir / 'matched.csv'} --outcome COL")
    return 0


def main(argv=None) -> int:
    return one_line_errors(run, argv)


"""Command-line propensity-score matching of a CSV file.

    python -m sim.match INPUT.csv --treatment COL (--covariates a,b,c | --formula "a + I(a**2) + b:c")
        [--method greedy|optimal|full|subclass] [--subclasses 5] [--estimand att|ate] [--out DIR]
        [--caliper 0.2 | --caliper none] [--caliper-scale logit|ps] [--caliper-sd pooled|whole|treated]
        [--order largest|smallest|random|data|closest] [--ratio 1] [--replace] [--exact a,b] [--seed N]

The PS fit, the grouping and the balance are sim.methods.psmatch (the computation behind
:func:`sim.match_data` too); the defaults are the paper's (conf/method/paper.yaml), except that full
matching has no caliper unless one is given (MatchIt's default). What is left here is the command
line, its input checks and the files.

Writes DIR/matched.csv (all input rows/columns + ps, logit_ps, pair, weight: ``pair`` holds the pair,
matched set or subclass, empty when unused; ``weight`` MatchIt's weight), DIR/balance.csv (weighted
after), DIR/ps_coefficients.csv (the PS model's terms: coef, se, odds ratio, Wald 95 % CI, p) and
DIR/matched.json (the roles and settings, and ``structure``: pairs, matched_sets, overlapping or
subclasses, for ``python -m sim.sensitivity DIR/matched.csv`` to read); DIR defaults to
INPUT_matched/ beside INPUT.csv. A plain CSV (sim.cli.csvtext) is read and written back without
pandas, its lines unchanged with the new fields appended; any other is read and written by pandas.
Bad input exits with one ``error: ...`` line and code 2, among others: a header naming the same
column twice (pandas would silently rename the second ``age.1``), fewer than 2 treated or fewer
than 2 control rows (the caliper's SDs and the PS model need two of each). A covariate listed twice
in --covariates is used once, with a ``warning: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from sim.cli.common import InputError, Parser, one_line_errors, write_sidecar
from sim.cli.csvtext import float_text, format_table, read_plain, write_columns
from sim.methods.balance import max_abs_smd
from sim.methods.matching import CALIPER_SCALES, CALIPER_SDS, ORDERS
from sim.methods.paper import paper_method
from sim.methods.psmatch import ESTIMANDS, METHODS, PAIR_HOLDS, WEIGHTS

OUTPUT_COLUMNS = ("ps", "logit_ps", "pair", "weight")
FILES = ("matched.csv", "balance.csv", "ps_coefficients.csv", "matched.json")
#: fewest rows per arm accepted (caliper SDs use ddof=1; the PS model needs both arms)
MIN_PER_ARM = 2
_EPILOG = f"""\
refused with exit code 2 and one 'error: ...' line:
  a header with the same column name twice; fewer than {MIN_PER_ARM} treated (1) or fewer
  than {MIN_PER_ARM} control (0) rows; a treatment column that is not 0/1; missing values
  in a used column; a non-numeric, non-finite or constant covariate; a setting that does
  not apply to --method (--ratio, --replace, --order, --exact: greedy/optimal only;
  --caliper: not subclass; --subclasses: subclass only; --estimand ate: full/subclass).
a covariate listed more than once in --covariates is used once ('warning: ...').
--method full is optimal full matching as MatchIt/optmatch (min-cost flow, OR-Tools);
  --method subclass: --subclasses quantile subclasses of the PS (default 5).
"""


def _caliper(text: str):
    if text.strip().lower() == "none":
        return "none"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--caliper must be a positive number or 'none'; got {text!r}")
    if not (np.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--caliper must be > 0 (or 'none'); got {text!r}")
    return v


def _pos_int(flag: str):
    def parse(text: str):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= 1; got {text!r}")
        if v < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= 1; got {text!r}")
        return v
    return parse


def _names(text: str):
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of column names")
    return names


def build_parser() -> argparse.ArgumentParser:
    paper = paper_method()["matching"]  # every default is the paper's
    caliper = "none" if paper["caliper"] is None else paper["caliper"]
    p = Parser(  # the tools' shared one-line-error parser
        prog="python -m sim.match",
        description="Propensity-score matching of a CSV file.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="input CSV file")
    p.add_argument("--treatment", required=True, help="0/1 treatment column")
    ps = p.add_mutually_exclusive_group(required=True)
    ps.add_argument("--covariates", type=_names, help="comma-separated PS covariates (main effects)")
    ps.add_argument("--formula", help="PS model as a patsy formula, e.g. 'age + I(age**2) + bs(re74, df=4) + "
                                      "married:black' (balance: its data columns)")
    p.add_argument("--method", choices=METHODS, default=None, help=f"default {paper['algorithm']}")
    p.add_argument("--subclasses", type=_pos_int("--subclasses"), default=None,
                   help="number of PS subclasses for --method subclass (default 5)")
    p.add_argument("--estimand", choices=ESTIMANDS, default=None,
                   help="weights of --method full|subclass: att (default) or ate")
    p.add_argument("--caliper", type=_caliper, default=None,
                   help=f"caliper in SDs, or 'none' (default {caliper}; full matching: none)")
    p.add_argument("--caliper-scale", choices=CALIPER_SCALES, default=paper["caliper_scale"])
    p.add_argument("--caliper-sd", choices=CALIPER_SDS, default=paper["caliper_sd"])
    p.add_argument("--order", choices=ORDERS, default=None, help=f"default {paper['order']}")
    p.add_argument("--ratio", type=_pos_int("--ratio"), default=None, help=f"default {paper['ratio']}")
    p.add_argument("--replace", action="store_true", default=None)
    p.add_argument("--exact", type=_names, default=None, help="comma-separated exact-match columns")
    p.add_argument("--seed", type=int, default=None, help="seed for --order random")
    p.add_argument("--out", default=None,
                   help="output directory (default: INPUT_matched/ beside INPUT.csv)")
    return p


def _settle(args) -> None:
    """Refuse settings that do not apply to --method, then fill the rest with the paper's."""
    paper = paper_method()["matching"]
    args.method = args.method or paper["algorithm"]
    pairs = args.method in ("greedy", "optimal")
    wrong = [flag for flag, given, ok in (
        ("--ratio", args.ratio is not None, pairs), ("--replace", args.replace is not None, pairs),
        ("--order", args.order is not None, pairs), ("--exact", args.exact is not None, pairs),
        ("--caliper", args.caliper is not None, args.method != "subclass"),
        ("--subclasses", args.subclasses is not None, args.method == "subclass"),
        ("--estimand ate", args.estimand == "ate", not pairs)) if given and not ok]
    if wrong:
        raise InputError(f"{', '.join(wrong)} cannot be used with --method {args.method} (see --help)")
    if args.caliper is None:
        args.caliper = None if args.method in ("full", "subclass") else paper["caliper"]
    elif args.caliper == "none":
        args.caliper = None
    args.order = args.order or paper["order"]
    args.ratio = paper["ratio"] if args.ratio is None else args.ratio
    args.replace = bool(paper["replace"] if args.replace is None else args.replace)
    args.exact = list(paper["exact"] if args.exact is None and pairs else args.exact or [])
    args.subclasses = 5 if args.subclasses is None else args.subclasses
    args.estimand = args.estimand or "att"


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


def _read_pandas(args, needed, numeric):
    """The input by pandas, with its checks (header, missing and NA values, a 0/1 treatment, numeric
    covariates): the path for files that are not plain, and for --formula."""
    import pandas as pd

    path = Path(args.input)
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
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"column(s) not found in input: {', '.join(missing)}")
    for c in needed:
        k = int(df[c].isna().sum())
        if k:
            raise InputError(f"column {c!r} has {k} missing value(s)")
    t = df[args.treatment]
    if not pd.api.types.is_numeric_dtype(t) or not t.isin([0, 1]).all():
        raise InputError(f"treatment column {args.treatment!r} must be binary 0/1")
    for c in numeric:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise InputError(f"covariate {c!r} is not numeric")
    return df


def _load(args):
    """(float columns {name: array} of the treatment and the balance covariates, the exact strata
    codes or None, the PS design (X, term names), the plain file or None, the DataFrame or None).
    A plain file without --formula never meets pandas (sim.cli.csvtext)."""
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"input file not found: {args.input}")
    if args.formula is not None:
        from sim.methods.formula import formula_columns, split_formula

        try:
            lhs, _ = split_formula(args.formula)
            args.covariates = list(formula_columns(args.formula))
        except ValueError as exc:
            raise InputError(f"--formula: {exc}")
        if lhs is not None and lhs != args.treatment:
            raise InputError(f"--formula: its left side {lhs!r} is not the --treatment column {args.treatment!r}")
    if args.treatment in args.covariates:
        raise InputError(f"treatment column {args.treatment!r} cannot also be a covariate")
    needed = list(dict.fromkeys([args.treatment, *args.covariates, *args.exact]))
    plain = read_plain(path)
    names = [h for h in plain.header if h] if plain is not None else []
    if len(set(names)) < len(names) or set(OUTPUT_COLUMNS) & set(names):
        plain = None  # pandas' path refuses repeated names and overwrites the output columns
    cols = df = None
    if plain is not None and args.formula is None:
        cols = plain.numbers(needed)
        if cols is not None and not np.isin(cols[args.treatment], (0.0, 1.0)).all():
            cols = None  # pandas names the problem
    if cols is None:
        df = _read_pandas(args, needed, [] if args.formula else args.covariates)
        import pandas as pd

        if args.formula:
            args.covariates = [c for c in args.covariates if pd.api.types.is_numeric_dtype(df[c])]
        cols = {c: df[c].to_numpy(dtype=float) for c in [args.treatment, *args.covariates]}
    t = cols[args.treatment]
    n_t = int(t.sum())
    n_c = t.size - n_t
    if n_t < MIN_PER_ARM or n_c < MIN_PER_ARM:
        raise InputError(
            f"treatment column {args.treatment!r} needs at least {MIN_PER_ARM} treated (1) and "
            f"{MIN_PER_ARM} control (0) rows; got {n_t} treated and {n_c} control"
        )
    for c in args.covariates:
        if not np.all(np.isfinite(cols[c])):
            raise InputError(f"covariate {c!r} has non-finite values")
        if np.all(cols[c] == cols[c][0]):
            raise InputError(f"covariate {c!r} is constant")
    codes = None
    if args.exact:
        codes = (df.groupby(args.exact, sort=True).ngroup().to_numpy().astype(np.int64) if df is not None else
                 np.unique(np.column_stack([cols[c] for c in args.exact]), axis=0, return_inverse=True)[1].ravel())
    if args.formula is None:
        design = (np.column_stack([cols[c] for c in args.covariates]), list(args.covariates))
    else:
        from sim.methods.formula import ps_design

        try:
            d = ps_design(df, args.formula, key="--formula")
        except ValueError as exc:
            raise InputError(str(exc))
        design = (d.X, list(d.names))
    return cols, codes, design, plain, df


def _drop_repeated_covariates(args) -> None:
    """Keep the first mention of each covariate; one warning line names the repeats."""
    counts = Counter(args.covariates or [])
    repeated = [c for c, k in counts.items() if k > 1]
    if repeated:
        print("warning: covariate(s) listed more than once in --covariates, repeats dropped: " + ", ".join(repeated),
              file=sys.stderr)
        args.covariates = list(counts)  # insertion order = first mention


def default_out(input_path) -> Path:
    """INPUT_matched/ beside INPUT.csv (data/nsw.csv -> data/nsw_matched/)."""
    path = Path(input_path)
    return path.with_name(f"{path.stem}_matched")


def _roles(args, m, terms, n_rows) -> dict:
    """What matched.json records: the columns' roles, what the pair column holds and the settings
    that made the groups."""
    pairs = args.method in ("greedy", "optimal")
    return {
        "created_by": "python -m sim.match", "input": str(Path(args.input).resolve()),
        "treatment": args.treatment, "pair": "pair", "weight": "weight", "ps": "ps", "logit_ps": "logit_ps",
        "structure": m.structure, "pair_holds": PAIR_HOLDS[m.structure], "estimand": m.estimand,
        "weights": WEIGHTS["matching" if pairs else m.estimand], "covariates": list(args.covariates),
        "formula": args.formula,
        "ps_terms": list(terms), "exact": list(args.exact), "method": args.method,
        "caliper": args.caliper, "caliper_scale": args.caliper_scale, "caliper_sd": args.caliper_sd,
        "caliper_width": None if m.caliper_width is None else float(m.caliper_width),
        "order": args.order if pairs else None, "ratio": int(args.ratio) if pairs else None,
        "replace": bool(args.replace) if pairs else None, "seed": args.seed,
        "subclasses": m.n_sets if m.structure == "subclasses" else None, "n_sets": m.n_sets,
        "n_rows": int(n_rows), "n_treated": m.n_treated, "n_control": m.n_control,
        "n_treated_matched": m.n_treated_used, "n_control_matched": m.n_control_used,
        "n_pairs": int(m.result.n_pairs) if pairs else None,
        "ps_converged": bool(m.converged), "max_abs_smd_after": _finite(max_abs_smd(m.balance["smd_after"])),
    }


def _finite(x: float):
    return float(x) if np.isfinite(x) else None  # JSON has no NaN


def _write_matched(path: Path, plain, df, m) -> None:
    """matched.csv: the input's own lines with the new fields appended (plain files), else pandas."""
    pair = [str(v) if v >= 0 else "" for v in m.set_id.tolist()]
    if plain is not None:
        plain.write_appended(path, OUTPUT_COLUMNS, [float_text(m.fit.ps), float_text(m.fit.logit_ps), pair,
                                                    float_text(m.weights)])
        return
    import pandas as pd

    out = df.copy()
    out["ps"], out["logit_ps"], out["weight"] = m.fit.ps, m.fit.logit_ps, m.weights
    out["pair"] = pd.array(np.where(m.set_id >= 0, m.set_id, 0), dtype="Int64")
    out.loc[m.set_id < 0, "pair"] = pd.NA
    out = out[[c for c in df.columns] + [c for c in OUTPUT_COLUMNS if c not in df.columns]]
    out.to_csv(path, index=False)


def _summary_line(m) -> str:
    width = "none" if m.caliper_width is None else f"{m.caliper_width:.4f}"
    used = (f"treated used {m.n_treated_used} of {m.n_treated}; controls used {m.n_control_used} of "
            f"{m.n_control}")
    if m.structure == "subclasses":
        return f"subclasses: {m.n_sets} ({used}; {m.estimand.upper()} weights)"
    if m.method == "full":
        return f"matched sets: {m.n_sets} ({used}; caliper width {width}; {m.estimand.upper()} weights)"
    if m.structure == "pairs":
        return (f"pairs: {m.result.n_pairs} (treated matched {m.n_treated_used} of {m.n_treated}; "
                f"controls {m.n_control}; caliper width {width})")
    return f"matched sets: {m.n_sets}, links {m.result.n_pairs} ({used}; caliper width {width})"


def run(argv=None) -> int:
    from sim.methods.propensity import odds_ratios
    from sim.methods.psmatch import ps_match

    args = build_parser().parse_args(argv)
    _settle(args)
    _drop_repeated_covariates(args)
    cols, codes, (X, terms), plain, df = _load(args)
    t = cols[args.treatment]
    B = np.column_stack([cols[c] for c in args.covariates]) if args.covariates else np.zeros((t.size, 0))
    try:
        m = ps_match(X, t, B, args.covariates, method=args.method, caliper=args.caliper,
                     caliper_scale=args.caliper_scale, caliper_sd=args.caliper_sd, order=args.order,
                     ratio=args.ratio, replace=args.replace, exact=codes, rng=np.random.default_rng(args.seed),
                     n_subclasses=args.subclasses, estimand=args.estimand,
                     warn=lambda message: print(f"warning: propensity model: {message}", file=sys.stderr))
    except ValueError as exc:
        raise InputError(str(exc))
    coefs = {"term" if k == "covariate" else k: v for k, v in odds_ratios(m.fit, terms, include_intercept=True).items()}
    out_dir = default_out(args.input) if args.out is None else Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory {out_dir}: {exc.strerror or exc}")
    clash = [c for c in OUTPUT_COLUMNS if df is not None and c in df.columns]
    if clash:
        print(f"warning: overwriting input column(s) {', '.join(clash)}", file=sys.stderr)
    try:
        _write_matched(out_dir / "matched.csv", plain, df, m)
        write_columns(out_dir / "balance.csv", m.balance)
        write_columns(out_dir / "ps_coefficients.csv", coefs)
        roles = write_sidecar(out_dir / "matched.csv", _roles(args, m, terms, t.size))
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}")

    print(f"propensity model: logistic, {len(terms)} term(s){'' if m.converged else ' (NOT converged)'}")
    print(format_table(coefs, "{:.4g}"))
    print(format_table(m.balance))
    print(f"max |SMD| after {'subclassification' if m.structure == 'subclasses' else 'matching'} "
          f"({'weighted' if m.structure != 'pairs' else 'matched units'}): {max_abs_smd(m.balance['smd_after']):.3f}")
    print(_summary_line(m))
    for note in m.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(str(out_dir / f) for f in FILES[:-1])} and {roles} (the roles: treatment "
          f"{args.treatment!r}, pair 'pair' = {m.structure.replace('_', ' ')})")
    if m.structure == "subclasses":
        print("next: an outcome analysis weighted by 'weight' (Rosenbaum bounds need matched sets, not subclasses)")
    else:
        print(f"next: python -m sim.sensitivity {out_dir / 'matched.csv'} --outcome COL")
    return 0


def main(argv=None) -> int:
    return one_line_errors(run, argv)


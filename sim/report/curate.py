"""Curated results: `python -m sim.report.curate RUN_DIR` copies a finished run's summary (as
summary.csv.gz: the same CSV, gzip-compressed with a fixed header so that the same summary gives
the same bytes; a grid's tidy summary runs to megabytes), key table and figures into
experiments/<name>/ and writes its README.md: the question, the answer in
two sentences (computed from the summary, so it is regenerated with the numbers), the key figure
and table, and the exact command that regenerates it all.

Each curated experiment keeps its answer beside its results, in `experiments/<name>/answer.py`:

    from sim.report.curate import pick, value_range, by_outcome

    KEY_TABLE = "key_table.csv"      # the run's table shown in the README (this is the default)
    KEY_FIGURE = "rejection.png"     # the run's figure shown first (default; else its first .png)
    EXTRA_FILES = ("x.csv",)         # optional: tables answer() derives in the run dir, kept with it
    README_TABLES = (("Title", "x.csv", "caption"),)  # optional: EXTRA_FILES shown after the key table

    def answer(summary: pandas.DataFrame, run_dir: pathlib.Path) -> str:
        ...                          # the text, computed from the run's tables

The effect sizes in SD units (sim.report.units: one MCID of each outcome in SD units of its change,
the run's effect_units.csv) are such a table: `units(run_dir)` reads them for the answer, and
`by_outcome(d, units)` quotes them beside each rate.

An experiment without answer.py is refused (exit 2) with one `error:` line naming the file to create.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import yaml

from sim.report.tables import key_table_markdown, markdown
from sim.report.units import in_sd, run_units

SUMMARY = "summary.csv.gz"  #: the curated copy of the run's summary.csv

ROOT = Path(__file__).resolve().parents[2]
#: what answer.py declares unless it says otherwise
KEY_TABLE = "key_table.csv"
KEY_FIGURE = "rejection.png"


class CurateError(Exception):
    """A run or an experiment that cannot be curated; reported as one `error:` line, exit code 2."""


# -- helpers for the answers (imported by experiments/<name>/answer.py) ---------------------------

def pick(s: pd.DataFrame, **eq) -> pd.DataFrame:
    """The rows of a tidy summary whose columns equal the given values (None: the column is missing,
    e.g. `caliper=None` for no caliper)."""
    for k, v in eq.items():
        s = s[s[k].isna()] if v is None else s[s[k] == v]
    return s


def value_range(d: pd.DataFrame) -> str:
    """'min-max' of the `value` column: two decimals, two significant digits below 0.1 (so that
    0.046-0.054 does not read 0.05-0.05)."""
    return "-".join(f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}" for v in (d["value"].min(), d["value"].max()))


def by_outcome(d: pd.DataFrame, units: pd.DataFrame | None = None) -> str:
    """'outcome timepoint value, ...' for every row, two decimals; with `units` (effect_units.csv)
    each followed by what one MCID of that outcome is in SD units of its change:
    'face m1 0.83 (1 MCID = 0.67 SD)'."""
    return ", ".join(f"{r.outcome} {r.timepoint} {r.value:.2f}"
                     + (f" ({in_sd(units, r.outcome, r.timepoint)})" if units is not None else "")
                     for r in d.itertuples())


def units(run_dir: Path) -> pd.DataFrame:
    """The run's effect sizes in SD units (effect_units.csv, sim.report.units), computed from its
    configuration if the run did not write them."""
    return run_units(run_dir)


# -- loading the answers --------------------------------------------------------------------------

def answer_path(name: str, root: Path | None = None) -> Path:
    return (ROOT if root is None else Path(root)) / "experiments" / name / "answer.py"


def load_answer(name: str, root: Path | None = None) -> ModuleType:
    """The module experiments/<name>/answer.py (its `answer`, `KEY_TABLE`, `KEY_FIGURE`) of the
    repository at `root` (default ROOT)."""
    path = answer_path(name, root)
    if not path.is_file():
        raise CurateError(f"no curated answer for experiment {name!r}: create {path} defining "
                          f"answer(summary, run_dir) -> str")
    spec = importlib.util.spec_from_file_location(f"sim_curated_answer_{name}", path)
    module = importlib.util.module_from_spec(spec)
    no_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in experiments/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = no_bytecode
    if not callable(getattr(module, "answer", None)):
        raise CurateError(f"{path} defines no function answer(summary, run_dir) -> str")
    return module


#: overrides that change how a run uses this machine, never its results: left out of the command
MACHINE_ONLY = ("n_jobs=", "progress=", "chunk_size=", "backend=", "dask_scheduler=")


def regenerate_command(run: Path, cfg: dict) -> str:
    """The one command that re-runs the experiment exactly as it was run and curates it again."""
    try:
        rel = run.resolve().relative_to(ROOT)
    except ValueError:
        rel = run
    overrides = (run / ".hydra" / "overrides.yaml")
    extra = [o for o in (yaml.safe_load(overrides.read_text()) if overrides.is_file() else [])
             if not o.startswith(("experiment=", "reps=", "seed=", "hydra.", *MACHINE_ONLY))]
    args = " ".join([f"experiment={cfg['experiment']['name']}", f"reps={cfg['reps']}", f"seed={cfg['seed']}", *extra])
    return f"python -m sim {args} hydra.run.dir={rel} && python -m sim.report.curate {rel}"


def curate(run: Path, dest: Path | None = None) -> Path:
    """Curate the finished run `run` into `dest` (default ROOT/experiments/<name>); returns `dest`.
    Raises CurateError, before writing anything, when the run or its experiment's answer.py is
    missing something."""
    run = Path(run)
    cfg_path = run / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise CurateError(f"{cfg_path} not found: not a run directory of `python -m sim`")
    cfg = yaml.safe_load(cfg_path.read_text())
    name = cfg["experiment"]["name"]
    module = load_answer(name)
    key_table = getattr(module, "KEY_TABLE", KEY_TABLE)
    key_figure = getattr(module, "KEY_FIGURE", KEY_FIGURE)
    for needed in ("summary.csv", key_table):
        if not (run / needed).is_file():
            raise CurateError(f"{run / needed} not found (the key table is KEY_TABLE of {answer_path(name)})"
                              if needed == key_table else f"{run / needed} not found: not a finished Monte Carlo run")
    command = regenerate_command(run, cfg)
    dest = ROOT / "experiments" / name if dest is None else Path(dest)
    summary = pd.read_csv(run / "summary.csv")
    answer = module.answer(summary, run)
    key = pd.read_csv(run / key_table)
    tables = tuple(getattr(module, "README_TABLES", ()))  # (title, file, caption) after the key table
    extra = tuple(dict.fromkeys([*getattr(module, "EXTRA_FILES", ()), *(f for _, f, _ in tables)]))
    for f in extra:  # small tables the answer derives in the run
        if not (run / f).is_file():
            raise CurateError(f"{run / f} not found (EXTRA_FILES / README_TABLES of {answer_path(name)}: "
                              "answer() should derive it in the run directory)")
    sections = [line for title, f, caption in tables
                for line in (f"## {title}", "", caption, "", markdown(pd.read_csv(run / f)), "")]
    files = [p for p in sorted(run.iterdir()) if p.suffix == ".png" or p.name in (key_table, "report.md", *extra)]
    dest.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copy2(p, dest / p.name)
    (dest / SUMMARY).write_bytes(gzip.compress((run / "summary.csv").read_bytes(), mtime=0))
    (dest / "summary.csv").unlink(missing_ok=True)  # an uncompressed copy of an earlier curation
    figs = [p.name for p in files if p.suffix == ".png"]
    key_fig = key_figure if key_figure in figs else (figs[0] if figs else "")
    text = "\n".join([
        f"# {name}", "",
        "Regenerate everything in this folder with:", "",
        "```bash", command, "```", "",
        "## Question", "", str(cfg["experiment"].get("description", "")).strip(), "",
        "## Answer", "", answer, "",
        "## Key figure", "", f"![{key_fig}]({key_fig})", "",
        "## Key table", "", key_table_markdown(key), "",
        *sections,
        f"All figures: {', '.join(f'[{f}]({f})' for f in figs)}. Full tidy results with Monte Carlo SEs: "
        f"[{SUMMARY}]({SUMMARY}) (`pandas.read_csv` reads it as it is); the run's report (configuration "
        "included): [report.md](report.md).", "",
        f"Run: reps = {cfg['reps']} per condition, seed = {cfg['seed']}.", "",
    ])
    (dest / "README.md").write_text(text)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run directory (hydra.run.dir)")
    ap.add_argument("--dest", type=Path, default=None,
                    help="where to write the curated folder (default: experiments/<name>/ of the repository)")
    a = ap.parse_args(argv)
    if not (a.run / "summary.csv").is_file():
        print(f"error: {a.run}/summary.csv not found: not a finished Monte Carlo run", file=sys.stderr)
        return 2
    try:
        print(curate(a.run, a.dest))
    except CurateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

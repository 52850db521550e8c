"""`python -m sim --help`: one short page instead of Hydra's dump of the whole composed config.

Why: Hydra's own --help prints every key of the composed config (over 1,200 lines), which hides
what a user looks for first: which experiments there are and what each asks, the few keys every
run takes, the other commands, and where the configs live. Everything on the page is read from the
shipped configs (each experiment's `experiment.description`, the root config's defaults), so it
cannot drift from them. `python -m sim experiment=NAME --help` shows one experiment in full.
Hydra's own views stay where they were: --cfg job, --info, --hydra-help, --multirun.
"""

from __future__ import annotations

import re
import textwrap
from importlib import resources
from typing import Any

import yaml

WIDTH = 100
NAME_COLUMN = 26  # experiment names and keys are padded to this width
MAX_QUESTION = 3 * (WIDTH - NAME_COLUMN) - 6  # three lines; a longer first sentence is shortened

HELP_FLAGS = ("--help", "-h")

COMMON_KEYS = (  # (key, what it does, its key in conf/config.yaml: the default shown is read there)
    ("reps=N", "Monte Carlo replicates per condition (each experiment sets its own)", "reps"),
    ("n_jobs=K", "worker processes, -1 = all cores", "n_jobs"),
    ("seed=S", "root of every replicate's SeedSequence", "seed"),
    ("chunk_size=C", "replicates per stored chunk, null = automatic", "chunk_size"),
    ("progress=true|false", "progress bar, null = only on a terminal", "progress"),
    ("hydra.run.dir=DIR", "where the outputs go; the same DIR again resumes a stopped run", None),
)

COMMANDS = (
    ("python -m sim.match IN.csv", "the paper's PS matching of your own data"),
    ("python -m sim.sensitivity MATCHED.csv", "Rosenbaum bounds for its matched pairs"),
    ("python -m sim.weight IN.csv", "PS weighting (ATT/ATE/ATO) of your own data, cobalt-style balance"),
    ("python -m sim.bench", "replicates per second, per replicate vs batched"),
    ("python -m sim.report.curate RUN_DIR", "refresh experiments/<name>/ from a run"),
)
COMMAND_COLUMN = 42


def _conf():
    return resources.files("sim.conf")


def experiments() -> dict[str, dict[str, Any]]:
    """Each shipped experiment's YAML (conf/experiment/NAME.yaml), by name."""
    folder = _conf().joinpath("experiment")
    return {p.name[:-5]: yaml.safe_load(p.read_text()) or {}
            for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")}


def description(spec: dict[str, Any]) -> str:
    return " ".join(str((spec.get("experiment") or {}).get("description") or "").split())


def first_sentence(text: str) -> str:
    """Up to the first '.', '?' or '!' that ends a sentence (followed by a capital or '(')."""
    text = " ".join(text.split())
    m = re.search(r"(?<=[.?!])\s+(?=[A-Z(])", text)
    return text[: m.start()] if m else text


def question(spec: dict[str, Any]) -> str:
    """The experiment's question: the first sentence of its description; a long one without its
    asides in brackets, else its headline (the text before ': '), else shortened at a word."""
    s = first_sentence(description(spec))
    bare = re.sub(r"\s*\([^()]*\)", "", s)
    head = s.split(": ", 1)[0]
    for candidate in (s, bare, head):
        if len(candidate) <= MAX_QUESTION:
            return candidate
    return textwrap.shorten(s, MAX_QUESTION, placeholder=" ...")


def _row(left: str, right: str, column: int = NAME_COLUMN) -> list[str]:
    """'  left      right', right wrapped under itself; a long left takes its own line."""
    pad = " " * column
    lines = textwrap.wrap(right, WIDTH - column) or [""]
    if len(left) + 2 >= column:
        return [f"  {left}"] + [pad + ln for ln in lines]
    return [f"  {left}".ljust(column) + lines[0]] + [pad + ln for ln in lines[1:]]


def _defaults() -> dict[str, Any]:
    return yaml.safe_load(_conf().joinpath("config.yaml").read_text()) or {}


def _show(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def page() -> str:
    """The whole `python -m sim --help` page."""
    base = _defaults()
    lines = ["usage: python -m sim experiment=NAME [key=value ...]",
             "",
             "Simulates a propensity-score-matched study (by default Tominaga et al., Sci Rep 2025) and",
             "writes summary.csv, key_table.csv, figures and report.md to outputs/NAME/<date_time>/.",
             "",
             "experiments (python -m sim experiment=NAME --help: its full question, grid and reps):"]
    for name, spec in experiments().items():
        lines += _row(name, question(spec))
    lines += ["", "keys every run takes [default]; results never depend on n_jobs, chunk_size or a resume:"]
    for key, what, default in COMMON_KEYS:
        lines += _row(key, what + (f" [{_show(base.get(default))}]" if default else ""))
    lines += _row("KEY=VALUE", "any config key, e.g. cohort.n=1000 method.matching.caliper=0.1; "
                               "'+key=value' adds a key; a bad one ends in one error line")
    lines += ["", "Hydra's views:"]
    lines += _row("--cfg job", "the composed config (with experiment=NAME and overrides); also --info, "
                               "--hydra-help")
    lines += _row("--multirun K=a,b", "one run per value, e.g. hydra/launcher=joblib cohort.confounding=0,1,2")
    lines += ["", "other commands (each with its own --help):"]
    for cmd, what in COMMANDS:
        lines += _row(cmd, what, COMMAND_COLUMN)
    lines += ["", "configs (Hydra, shipped as the package sim.conf):",
              f"  {_conf()}",
              "  conf/ in the repository: experiment/ (one file per experiment), study/, cohort/, method/",
              "Python: import sim; help(sim) (sim.run, sim.simulate for your own generate/analyse, ...)"]
    return "\n".join(lines)


def experiment_page(name: str) -> str:
    """`python -m sim experiment=NAME --help`: the experiment's full description, grid and reps."""
    spec = experiments()[name]
    exp = spec.get("experiment") or {}
    reps = spec.get("reps", _defaults().get("reps"))
    lines = [f"usage: python -m sim experiment={name} [key=value ...]", ""]
    lines += textwrap.wrap(description(spec), WIDTH)
    lines += ["", f"job: {exp.get('job', 'psm')}; replicates per condition: reps={reps}"]
    grid = exp.get("grid") or {}
    if grid:
        lines += ["grid (experiment.grid; replace it with 'experiment.grid={key:[...],...}'):"]
        for key, values in grid.items():
            lines += _row(str(key), ", ".join(_show(v) for v in values))
    lines += ["", f"config: {_conf().joinpath('experiment', name + '.yaml')}",
              f"composed config: python -m sim --cfg job experiment={name}",
              "keys every run takes and the other commands: python -m sim --help"]
    return "\n".join(lines)


def wants_help(argv: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in argv)


def help_text(argv: list[str]) -> tuple[str, int]:
    """(text, exit code) for a command line with --help/-h: the experiment's page when one is named,
    else the general page; an unknown experiment is the usual one-line error (exit 2)."""
    named = [a.split("=", 1)[1] for a in argv if re.match(r"^\+{0,2}experiment=", a)]
    if not named or named[-1] in ("", "null"):
        return page(), 0
    if named[-1] not in experiments():
        return unknown_experiment(named[-1]), 2
    return experiment_page(named[-1]), 0


def unknown_experiment(name: str) -> str:
    """The one-line error for an experiment that does not exist (without the leading 'error: ')."""
    return f"experiment: no such experiment {name!r}; available: {sorted(experiments())}"

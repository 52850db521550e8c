"""`python -m sim experiment=NAME [key=value ...]`: the Hydra entry point.

A command line Hydra cannot compose (an unknown key or experiment, a value it cannot parse) ends as
one `error:` line with exit code 2 instead of Hydra's multi-line report: Hydra's own composition
error is let through (HYDRA_FULL_ERROR) and worded here, so the configs are composed no more often
than Hydra composes them. `--help`/`-h` print sim's own short page (sim.cli.help) instead of
Hydra's dump of the whole config; Hydra's other flags (--cfg, --info, --hydra-help, --multirun) go
to Hydra as they are."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

HYDRA_FLAGS = ("-", "--")  # --multirun, --cfg, --help, ... go to Hydra as they are


_job_started = False  # an error after this is the job's, with its traceback


@hydra.main(version_base=None, config_path="pkg://sim.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    global _job_started
    _job_started = True
    from sim.cli.app import output_dir_and_overrides, run

    code = run(cfg, *output_dir_and_overrides())
    if code:
        sys.exit(code)


def preflight(argv: list[str]) -> str | None:
    """One-line message for a command line refused before Hydra composes it, or None."""
    if any(a.startswith(HYDRA_FLAGS) for a in argv):
        return None
    for a in argv:
        if a.startswith("hydra.run.dir="):
            p = Path(a.split("=", 1)[1])
            for q in (p, *p.parents):
                if q.exists() and not q.is_dir():
                    return f"hydra.run.dir: {q} exists and is not a directory"
    return None


def composition_error(e: Exception) -> str:
    """Hydra's composition error in one line, with the way out where there is one."""
    import re

    from sim.cli.help import unknown_experiment

    text = " ".join(str(e).split())
    missing = re.search(r"Could not find 'experiment/([^']*)'", text)
    if missing:
        return unknown_experiment(missing.group(1))
    if "not in struct" in text or "Could not override" in text:
        text += " (add a new key with a leading '+', e.g. '+cohort.effect={barthel:{m1:5}}')"
    return text


def cli() -> None:
    import os

    from sim.cli.help import help_text, wants_help

    argv = sys.argv[1:]
    if wants_help(argv):
        text, code = help_text(argv)
        print(text if code == 0 else f"error: {text}", file=sys.stdout if code == 0 else sys.stderr)
        sys.exit(code)
    msg = preflight(argv)
    if msg:
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    plain = not any(a.startswith(HYDRA_FLAGS) for a in argv)
    if plain:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # a composition error reaches the except below
    try:
        main()
    except Exception as e:  # noqa: BLE001 - Hydra's composition errors have no common base
        if _job_started or not plain:
            raise
        print(f"error: {composition_error(e)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()

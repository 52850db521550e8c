"""`python -m sim experiment=NAME [key=value ...]`: the Hydra entry point.

The command line is composed once before Hydra runs, so that a bad override (an unknown key or
experiment, a value Hydra cannot parse, hydra.run.dir naming a file) ends as one `error:` line
with exit code 2 instead of Hydra's multi-line report. `--help`/`-h` print sim's own short page
(sim.cli.help) instead of Hydra's dump of the whole config; Hydra's other flags (--cfg, --info,
--hydra-help, --multirun) go to Hydra as they are."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

HYDRA_FLAGS = ("-", "--")  # --multirun, --cfg, --help, ... go to Hydra as they are


@hydra.main(version_base=None, config_path="pkg://sim.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from sim.cli.app import output_dir_and_overrides, run

    code = run(cfg, *output_dir_and_overrides())
    if code:
        sys.exit(code)


def preflight(argv: list[str]) -> str | None:
    """One-line message for a command line Hydra would refuse, or None."""
    if any(a.startswith(HYDRA_FLAGS) for a in argv):
        return None
    for a in argv:
        if a.startswith("hydra.run.dir="):
            p = Path(a.split("=", 1)[1])
            for q in (p, *p.parents):
                if q.exists() and not q.is_dir():
                    return f"hydra.run.dir: {q} exists and is not a directory"
    overrides = [a for a in argv if not a.startswith("hydra.")]
    try:
        from sim.api import compose

        compose(None, overrides)
    except Exception as e:  # noqa: BLE001 - Hydra's composition errors have no common base
        import re

        from sim.cli.help import unknown_experiment

        text = " ".join(str(e).split())
        missing = re.search(r"Could not find 'experiment/([^']*)'", text)
        if missing:
            return unknown_experiment(missing.group(1))
        if "not in struct" in text or "Could not override" in text:
            text += " (add a new key with a leading '+', e.g. '+cohort.effect={barthel:{m1:5}}')"
        return text
    return None


def cli() -> None:
    from sim.cli.help import help_text, wants_help

    if wants_help(sys.argv[1:]):
        text, code = help_text(sys.argv[1:])
        print(text if code == 0 else f"error: {text}", file=sys.stdout if code == 0 else sys.stderr)
        sys.exit(code)
    msg = preflight(sys.argv[1:])
    if msg:
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()

"""`python -m sim experiment=NAME [key=value ...]`: the Hydra entry point.

The command line is composed once before Hydra runs, so that a bad override (an unknown key or
experiment, a value Hydra cannot parse, hydra.run.dir naming a file) ends as one `error:` line
with exit code 2 instead of Hydra's multi-line report."""

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
        from sim.jobs.config import experiments_available

        text = " ".join(str(e).split())
        if "Could not find 'experiment/" in text:
            return f"experiment: no such experiment; allowed: {experiments_available()}"
        if "not in struct" in text or "Could not override" in text:
            text += " (add a new key with a leading '+', e.g. '+cohort.effect={barthel:{m1:5}}')"
        return text
    return None


def cli() -> None:
    msg = preflight(sys.argv[1:])
    if msg:
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()

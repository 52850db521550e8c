"""Compose -> validate -> run -> write outputs. Called by the Hydra entry point (sim/__main__.py);
every user error ends here as one line `error: ...` and exit code 2."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from sim.config import ConfigError, check_cohort, check_method, check_run_keys
from sim.engine import ManifestMismatchError
from sim.study import StudySpecError

JOBS = ("reproduce", "psm", "rct")


def _job(name: str) -> Callable[[DictConfig, Path], int]:
    if name == "reproduce":
        from sim.jobs.reproduce import main
    elif name == "psm":
        from sim.jobs.outputs import psm_main as main
    elif name == "rct":
        from sim.jobs.rct import main
    else:
        raise ConfigError(f"experiment.job: got {name!r}; allowed: {list(JOBS)}")
    return main


def check_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """A command-line value for a key the experiment's grid varies would be silently replaced by
    the grid values: refuse it, saying how to change the grid instead."""
    grid = cfg.experiment.get("grid") or {}
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key in grid:
            raise ConfigError(f"{key}: this experiment varies it over {list(grid[key])} (experiment.grid); "
                              f"change the grid instead, e.g. 'experiment.grid={{{key}:[...]}}'")


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> int:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        check_run_keys(plain)
        check_overrides(cfg, overrides or [])
        check_cohort(plain["cohort"])
        check_method(plain["method"])
        job = _job(cfg.experiment.get("job"))
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        code = job(cfg, out_dir)
        print(f"{cfg.experiment.name}: done in {time.perf_counter() - start:.1f} s; outputs in {out_dir}",
              file=sys.stderr)
        return code
    except (ConfigError, StudySpecError, ManifestMismatchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def output_dir_and_overrides() -> tuple[Path, list[str]]:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task)

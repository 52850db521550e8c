"""Compose -> validate -> run -> write outputs. Called by the Hydra entry point (sim/__main__.py);
every user error ends here as one line `error: ...` and exit code 2."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from sim.config import ConfigError, check_run_keys, experiments_available
from sim.study import StudySpecError

JOBS = ("reproduce", "psm", "rct")


def _job(name: str) -> Callable[[DictConfig, Path], int]:
    if name == "reproduce":
        from sim.jobs.reproduce import main
    elif name == "psm":
        from sim.jobs.outputs import psm_main as main
    elif name == "rct":
        from sim.jobs.outputs import rct_main as main
    else:
        raise ConfigError(f"experiment.job: got {name!r}; allowed: {list(JOBS)}")
    return main


def run(cfg: DictConfig, out_dir: Path) -> int:
    try:
        check_run_keys(OmegaConf.to_container(cfg, resolve=True))
        job = _job(cfg.experiment.get("job"))
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        code = job(cfg, out_dir)
        print(f"{cfg.experiment.name}: done in {time.perf_counter() - start:.1f} s; outputs in {out_dir}",
              file=sys.stderr)
        return code
    except (ConfigError, StudySpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)

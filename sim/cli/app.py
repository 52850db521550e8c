"""Compose -> validate -> run -> write outputs. Called by the Hydra entry point (sim/__main__.py).
Every user error ends here as one line `error: ...` and exit code 2, before any replicate runs;
an unexpected exception ends as one line plus the path of a log holding its traceback."""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sim.jobs import contract as experiment
from sim.jobs.config import ConfigError, check_run_keys
from sim.engine import ManifestMismatchError, RunLock, RunLockedError
from sim.cohort.study import StudySpecError

USER_ERRORS = (ConfigError, StudySpecError, ManifestMismatchError, RunLockedError)


def check_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """A command-line value for a key the experiment's grid varies would be silently replaced by
    the grid values: refuse it, saying how to change the grid instead."""
    grid = cfg.experiment.get("grid") or {}
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key in grid:
            raise ConfigError(f"{key}: this experiment varies it over {list(grid[key])} (experiment.grid); "
                              f"change the grid instead, e.g. 'experiment.grid={{{key}:[...]}}'")


def check_out_dir(out_dir: Path) -> None:
    for p in (out_dir, *out_dir.parents):
        if p.exists() and not p.is_dir():
            raise ConfigError(f"hydra.run.dir: {p} exists and is not a directory")


def validate(cfg: DictConfig, overrides: list[str]) -> None:
    """The run-level keys and the command line; the rest is checked by sim.jobs.contract.prepare."""
    check_run_keys(OmegaConf.to_container(cfg, resolve=True))
    check_overrides(cfg, overrides)


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> int:
    try:
        validate(cfg, overrides or [])
        check_out_dir(out_dir)
        prepared = experiment.prepare(cfg)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with RunLock(out_dir):
            result = experiment.run(cfg, out_dir, prepared=prepared)
        print(_summary(cfg, result, out_dir, time.perf_counter() - start), file=sys.stderr)
        return result.exit_code
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished chunks are kept: run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - never a traceback on the terminal
        unreachable = scheduler_error(cfg, e)
        if unreachable:
            print(f"error: {unreachable}", file=sys.stderr)
            return 2
        log = _error_log(out_dir)
        msg = " ".join(str(e).split())[:300]
        print(f"error: unexpected {type(e).__name__}: {msg} (traceback in {log})", file=sys.stderr)
        return 1


def scheduler_error(cfg: DictConfig, exc: BaseException) -> str | None:
    """The user error of a dask scheduler that cannot be reached (`dask_scheduler` names an address
    where no scheduler answers, or it went away): an OSError (ConnectionError, TimeoutError,
    distributed's CommClosedError) raised by dask.distributed or by the runner's connection to it,
    with backend=dask and a dask_scheduler. None for anything else (e.g. an OSError of the file
    system), which stays an unexpected error."""
    scheduler = cfg.get("dask_scheduler")
    if cfg.get("backend") != "dask" or scheduler is None or not isinstance(exc, OSError):
        return None
    frames = traceback.extract_tb(exc.__traceback__)
    from_dask = any("/distributed/" in f.filename.replace("\\", "/") or f.name == "_dask_client" for f in frames)
    if not from_dask:
        return None
    reason = " ".join(str(exc).split())
    prefix = f"cannot connect to the dask scheduler at {scheduler!r}: "  # the runner's own wording
    reason = (reason[len(prefix):] if reason.startswith(prefix) else reason)[:300] or type(exc).__name__
    return (f"dask_scheduler: cannot reach the dask scheduler at {scheduler!r} ({reason}); check that a scheduler "
            "is running there and reachable from this machine (dask scheduler --port 8786), or set "
            "dask_scheduler=null for a local cluster of n_jobs workers; finished chunks are kept: the same "
            "command resumes")


def _summary(cfg: DictConfig, result: experiment.ExperimentResult, out_dir: Path, seconds: float) -> str:
    """The end of a run on the terminal: what ran and where the files are (not the key table); the
    first line is always `NAME: done in ... s; outputs in DIR`."""
    first = f"{cfg.experiment.name}: done in {seconds:.1f} s; outputs in {out_dir}"
    try:
        from sim.report.montecarlo import terminal_summary

        return terminal_summary(cfg, result, out_dir, seconds)
    except Exception:  # noqa: BLE001 - a finished run is never reported as failed for its summary
        return first


def _error_log(out_dir: Path) -> Path:
    text = traceback.format_exc()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "error.log"
        path.write_text(text)
    except OSError:
        fd, name = tempfile.mkstemp(prefix="sim-error-", suffix=".log")
        with open(fd, "w") as fh:
            fh.write(text)
        path = Path(name)
    return path


def output_dir_and_overrides() -> tuple[Path, list[str]]:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task)

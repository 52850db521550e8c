"""Compose -> validate -> estimate the disk -> run -> write outputs. Called by the Hydra entry point
(sim/__main__.py). Every user error ends here as one line `error: ...` and exit code 2, before any
replicate runs; an unexpected exception ends as one line plus the path of a log holding its
traceback.

A single run is checked before Hydra creates its directory: `RunGuard` (a Hydra callback,
conf/config.yaml `hydra.callbacks`) validates the settings, plans the conditions and estimates the
disk the run takes (sim.engine.disk) in `on_run_start`, so a refused run leaves no folder behind;
`run` then reuses what it prepared. The run's plan and its disk estimate are one line on stderr.
When the run ends its chunk files never stay: they were compacted into replicates.parquet (the
job wrote its replicates and keep_replicates=true), or they are deleted (summaries only)."""

from __future__ import annotations

import copy
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sim.jobs import contract as experiment
from sim.jobs.config import ConfigError, check_run_keys
from sim.engine import ManifestMismatchError, RunLock, RunLockedError, condition_stream
from sim.engine.compact import STORE_FILE
from sim.engine.disk import DiskEstimate, estimate_disk, human
from sim.engine.store import parse_chunk_filename
from sim.cohort.study import StudySpecError

USER_ERRORS = (ConfigError, StudySpecError, ManifestMismatchError, RunLockedError)
HYDRA_FILES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", ".hydra", "__main__.log")
_prepared: dict[str, Any] = {}  # what RunGuard prepared for the run, keyed by its config


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


def check_disk_keys(cfg: Any) -> None:
    """max_disk_gb (a number > 0), keep_replicates and draw_figures (true/false)."""
    limit = cfg.get("max_disk_gb", 5)
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0 or not math.isfinite(limit):
        raise ConfigError(f"max_disk_gb: must be a number of gigabytes > 0 (the most disk a run may take), "
                          f"got {limit!r}")
    keep = cfg.get("keep_replicates", True)
    if not isinstance(keep, bool):
        raise ConfigError(f"keep_replicates: must be true (replicates.parquet kept) or false (summaries only), "
                          f"got {keep!r}")
    draw = cfg.get("draw_figures", True)
    if not isinstance(draw, bool):
        raise ConfigError(f"draw_figures: must be true (the PNGs) or false (tables and report.md only), got {draw!r}")


def validate(cfg: DictConfig, overrides: list[str]) -> None:
    """The run-level keys and the command line; the rest is checked by sim.jobs.contract.prepare."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    check_run_keys(plain)
    check_disk_keys(plain)
    check_overrides(cfg, overrides)


def disk_estimate(cfg: DictConfig, prepared: tuple) -> DiskEstimate:
    job, conds, plans = prepared
    shared = experiment.common_random_numbers(cfg)
    return estimate_disk(type(job).simulate, plans, [condition_stream(c.factors, shared) for c in conds],
                         int(cfg.seed), int(cfg.reps), keep=bool(cfg.get("keep_replicates", True)))


def check_disk(cfg: DictConfig, est: DiskEstimate, out_dir: Path) -> None:
    """Refuse a run whose disk estimate (its peak) exceeds max_disk_gb or the free space."""
    limit = float(cfg.get("max_disk_gb", 5))
    if est.peak_bytes > limit * 1e9:
        need = math.ceil(est.peak_bytes / 1e9)
        chunks = est.bytes_per_replicate * est.replicates
        slim = f", keep summaries only (keep_replicates=false: about {human(chunks)} at most)" if est.keep else ""
        raise ConfigError(f"max_disk_gb: this run would take about {human(est.peak_bytes)} of disk at its peak "
                          f"({est.replicates:,} replicates: {human(chunks)} of chunks"
                          + (f", then {human(est.kept_bytes)} of replicates.parquet beside them" if est.keep else "")
                          + f"), more than max_disk_gb={cfg.get('max_disk_gb')}; allow it (max_disk_gb={need})"
                          f"{slim}, or run fewer reps")
    where = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    free = shutil.disk_usage(where).free if where is not None else None
    if free is not None and est.peak_bytes > free:
        raise ConfigError(f"max_disk_gb: this run would take about {human(est.peak_bytes)} of disk, but only "
                          f"{human(free)} is free under {where}; free some, or run fewer reps")


def plan_line(cfg: DictConfig, prepared: tuple, est: DiskEstimate, out_dir: Path) -> str:
    conds = prepared[1]
    return (f"{cfg.experiment.name}: {len(conds)} condition{'s' * (len(conds) != 1)} x {cfg.reps} replicates, "
            f"seed {cfg.seed}, into {out_dir}; {est.line()} (max_disk_gb={cfg.get('max_disk_gb', 5)})")


def preflight(cfg: DictConfig, out_dir: Path, overrides: list[str]) -> tuple[tuple, DiskEstimate]:
    """Everything that can refuse a run before anything is written: settings, plans, disk."""
    validate(cfg, overrides)
    check_out_dir(out_dir)
    prepared = experiment.prepare(cfg)
    est = disk_estimate(cfg, prepared)
    check_disk(cfg, est, out_dir)
    return prepared, est


def _key(cfg: DictConfig, out_dir: Path) -> str:
    return f"{out_dir}\n{OmegaConf.to_yaml(cfg, resolve=True)}"


class RunGuard(Callback):
    """Hydra callback: refuse a bad single run before Hydra creates its directory (one line,
    exit 2), and hand what it prepared to `run`; let a multirun name its sweep directory."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """hydra.sweep.dir names the experiment (${hydra:runtime.choices.experiment}), and Hydra's
        sweeper resolves it before any job has set the HydraConfig that `${hydra:...}` reads
        ("HydraConfig was not set"): set it from the multirun's config, as on_run_start does for a
        single run (each job then sets its own)."""
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(copy.deepcopy(config))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            from hydra.core.hydra_config import HydraConfig

            HydraConfig.instance().set_config(config)  # run.dir names the experiment (${hydra:...})
            cfg = copy.deepcopy(config)
            with read_write(cfg), open_dict(cfg):
                out_dir = Path(str(cfg.hydra.run.dir))
                overrides = list(cfg.hydra.overrides.task)
                del cfg["hydra"]
            _prepared[_key(cfg, out_dir)] = preflight(cfg, out_dir, overrides)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except Exception:  # noqa: BLE001 - `run` meets it again and reports it (with its log)
            return


def run(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None) -> int:
    before = _hydra_only(out_dir)
    try:
        prepared, est = _prepared.pop(_key(cfg, out_dir), None) or preflight(cfg, out_dir, overrides or [])
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with RunLock(out_dir):
            print(plan_line(cfg, prepared, est, out_dir), file=sys.stderr)
            result = experiment.run(cfg, out_dir, prepared=prepared)
            finish(result, bool(cfg.get("keep_replicates", True)))
        print(_summary(cfg, result, out_dir, time.perf_counter() - start), file=sys.stderr)
        return result.exit_code
    except USER_ERRORS as e:
        if before and isinstance(e, (ConfigError, StudySpecError)):
            _remove_hydra_files(out_dir)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; {kept_chunks(out_dir)}", file=sys.stderr)
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


def finish(result: experiment.ExperimentResult, keep: bool) -> None:
    """No chunk files stay after a run: compacted into replicates.parquet by the job's report, or
    (keep_replicates=false, or a job that writes no replicates) deleted with the run's store, and
    the result then says so when its rows are asked for. The command and sim.run both end here."""
    run = result.run
    if run.out_dir is None or (keep and run.store is not None and not run.chunk_files):
        return
    shutil.rmtree(Path(run.out_dir) / "chunks", ignore_errors=True)
    if run.store is not None:
        Path(run.store.path).unlink(missing_ok=True)
    run.store, run.chunk_files = None, []
    run.dropped = ("keep_replicates=false: summaries only" if not keep else
                   f"experiment {result.name} writes no {STORE_FILE}: summaries only")


def kept_chunks(out_dir: Path) -> str:
    """What an interrupted run leaves to resume from, in words."""
    chunks = [p for p in (out_dir / "chunks").glob("c*") if parse_chunk_filename(p.name)] \
        if (out_dir / "chunks").is_dir() else []
    reps = sum(last - first + 1 for _, first, last in (parse_chunk_filename(p.name) for p in chunks))
    stored = (out_dir / STORE_FILE).is_file() and (out_dir / "chunks" / "manifest.json").is_file()
    base = f"the replicates of {STORE_FILE} and " if stored else ""
    if not chunks:
        if stored:
            return (f"no new chunk had finished, so none were kept; the replicates of {STORE_FILE} are: the same "
                    "command resumes from them")
        return "no chunk had finished, so none were kept: the same command starts over"
    return (f"{base}{len(chunks)} finished chunk{'s' * (len(chunks) != 1)} ({reps} replicates) are kept in "
            f"{out_dir / 'chunks'}: run the same command to resume")


def _hydra_only(out_dir: Path) -> bool:
    """The run directory holds only what Hydra wrote for this run (nothing of an earlier run)."""
    if not (out_dir / ".hydra").is_dir():
        return False
    names = {str(p.relative_to(out_dir)) for p in out_dir.rglob("*")}
    return names <= set(HYDRA_FILES)


def _remove_hydra_files(out_dir: Path) -> None:
    """A refused run leaves nothing: Hydra's files of it and the then empty directory go."""
    for name in HYDRA_FILES:
        p = out_dir / name
        try:
            p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
        except OSError:
            pass
    try:
        out_dir.rmdir()
    except OSError:
        pass


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

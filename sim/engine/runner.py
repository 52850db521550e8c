"""Run replicates of every condition, in parallel chunks, with checkpoint/resume.

Determinism: replicate r of condition c always uses ``replicate_rng(seed, streams[c], r)``, the
stream a digest of what the condition is (``condition_stream``),
so the replicates table is identical to the bit whatever ``n_jobs``,
``chunk_size`` or how many times the run was interrupted and resumed.
See ``sim.engine.store`` for the on-disk layout and the resume rule.

Backends (``run_chunks(backend=...)``): ``"local"`` runs the chunks in joblib (loky) processes on
this machine; ``"dask"`` submits the same chunk function to a ``dask.distributed`` cluster (a
``LocalCluster`` of ``n_jobs`` workers, or the scheduler at an address). Both compute every chunk
with the same seeds, so the tables are identical whichever backend ran them. Under dask a worker
writes its chunk file itself when it sees the run directory (a shared file system: the manifest
is there), and the driver writes every chunk it receives whose file it does not see, so a cluster
without a shared file system works too and resume is the same.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import numbers
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from .chunk import (ChunkFn, ChunkOutput, ReplicateFailure, ReplicateFn, _empty_failures, _run_chunk,  # noqa: F401
                    failure_reason, per_replicate)
from .dask_backend import (_cluster_threads, _dask_client, _dask_results, _import_distributed,  # noqa: F401
                           check_scheduler_address)
from .compact import open_store
from .progress import Progress
from .results import RunResult, concat_rows
from .seeds import condition_stream
from .store import build_manifest, chunk_filename, prepare_chunk_dir, read_chunk, scan_chunks

__all__ = ["BACKENDS", "ChunkOutput", "ReplicateFailure", "RunResult", "per_replicate", "run_chunks",
           "run_experiment", "default_chunk_size", "check_scheduler_address"]

#: where the chunks run: joblib processes on this machine, or a dask.distributed cluster
BACKENDS = ("local", "dask")

MAX_DEFAULT_CHUNK = 250


def _fn_name(fn: Any) -> str:
    base = fn.func if isinstance(fn, functools.partial) else fn
    mod = getattr(base, "__module__", None) or type(base).__module__
    name = getattr(base, "__qualname__", None) or type(base).__qualname__
    return f"{mod}.{name}"


def default_chunk_size(reps: int, workers: int) -> int:
    """ceil(reps / (4 * workers)) clipped to [1, 250]: several chunks per worker for load balance."""
    return max(1, min(MAX_DEFAULT_CHUNK, math.ceil(reps / (4 * max(1, workers)))))


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _uncovered_ranges(covered: np.ndarray, chunk_size: int) -> list[tuple[int, int]]:
    """Split runs of uncovered reps into (first, last) ranges of at most chunk_size reps."""
    ranges = []
    reps = len(covered)
    r = 0
    while r < reps:
        if covered[r]:
            r += 1
            continue
        start = r
        while r < reps and not covered[r] and r - start < chunk_size:
            r += 1
        ranges.append((start, r - 1))
    return ranges


def run_experiment(replicate_fn: ReplicateFn, conditions: Sequence[Mapping[str, Any]], reps: int, seed: int,
                   out_dir: Path, n_jobs: int = -1, chunk_size: int | None = None,
                   progress: bool | None = None, fingerprint: str = "", backend: str = "local",
                   scheduler: Any = None) -> RunResult:
    """Run ``reps`` replicates of every condition with a function of one replicate,
    ``replicate_fn(condition, rng) -> DataFrame`` (module-level or a partial of one, picklable,
    randomness only from rng). See :func:`run_chunks` for resume, parallelism and seeds."""
    if not callable(replicate_fn):
        raise ValueError(f"replicate_fn must be callable, got {type(replicate_fn).__name__}")
    _check_conditions(conditions)
    return run_chunks(per_replicate(replicate_fn), conditions, conditions, reps, seed, out_dir, n_jobs=n_jobs,
                      chunk_size=chunk_size, progress=progress, fingerprint=fingerprint, name=_fn_name(replicate_fn),
                      backend=backend, scheduler=scheduler)


def _check_conditions(conditions: Any) -> None:
    if isinstance(conditions, Mapping) or not isinstance(conditions, Sequence) or len(conditions) == 0:
        raise ValueError("conditions must be a non-empty list of dicts (e.g. from expand_grid); "
                         f"got {conditions!r:.100}")
    for i, cond in enumerate(conditions):
        if not isinstance(cond, Mapping):
            raise ValueError(f"conditions[{i}] must be a dict, got {type(cond).__name__}")


def run_chunks(simulate: ChunkFn, plans: Sequence[Any], conditions: Sequence[Mapping[str, Any]], reps: int,
               seed: int, out_dir: Path, n_jobs: int = -1, chunk_size: int | None = None,
               progress: bool | None = None, fingerprint: str = "", name: str = "",
               streams: Sequence[tuple[int, ...]] | None = None, backend: str = "local",
               scheduler: Any = None, keep_rows: bool = True) -> RunResult:
    """Run ``reps`` replicates of every condition; checkpoint chunks to ``out_dir/chunks``.

    ``simulate(plan, rngs) -> ChunkOutput`` computes a chunk of replicates of one condition from
    its plan (``plans[c]``, handed to the worker directly) and the replicates' generators
    (``replicate_rng(seed, streams[c], r)``; by default ``streams[c] = condition_stream(conditions[c])``;
    streams that leave out shared factors give common random numbers), so a job may batch them.
    ``conditions[c]`` (plain values)
    identifies condition c in the manifest. Re-running with the same seed, reps and conditions
    in the same out_dir resumes: finished chunks are loaded, only missing reps are computed; a
    completed (compacted) run is read from its replicates.parquet, and a larger reps computes only
    the replicates it does not hold (a smaller one is refused).
    n_jobs follows joblib (-1 = all cores, 1 = in-process without joblib). progress=None shows
    a bar only if stderr is a terminal. ``fingerprint`` (e.g. a hash of the full settings and
    code) joins the resume key, so a changed setting never reuses old chunks.

    backend="local" runs the chunks in joblib processes; backend="dask" on a dask.distributed
    cluster: ``scheduler`` None starts a ``LocalCluster`` of n_jobs single-threaded worker
    processes (closed at the end), a string is a running scheduler's address
    (``tcp://host:8786``), and a ``distributed.Client`` (or a cluster object) is used as it is.
    The tables are identical for every backend. Chunks whose file a worker cannot see (no shared
    file system) are written by this process as they arrive.

    keep_rows=False: the replicate rows stay on disk (RunResult reads them back, a condition at a
    time), so this process holds one chunk at a time, whatever reps and the grid;
    ``sim.engine.compact.compact(result)`` then stacks them into replicates.parquet.
    """
    if not callable(simulate):
        raise ValueError(f"simulate must be callable, got {type(simulate).__name__}")
    _check_conditions(conditions)
    if len(plans) != len(conditions):
        raise ValueError(f"one plan per condition: got {len(plans)} plans for {len(conditions)} conditions")
    streams = [condition_stream(c) for c in conditions] if streams is None else [tuple(s) for s in streams]
    if len(streams) != len(conditions):
        raise ValueError(f"one stream per condition: got {len(streams)} for {len(conditions)} conditions")
    reps = _check_int(reps, "reps", 1)
    seed = _check_int(seed, "seed", 0)
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1 = in-process, -1 = all cores), got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if chunk_size is not None:
        chunk_size = _check_int(chunk_size, "chunk_size", 1)
    if progress not in (None, True, False):
        raise ValueError(f"progress must be None (auto), True or False, got {progress!r}")
    if out_dir is None:
        raise ValueError("out_dir must be a directory path, got None")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if scheduler is not None:
        if backend != "dask":
            raise ValueError(f"scheduler is used by backend='dask' only, got backend={backend!r}")
        if isinstance(scheduler, str) and (not scheduler or any(ch.isspace() for ch in scheduler)):
            raise ValueError(f"scheduler must be a dask scheduler address like 'tcp://host:8786', got {scheduler!r}")
        if not isinstance(scheduler, str) and not hasattr(scheduler, "submit") \
                and not hasattr(scheduler, "scheduler_address"):
            raise ValueError("scheduler must be None, an address like 'tcp://host:8786', a distributed.Client "
                             f"or a cluster, got {type(scheduler).__name__}")
    if backend == "dask":
        _import_distributed()  # before anything is written: a missing extra is one clear error
        if isinstance(scheduler, str):
            check_scheduler_address(scheduler)

    conds = [dict(c) for c in conditions]
    n_cond = len(conds)
    workers = 1 if n_jobs == 1 else joblib.effective_n_jobs(n_jobs)

    streams_key = hashlib.sha256(repr(streams).encode()).hexdigest()[:16]
    manifest = build_manifest(seed, reps, conds, name or _fn_name(simulate), f"{fingerprint}:{streams_key}")
    chunks_dir = prepare_chunk_dir(Path(out_dir), manifest)

    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = Progress(n_cond, reps, enabled=progress)

    def keep(payload: dict, path: Path) -> dict:
        return payload if keep_rows else {**payload, "replicates": None, "path": path}

    # Resume: the completed run's store (its reps), then every finished chunk, mark their reps covered.
    payloads: list[dict] = []
    covered = np.zeros((n_cond, reps), dtype=bool)
    store = open_store(Path(out_dir), chunks_dir)
    n_resumed = 0
    if store is not None:
        covered[:, :store.reps] = True
        n_resumed = store.n_chunks  # the chunks compacted into it
        for c in range(n_cond):
            bar.add(c, store.reps, resumed=True)
    for c, first, last, path in scan_chunks(chunks_dir, n_cond, reps):
        if covered[c, first:last + 1].any():  # left by a run killed while it compacted: in the store
            path.unlink(missing_ok=True)
            continue
        try:
            payload = read_chunk(path)
        except Exception as exc:  # noqa: BLE001 - unreadable file: recompute those reps
            warnings.warn(f"recomputing unreadable chunk {path.name}: {failure_reason(exc)}", RuntimeWarning, stacklevel=2)
            continue
        payloads.append(keep(payload, path))
        covered[c, first:last + 1] = True
        bar.add(c, last - first + 1, resumed=True)
        n_resumed += 1
    bar.draw()

    def tasks_of(size: int) -> list[tuple[int, int, int]]:
        return [(c, first, last) for c in range(n_cond) for first, last in _uncovered_ranges(covered[c], size)]

    def collect(results: Iterable[dict]) -> None:
        for payload in results:
            payloads.append(keep(payload, chunks_dir / chunk_filename(payload["condition"], payload["first"],
                                                                      payload["last"])))
            bar.add(payload["condition"], payload["last"] - payload["first"] + 1)
            bar.draw()

    tasks: list[tuple[int, int, int]] = []
    cdir = str(chunks_dir)
    if not covered.all() and backend == "dask":
        with _dask_client(scheduler, workers) as client:
            tasks = tasks_of(chunk_size or default_chunk_size(reps, _cluster_threads(client) or workers))
            with contextlib.closing(_dask_results(client, simulate, plans, streams, tasks, seed, chunks_dir)) as res:
                collect(res)
    elif not covered.all():
        tasks = tasks_of(chunk_size or default_chunk_size(reps, workers))
        if n_jobs == 1:
            results = (_run_chunk(simulate, plans[c], c, streams[c], f, l, seed, cdir, "always", keep_rows)
                       for c, f, l in tasks)
        else:
            parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
            results = parallel(joblib.delayed(_run_chunk)(simulate, plans[c], c, streams[c], f, l, seed, cdir,
                                                          "always", keep_rows) for c, f, l in tasks)
        collect(results)
    bar.draw(final=True)

    payloads.sort(key=lambda p: (p["condition"], p["first"]))
    fail_frames = ([store.failures] if store is not None and len(store.failures) else []) \
        + [p["failures"] for p in payloads if len(p["failures"])]
    failures = pd.concat(fail_frames, ignore_index=True) if fail_frames else _empty_failures()
    if store is not None and len(fail_frames) > 1:
        failures = failures.sort_values(["condition", "rep"], kind="stable", ignore_index=True)
    if len(failures) == n_cond * reps:
        warnings.warn(f"all {len(failures)} replicates failed; first reason: {failures['reason'].iloc[0]}",
                      RuntimeWarning, stacklevel=2)
    res = RunResult(failures=failures, conditions=conds, n_computed_chunks=len(tasks), n_resumed_chunks=n_resumed,
                    store=store, out_dir=Path(out_dir))
    if keep_rows:  # in memory: the store's rows of each condition (read back once), then its chunks'
        stored = set(store.conditions) if store is not None else set()
        res.rows = concat_rows([f for c in range(n_cond) for f in ([store.rows(c)] if c in stored else [])
                                + [p["replicates"] for p in payloads if p["condition"] == c]])
        res.store = None
    else:
        res.chunk_files = [(p["condition"], p["first"], p["last"], p["path"]) for p in payloads]
    return res

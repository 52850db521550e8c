"""One chunk of replicates: the chunk-level contract a job's `simulate(plan, rngs)` meets
(ChunkOutput), the per-replicate adapter (per_replicate), and the worker-side call that seeds a
chunk, runs it and writes its file (_run_chunk). Both backends (joblib in sim.engine.runner,
dask in sim.engine.dask_backend) run chunks through this module."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .blas import one_blas_thread
from .heap import keep_freed_memory
from .seeds import replicate_rngs
from .store import MANIFEST_NAME, empty_rows, failures_frame, write_chunk

ReplicateFn = Callable[[dict, np.random.Generator], pd.DataFrame]
_MAX_REASON = 500


class ReplicateFailure(Exception):
    """Raised by a replicate function to record an expected, non-fatal failure.

    Example: matching found no pairs.  The runner records
    ``ReplicateFailure: <reason>`` and carries on; any other ``Exception`` is
    recorded the same way.  ``KeyboardInterrupt``/``SystemExit`` abort the run.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _empty_failures() -> pd.DataFrame:
    return failures_frame([])


def failure_reason(exc: BaseException) -> str:
    """Exception class and message on one line (truncated)."""
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


@dataclass
class ChunkOutput:
    """What a job's chunk-level `simulate(plan, rngs)` returns for B replicates.

    rows: the result rows of every replicate that succeeded, with an integer column ``replicate``
        giving the replicate's position 0..B-1 in ``rngs`` (rows of one replicate together, in
        increasing position).
    failures: {position: reason} for the replicates that failed (recorded, never dropped).
    """

    rows: pd.DataFrame
    failures: dict[int, str] = field(default_factory=dict)


ChunkFn = Callable[[Any, Sequence[np.random.Generator]], ChunkOutput]


def per_replicate(replicate_fn: ReplicateFn) -> ChunkFn:
    """The chunk-level contract from a function of one replicate ``replicate_fn(plan, rng) ->
    DataFrame``: each replicate in turn; an exception fails that replicate only."""
    return functools.partial(_each_replicate, replicate_fn)


def _each_replicate(replicate_fn: ReplicateFn, plan: Any, rngs: Sequence[np.random.Generator]) -> ChunkOutput:
    frames: list[pd.DataFrame] = []
    positions: list[int] = []
    failures: dict[int, str] = {}
    for i, rng in enumerate(rngs):
        try:
            out = replicate_fn(plan, rng)
            if not isinstance(out, pd.DataFrame):
                raise TypeError(f"replicate_fn returned {type(out).__name__}, expected pandas.DataFrame")
        except Exception as exc:  # noqa: BLE001 - any replicate error is data, not a crash
            failures[i] = failure_reason(exc)
            continue
        if len(out):
            frames.append(out)
            positions.append(i)
    if not frames:
        return ChunkOutput(pd.DataFrame({"replicate": pd.Series([], dtype="int64")}), failures)
    lengths = [len(f) for f in frames]
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    if "replicate" in rows.columns:
        raise ValueError("replicate_fn output must not contain the reserved column 'replicate'")
    rows.insert(0, "replicate", np.repeat(np.asarray(positions, dtype=np.int64), lengths))
    return ChunkOutput(rows, failures)


def compute_chunk(simulate: ChunkFn, plan: Any, c: int, stream: tuple[int, ...], first: int, last: int,
                  seed: int) -> dict:
    """The payload of reps first..last of condition c (condition, first, last, replicates, failures),
    computed in one chunk-level call; a chunk whose whole call fails records every replicate as failed."""
    rngs = replicate_rngs(seed, stream, first, last)
    try:
        out = simulate(plan, rngs)
        if not isinstance(out, ChunkOutput):
            raise TypeError(f"simulate returned {type(out).__name__}, expected ChunkOutput")
        clash = [col for col in ("condition", "rep") if col in out.rows.columns]
        if clash:
            raise ValueError(f"simulate output must not contain reserved column(s) {clash}")
        rows = out.rows
        positions = set(out.failures) | set(rows["replicate"].tolist() if len(rows) else [])
        if not positions <= set(range(len(rngs))):
            raise ValueError(f"simulate returned replicate positions outside 0..{len(rngs) - 1}")
        failures = sorted((c, first + int(i), reason) for i, reason in out.failures.items())
    except Exception as exc:  # noqa: BLE001 - a failed chunk is data too
        rows = empty_rows()
        failures = [(c, r, failure_reason(exc)) for r in range(first, last + 1)]
    if len(rows):
        rep = first + rows["replicate"].to_numpy(dtype=np.int64)
        rows = rows.drop(columns="replicate")
        rows.insert(0, "rep", rep)
        rows.insert(0, "condition", np.full(len(rows), c, dtype=np.int64))
    else:
        rows = empty_rows()
    return {"condition": c, "first": first, "last": last, "replicates": rows, "failures": failures_frame(failures)}


def _run_chunk(simulate: ChunkFn, plan: Any, c: int, stream: tuple[int, ...], first: int, last: int, seed: int,
               chunks_dir: str, write: str = "always", rows_back: bool = True) -> dict:
    """Compute reps first..last of condition c (compute_chunk) and write the chunk file (runs in a
    worker). write="if_shared": write only if this worker sees the run's manifest (a shared file
    system); the driver writes the chunks the workers could not. rows_back=False: a chunk written
    here comes back without its rows (replicates None), which the driver then reads from the file."""
    keep_freed_memory()
    one_blas_thread()
    payload = compute_chunk(simulate, plan, c, stream, first, last, seed)
    if write == "always" or (Path(chunks_dir) / MANIFEST_NAME).is_file():
        write_chunk(Path(chunks_dir), payload)
        if not rows_back:
            payload["replicates"] = None
    return payload

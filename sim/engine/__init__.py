"""Simulation engine: condition grids, per-replicate seeding, chunked parallel runs with resume."""

from .grid import conditions_frame, expand_grid
from .runner import (ChunkOutput, ReplicateFailure, RunResult, default_chunk_size, failure_reason, per_replicate,
                     run_chunks, run_experiment)
from .seeds import condition_stream, replicate_rng
from .lock import RunLock, RunLockedError
from .store import ChunkCorruptError, ManifestMismatchError

__all__ = [
    "expand_grid",
    "conditions_frame",
    "replicate_rng",
    "condition_stream",
    "run_experiment",
    "run_chunks",
    "per_replicate",
    "failure_reason",
    "ChunkOutput",
    "RunResult",
    "ReplicateFailure",
    "ManifestMismatchError",
    "ChunkCorruptError",
    "RunLock",
    "RunLockedError",
    "default_chunk_size",
]

"""How much disk a run will take, measured before it starts on a probe of four replicates.

A job's rows per replicate, and how well they compress, are known only by running it: the probe
computes the first four replicates of the first condition (the seeds of the real run; nothing is
written) and encodes them as a chunk. The bytes a replicate adds after the first with rows (which
carries the file's fixed overhead) times conditions x reps is the chunk files' size; replicates.parquet takes
about as much (it compresses better: the estimate errs on the safe side), and while the run
compacts both are on disk: the peak. Without kept replicates the peak is the chunks alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .chunk import ChunkFn, compute_chunk
from .store import encode_chunk

PROBE_REPS = 4


@dataclass(frozen=True)
class DiskEstimate:
    bytes_per_replicate: float  # one replicate's rows in a chunk file (compressed)
    replicates: int  # conditions x reps
    keep: bool  # replicates.parquet kept after the run

    @property
    def kept_bytes(self) -> float:
        return self.bytes_per_replicate * self.replicates if self.keep else 0.0

    @property
    def peak_bytes(self) -> float:
        return self.bytes_per_replicate * self.replicates * (2 if self.keep else 1)

    def line(self) -> str:
        kept = f"about {human(self.kept_bytes)} kept (replicates.parquet)" if self.keep else \
            "none kept (keep_replicates=false: summaries only)"
        return (f"disk: {human(self.bytes_per_replicate)} a replicate x {self.replicates:,} replicates: {kept}, "
                f"about {human(self.peak_bytes)} at most while it runs")


def human(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def estimate_disk(simulate: ChunkFn, plans: Sequence[Any], streams: Sequence[tuple[int, ...]], seed: int, reps: int,
                  keep: bool = True) -> DiskEstimate:
    """The disk a run of `reps` replicates of every condition takes, from a probe of the first
    condition's first replicates (computed here, in this process, and thrown away)."""
    k = min(PROBE_REPS, int(reps))
    payload = compute_chunk(simulate, plans[0], 0, tuple(streams[0]), 0, k - 1, int(seed))
    rows, fails = payload["replicates"], payload["failures"]

    def size(n: int) -> int:  # a chunk of the first n probe replicates
        return len(encode_chunk({**payload, "last": n - 1, "replicates": rows[rows["rep"] < n].reset_index(drop=True),
                                 "failures": fails[fails["rep"] < n]}))

    # the bytes the replicates after the first with rows add (the file's fixed overhead, its
    # schema and first pages, comes with the first rows); a probe too short for that: all of it
    reps_seen = sorted(set(rows["rep"].tolist()))
    j = reps_seen[0] + 1 if reps_seen else k
    per = (size(k) - size(j)) / (k - j) if k > j else (size(k) - size(0)) / k
    return DiskEstimate(bytes_per_replicate=float(max(per, 1)), replicates=len(plans) * int(reps), keep=keep)

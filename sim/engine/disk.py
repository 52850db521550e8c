"""How much disk a run will take, measured before it starts on a probe of a few replicates.

A job's rows per replicate, and how well they compress, are known only by running it: the probe
computes the first three replicates of the first, middle and last conditions (the seeds of the
real run; nothing is written) and encodes them as a chunk and as replicates.parquet. The bytes a
replicate adds after the first (which carries a file's fixed overhead), averaged over the probed
conditions, times conditions x reps is the chunk files' size and replicates.parquet's; while the
run compacts both are on disk: the peak. Without kept replicates the peak is the chunks alone.
replicates.parquet is packed (sim.engine.columnar: a replicate's repeated values once, rows
position-major), which saves more the more replicates it holds, so three replicates overstate
what it keeps: for the main job 31.5 MB estimated, 25.5 MB kept (MB = 10^6 bytes)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .chunk import ChunkFn, compute_chunk
from .columnar import write_frames
from .store import encode_chunk

PROBE_REPS = 3
PROBE_CONDITIONS = 3


@dataclass(frozen=True)
class DiskEstimate:
    bytes_per_replicate: float  # one replicate's rows in a chunk file (compressed)
    replicates: int  # conditions x reps
    keep: bool  # replicates.parquet kept after the run
    kept_per_replicate: float = 0.0  # one replicate's rows in replicates.parquet

    @property
    def kept_bytes(self) -> float:
        return self.kept_per_replicate * self.replicates if self.keep else 0.0

    @property
    def peak_bytes(self) -> float:
        return self.bytes_per_replicate * self.replicates + self.kept_bytes

    def line(self) -> str:
        kept = f"about {human(self.kept_bytes)} kept (replicates.parquet)" if self.keep else \
            "none kept (keep_replicates=false: summaries only)"
        return (f"disk: {self.replicates:,} replicates x {human(self.bytes_per_replicate)} in chunks: {kept}, "
                f"about {human(self.peak_bytes)} at most while it runs")


def human(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def _parquet_size(rows: pd.DataFrame) -> int:
    fh = io.BytesIO()
    write_frames(lambda: iter([rows]), fh)
    return len(fh.getvalue())


def _marginal(payload: dict, k: int) -> tuple[float, float]:
    """Bytes a replicate adds to a chunk file and to replicates.parquet (the replicates after the
    first with rows; a probe too short for that: all of them, less a file of no rows)."""
    rows, fails = payload["replicates"], payload["failures"]

    def part(n: int) -> dict:
        return {**payload, "last": n - 1, "replicates": rows[rows["rep"] < n].reset_index(drop=True),
                "failures": fails[fails["rep"] < n]}

    seen = sorted(set(rows["rep"].tolist()))
    j = seen[0] + 1 if seen else k
    if k <= j:
        j = 0
    chunk = (len(encode_chunk(part(k))) - len(encode_chunk(part(j)))) / (k - j)
    kept = (_parquet_size(part(k)["replicates"]) - _parquet_size(part(j)["replicates"])) / (k - j)
    return chunk, kept


def estimate_disk(simulate: ChunkFn, plans: Sequence[Any], streams: Sequence[tuple[int, ...]], seed: int, reps: int,
                  keep: bool = True) -> DiskEstimate:
    """The disk a run of `reps` replicates of every condition takes, from a probe of the first
    replicates of a few conditions (computed here, in this process, and thrown away)."""
    k = min(PROBE_REPS, int(reps))
    n = len(plans)
    probed = sorted({round(i * (n - 1) / max(PROBE_CONDITIONS - 1, 1)) for i in range(min(n, PROBE_CONDITIONS))})
    sizes = [_marginal(compute_chunk(simulate, plans[c], c, tuple(streams[c]), 0, k - 1, int(seed)), k) for c in probed]
    chunk = sum(s[0] for s in sizes) / len(sizes)
    kept = sum(s[1] for s in sizes) / len(sizes)
    return DiskEstimate(bytes_per_replicate=max(chunk, 1.0), replicates=n * int(reps), keep=keep,
                        kept_per_replicate=max(kept, 1.0))

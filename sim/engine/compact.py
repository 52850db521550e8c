"""A complete run's replicate rows in one file: `<out_dir>/replicates.parquet`.

While a run is incomplete its rows are in checksummed chunk files (sim.engine.store). When it
completes, `compact` stacks them, a condition at a time, into `replicates.parquet` (the rows with
the grid's label columns in front, packed: sim.engine.columnar, read back by sim.read_replicates),
records the file's SHA-256 and reps in the manifest (`complete`), and removes the chunk files:
from then on the file is the run's store. A re-run of the same command finds it complete and
recomputes nothing (`open_store` verifies the checksum and reads the rows back, a condition at a
time, value for value as the chunks held them); a larger reps computes only the new replicates
and compacts again. The file's Parquet metadata (b"sim") holds what reading back needs: the label
columns, each condition's columns and dtypes, and the failed replicates.

Order of the steps (a kill between any two loses no result): the new file replaces the old one
atomically, then the manifest records it, then the chunk files go. A file whose checksum the
manifest does not record is never read: those replicates are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pandas as pd

from .atomic import atomic_writer
from .columnar import read_frames, write_frames
from .store import (CORRUPT_SUFFIX, empty_rows, failures_frame, parse_chunk_filename, read_manifest,
                    write_manifest)

STORE_FILE = "replicates.parquet"
#: the format of the file's b"sim" metadata: 4 since the rows are packed (sim.engine.columnar), so
#: that an older sim, which would read packed rows as they are stored, refuses the file (and
#: recomputes) instead; 3 (rows as they are) is still read
STORE_FORMAT = 4
READ_FORMATS = (3, STORE_FORMAT)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class StoreFile:
    """The rows of a compacted run (`replicates.parquet`), read a condition at a time."""

    def __init__(self, path: Path, reps: int, n_chunks: int = 0):
        import pyarrow.parquet as pq

        self.path, self.reps, self.n_chunks = Path(path), int(reps), int(n_chunks)  # n_chunks: compacted into it
        pf = pq.ParquetFile(self.path)
        meta = json.loads((pf.metadata.metadata or {}).get(b"sim", b"{}"))
        if meta.get("format") not in READ_FORMATS:
            raise ValueError(f"{self.path} has no store metadata of format {' or '.join(map(str, READ_FORMATS))}")
        self.labels: list[str] = list(meta["labels"])
        self.columns: dict[int, dict[str, str]] = {int(c): dict(d) for c, d in meta["conditions"].items()}
        self.failures = failures_frame([(int(c), int(r), str(why)) for c, r, why in meta["failures"]])
        where = pf.schema_arrow.get_field_index("condition")
        self.row_groups: dict[int, list[int]] = {}
        for i in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(i).column(where).statistics
            self.row_groups.setdefault(int(stats.min), []).append(i)

    @property
    def conditions(self) -> list[int]:
        return sorted(self.columns)

    def rows(self, c: int) -> pd.DataFrame:
        """Condition c's rows as its chunks held them: its columns, in their order, with their dtypes."""
        import pyarrow.parquet as pq

        dtypes = self.columns[c]
        if not self.path.is_file():
            raise FileNotFoundError(f"the run's replicate rows are read from {self.path}, and it is gone: keep the "
                                    "run directory while its result is used")
        frame = read_frames(pq.ParquetFile(self.path), self.row_groups.get(c, []), columns=list(dtypes))
        wrong = {k: v for k, v in dtypes.items() if str(frame[k].dtype) != v}
        return frame.astype(wrong) if wrong else frame


def open_store(out_dir: Path, chunks_dir: Path) -> StoreFile | None:
    """The completed run's store recorded in the manifest, verified; None if there is none. A
    missing or damaged file is dropped from the manifest (with a warning, moved aside as
    `*.corrupt`): its replicates are recomputed, never trusted."""
    manifest = read_manifest(chunks_dir)
    rec = manifest.get("complete")
    if not rec:
        return None
    path = Path(out_dir) / rec["file"]
    why = None
    if not path.is_file():
        why = "is missing"
    elif _sha256(path) != rec["sha256"]:
        why = "does not match the checksum in the manifest (moved aside as *.corrupt)"
        os.replace(path, path.with_name(path.name + CORRUPT_SUFFIX))
    if why is None:
        try:
            return StoreFile(path, rec["reps"], rec.get("chunks", 0))
        except Exception as exc:  # noqa: BLE001 - unreadable: recompute
            why = f"cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    warnings.warn(f"{path} of the completed run {why}: recomputing its {rec['reps']} replicates per condition",
                  RuntimeWarning, stacklevel=3)
    write_manifest(chunks_dir, {k: v for k, v in manifest.items() if k != "complete"})
    return None


def compact(run, labels: pd.DataFrame | None = None) -> Path:
    """Stack the run's rows (store + chunk files) into `<out_dir>/replicates.parquet` with the
    `labels` columns (one row per condition, column `condition`) in front, record it in the
    manifest and remove the chunk files; the run then reads its rows from the file."""
    if run.out_dir is None:
        raise ValueError("compact: the run has no directory (its rows are in memory)")
    out_dir = Path(run.out_dir)
    chunks_dir = out_dir / "chunks"
    manifest = read_manifest(chunks_dir)
    label_cols = [c for c in (labels.columns if labels is not None else []) if c != "condition"]
    kinds: dict[str, dict[str, str]] = {}

    def frames():
        for rows in run.condition_replicates():
            c = int(rows["condition"].iloc[0])
            kinds[str(c)] = [[k, str(v)] for k, v in rows.dtypes.items()]  # a list: the columns' order
            yield labels.merge(rows, on="condition", how="right") if labels is not None else rows

    def metadata() -> dict:
        return {"format": STORE_FORMAT, "reps": int(manifest["reps"]), "labels": label_cols, "conditions": kinds,
                "failures": [[int(c), int(r), str(w)] for c, r, w in
                             zip(run.failures["condition"], run.failures["rep"], run.failures["reason"])]}


    path = out_dir / STORE_FILE
    with atomic_writer(path) as fh:
        if not write_frames(frames, fh, metadata=metadata):
            empty = labels.merge(empty_rows(), on="condition", how="right") if labels is not None else empty_rows()
            write_frames(lambda: iter([empty]), fh, metadata=metadata)
    n_chunks = (run.store.n_chunks if run.store is not None else 0) + len(run.chunk_files)
    record = {"reps": int(manifest["reps"]), "file": STORE_FILE, "sha256": _sha256(path), "bytes": path.stat().st_size,
              "chunks": n_chunks}
    write_manifest(chunks_dir, {**manifest, "complete": record})
    remove_chunks(chunks_dir)
    run.store, run.chunk_files = StoreFile(path, record["reps"], n_chunks), []
    return path


def remove_chunks(chunks_dir: Path) -> int:
    """Delete the chunk files of `chunks_dir` (not the manifest); how many there were."""
    n = 0
    for p in Path(chunks_dir).iterdir() if Path(chunks_dir).is_dir() else []:
        if parse_chunk_filename(p.name) is not None:
            p.unlink(missing_ok=True)
            n += 1
    return n

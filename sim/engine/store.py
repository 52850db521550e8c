"""On-disk chunk store: atomic chunk files plus a manifest, enabling resume.

Layout of ``out_dir/chunks/``::

    manifest.json                   seed, reps, conditions and their hash
    c0003_r000000-000099.pkl        pickled dict for condition 3, reps 0..99 (inclusive)

Chunk files are written to a hidden temp file in the same directory and then
``os.replace``-d, so a killed run never leaves a truncated chunk behind.

Resume rule (per-rep coverage): the manifest key is (format, seed, reps,
conditions hash) and does *not* include the chunk layout.  On resume every
chunk file whose name parses is loaded and the reps it covers are marked done;
only uncovered reps are recomputed, split into chunks of the current
``chunk_size``.  Resuming with a different ``chunk_size`` or ``n_jobs``
therefore works and gives the same table, because seeds are per (condition, rep).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MANIFEST_NAME",
    "ManifestMismatchError",
    "chunk_filename",
    "parse_chunk_filename",
    "conditions_hash",
    "build_manifest",
    "prepare_chunk_dir",
    "write_chunk",
    "read_chunk",
    "scan_chunks",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TMP_PREFIX = ".tmp-"
_CHUNK_RE = re.compile(r"^c(\d+)_r(\d+)-(\d+)\.pkl$")
# Fields that must agree for chunk files to be reused.
_KEY_FIELDS = ("format", "seed", "reps", "n_conditions", "conditions_hash", "fingerprint")


class ManifestMismatchError(ValueError):
    """The output directory holds results of a different experiment."""


def chunk_filename(condition: int, first_rep: int, last_rep: int) -> str:
    """File name for a chunk covering reps ``first_rep..last_rep`` inclusive."""
    return f"c{condition:04d}_r{first_rep:06d}-{last_rep:06d}.pkl"


def parse_chunk_filename(name: str) -> tuple[int, int, int] | None:
    """(condition, first_rep, last_rep) from a chunk file name, or None if not a chunk."""
    m = _CHUNK_RE.match(name)
    if m is None:
        return None
    c, first, last = (int(g) for g in m.groups())
    if last < first:
        return None
    return c, first, last


def _jsonable(value: Any) -> Any:
    """Canonical JSON form of config values (numpy scalars -> Python, else repr)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _canonical_conditions(conditions: Sequence[Mapping[str, Any]]) -> list:
    return [_jsonable(dict(c)) for c in conditions]


def conditions_hash(conditions: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of the conditions (key order irrelevant, list order relevant)."""
    text = json.dumps(_canonical_conditions(conditions), sort_keys=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_manifest(seed: int, reps: int, conditions: Sequence[Mapping[str, Any]], replicate_fn_name: str,
                   fingerprint: str = "") -> dict:
    """Manifest dict; ``replicate_fn`` is informational only (not part of the key). ``fingerprint``
    is the caller's digest of everything else the results depend on (full settings, code)."""
    return {
        "format": FORMAT_VERSION,
        "fingerprint": str(fingerprint),
        "seed": int(seed),
        "reps": int(reps),
        "n_conditions": len(conditions),
        "conditions_hash": conditions_hash(conditions),
        "replicate_fn": replicate_fn_name,
        "conditions": _canonical_conditions(conditions),
    }


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def prepare_chunk_dir(out_dir: Path, manifest: dict) -> Path:
    """Create ``out_dir/chunks``, check or write the manifest, drop stale temp files.

    Raises ManifestMismatchError if the directory belongs to another experiment,
    so results of different seeds/conditions are never mixed.
    """
    chunks_dir = Path(out_dir) / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    mpath = chunks_dir / MANIFEST_NAME
    if mpath.exists():
        try:
            existing = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestMismatchError(
                f"cannot read {mpath} ({exc}); choose another out_dir or delete {chunks_dir}"
            ) from exc
        diffs = [f for f in _KEY_FIELDS if existing.get(f) != manifest.get(f)]
        if diffs:
            detail = ", ".join(f"{f}: stored {existing.get(f)!r} vs requested {manifest.get(f)!r}" for f in diffs)
            raise ManifestMismatchError(
                f"out_dir {Path(out_dir)} already holds chunks of a different experiment ({detail}). "
                f"Choose another out_dir, or delete {chunks_dir} to start over; results are never mixed."
            )
    else:
        stray = [p.name for p in chunks_dir.iterdir() if parse_chunk_filename(p.name)]
        if stray:
            raise ManifestMismatchError(
                f"{chunks_dir} contains chunk files but no {MANIFEST_NAME}, so their provenance is unknown; "
                f"choose another out_dir or delete {chunks_dir}"
            )
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=True)
        _atomic_write_bytes(mpath, text.encode("utf-8"))
    # Temp files can only be left by a killed run; they are never valid results.
    for p in chunks_dir.iterdir():
        if p.name.startswith(TMP_PREFIX):
            try:
                p.unlink()
            except OSError:
                pass
    return chunks_dir


def write_chunk(chunks_dir: Path, payload: dict) -> Path:
    """Atomically pickle a chunk payload (keys condition, first, last, replicates, failures)."""
    path = Path(chunks_dir) / chunk_filename(payload["condition"], payload["first"], payload["last"])
    _atomic_write_bytes(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def read_chunk(path: Path) -> dict:
    """Load a chunk payload written by ``write_chunk``."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


def scan_chunks(chunks_dir: Path, n_conditions: int, reps: int) -> list[tuple[int, int, int, Path]]:
    """Usable chunk files as (condition, first, last, path), non-overlapping, sorted.

    Files out of range are ignored; if two files overlap (possible only after
    manual copying) the one found first in sorted order wins, with a warning.
    """
    found = []
    for p in Path(chunks_dir).iterdir():
        parsed = parse_chunk_filename(p.name)
        if parsed is None:
            continue
        c, first, last = parsed
        if c >= n_conditions or last >= reps:
            warnings.warn(f"ignoring chunk file {p.name}: outside {n_conditions} conditions x {reps} reps",
                          RuntimeWarning, stacklevel=2)
            continue
        found.append((c, first, last, p))
    found.sort(key=lambda t: (t[0], t[1], -t[2]))
    accepted: list[tuple[int, int, int, Path]] = []
    covered: dict[int, np.ndarray] = {}
    for c, first, last, p in found:
        cov = covered.setdefault(c, np.zeros(reps, dtype=bool))
        if cov[first:last + 1].any():
            warnings.warn(f"ignoring chunk file {p.name}: overlaps another chunk", RuntimeWarning, stacklevel=2)
            continue
        cov[first:last + 1] = True
        accepted.append((c, first, last, p))
    return accepted

"""On-disk chunk store: self-verifying chunk files plus a manifest, enabling resume.

Layout of ``out_dir/chunks/``::

    manifest.json                   seed, reps, conditions, their hashes, and a hash of itself;
                                    once the run is complete, its record ("complete")
    c0003_r000000-000099.chunk      chunk: condition 3, reps 0..99 (inclusive); format below
    c0003_r000100-000199.chunk.corrupt   a chunk that failed verification, moved aside (never read)

Chunk files exist only while a run is incomplete: when it completes, its rows are compacted into
``<out_dir>/replicates.parquet`` and the chunk files removed (``sim.engine.compact``).

Chunk file format (FORMAT_VERSION 3), all integers big-endian::

    offset  size  field
    0       8     magic b"SIMCHUNK"
    8       4     format version (uint32) = 3
    12      8     body length in bytes (uint64)
    20      32    SHA-256 of bytes 0..19 (magic, version, length) followed by the body
    52      n     body: Arrow IPC (zstd) of the chunk's rows; its metadata b"sim" (JSON) holds
                  condition, first, last and the failures [[rep, reason], ...]

``read_chunk`` checks the magic, the version, that the file is exactly 52 + n bytes long and the
digest *before* decoding, then that the payload's condition/first/last match the file name.
So any changed byte (header or body), a truncation, an empty file or appended bytes raise
``ChunkCorruptError`` (a ValueError naming the file), and the file is renamed to
``<name>.corrupt`` so it is not found again; the runner then recomputes those reps.

The manifest is JSON with a ``manifest_sha256`` field: SHA-256 of the canonical JSON (sorted
keys, no whitespace) of all other fields. A manifest that does not parse, is not an object, has
another format version, a wrong hash or different key fields raises a one-line
``ManifestMismatchError``; old-format (version 1, 2) directories are thus refused, not mixed.

Every file is written atomically (``atomic_write_bytes``: unique temp file, fsync, os.replace);
``prepare_chunk_dir`` deletes temp files left by dead writers. Whoever owns a run directory holds
``sim.engine.lock.RunLock(out_dir)`` around the whole run.

Resume rule (per-rep coverage): the manifest key is (format, seed, conditions hash, fingerprint),
neither the chunk layout nor ``reps``: replicate r of a condition is the same whatever reps, so
a larger ``reps`` tops a directory up (the manifest's ``reps`` grows) and a smaller one is
refused (one line naming ``reps``). On resume every chunk file is verified and its reps marked
done; only uncovered reps are recomputed, in chunks of the current ``chunk_size`` (any
``chunk_size`` or ``n_jobs`` gives the same table: seeds are per (condition, rep)).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import pandas as pd

from .atomic import TMP_PREFIX, atomic_write_bytes, atomic_write_text, atomic_writer
from .columnar import bytes_frame, frame_bytes
from .lock import pid_alive

__all__ = [
    "FORMAT_VERSION", "MANIFEST_NAME", "ManifestMismatchError", "ChunkCorruptError", "atomic_write_bytes",
    "atomic_write_text", "atomic_writer", "encode_chunk", "decode_chunk", "chunk_filename",
    "parse_chunk_filename", "conditions_hash", "build_manifest", "prepare_chunk_dir", "write_chunk",
    "read_chunk", "scan_chunks", "read_manifest", "write_manifest", "failures_frame"
]

FORMAT_VERSION = 3
MANIFEST_NAME = "manifest.json"
MANIFEST_HASH_FIELD = "manifest_sha256"
CORRUPT_SUFFIX = ".corrupt"
CHUNK_MAGIC = b"SIMCHUNK"
_HEADER = struct.Struct(">8sIQ")  # magic, format version, body length
_DIGEST_SIZE = 32
HEADER_SIZE = _HEADER.size + _DIGEST_SIZE  # 52
CHUNK_SUFFIX = ".chunk"
_CHUNK_RE = re.compile(r"^c(\d+)_r(\d+)-(\d+)\.chunk$")
_TMP_PID_RE = re.compile(r"^\.tmp-(\d+)-")
# Fields that must agree for chunk files to be reused.
_KEY_FIELDS = ("format", "seed", "n_conditions", "conditions_hash", "fingerprint")
FAILURE_COLUMNS = ["condition", "rep", "reason"]


class ManifestMismatchError(ValueError):
    """The output directory holds results of a different experiment (or an unreadable manifest)."""


class ChunkCorruptError(ValueError):
    """A chunk file failed verification (checksum, length, header or content); names the file."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"chunk file {self.path} is corrupt: {reason}")


def chunk_filename(condition: int, first_rep: int, last_rep: int) -> str:
    """File name for a chunk covering reps ``first_rep..last_rep`` inclusive."""
    return f"c{condition:04d}_r{first_rep:06d}-{last_rep:06d}{CHUNK_SUFFIX}"


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


# ---- manifest ------------------------------------------------------------------------------

def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical_json({k: v for k, v in manifest.items()
                                           if k != MANIFEST_HASH_FIELD})).hexdigest()


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_manifest(mpath: Path, chunks_dir: Path) -> dict:
    """The stored manifest, verified; any problem is a one-line ManifestMismatchError."""
    def bad(why: str) -> ManifestMismatchError:
        return ManifestMismatchError(f"{mpath} {why}; choose another out_dir, or delete {chunks_dir} to start over")

    try:
        raw = mpath.read_bytes()
    except OSError as exc:
        raise bad(f"cannot be read ({' '.join(str(exc).split())})") from exc
    try:
        existing = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise bad(f"is not valid JSON ({' '.join(str(exc).split())[:120]})") from exc
    if not isinstance(existing, dict):
        raise bad(f"is not a JSON object (found {type(existing).__name__})")
    if MANIFEST_HASH_FIELD in existing:
        try:
            digest_ok = existing[MANIFEST_HASH_FIELD] == _manifest_digest(existing)
        except (TypeError, ValueError, RecursionError):
            digest_ok = False
        if not digest_ok:
            raise bad(f"is corrupt ({MANIFEST_HASH_FIELD} does not match its content)")
    fmt = existing.get("format")
    if fmt != FORMAT_VERSION:
        raise bad(f"was written in store format {_short(fmt)}, this version reads only format {FORMAT_VERSION}")
    if MANIFEST_HASH_FIELD not in existing:
        raise bad(f"is corrupt (no {MANIFEST_HASH_FIELD})")
    return existing


def read_manifest(chunks_dir: Path) -> dict:
    """The stored, verified manifest of ``chunks_dir`` (ManifestMismatchError if unreadable)."""
    return _load_manifest(Path(chunks_dir) / MANIFEST_NAME, Path(chunks_dir))


def write_manifest(chunks_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest atomically with its hash (replacing the stored one)."""
    stored = {k: v for k, v in manifest.items() if k != MANIFEST_HASH_FIELD}
    stored[MANIFEST_HASH_FIELD] = _manifest_digest(stored)
    atomic_write_text(Path(chunks_dir) / MANIFEST_NAME, json.dumps(stored, indent=2, sort_keys=True, allow_nan=True) + "\n")


def prepare_chunk_dir(out_dir: Path, manifest: dict) -> Path:
    """Create ``out_dir/chunks``, check or write the manifest, drop stale temp files.

    Raises ManifestMismatchError (one line) if the directory belongs to another experiment or
    its manifest is unreadable or corrupt, so results of different seeds/conditions/store
    formats are never mixed. A larger ``reps`` than the stored one tops the run up (the stored
    reps grows, the completion record of the smaller run is kept: its replicates are reused); a
    smaller one is refused, naming ``reps``.
    """
    chunks_dir = Path(out_dir) / "chunks"
    chunks_dir.mkdir(parents=True, exist_ok=True)
    mpath = chunks_dir / MANIFEST_NAME
    if mpath.exists():
        existing = _load_manifest(mpath, chunks_dir)
        diffs = [f for f in _KEY_FIELDS if existing.get(f) != manifest.get(f)]
        if diffs:
            detail = ", ".join(f"{f}: stored {_short(existing.get(f))} vs requested {_short(manifest.get(f))}"
                               for f in diffs)
            raise ManifestMismatchError(
                f"out_dir {Path(out_dir)} already holds chunks of a different experiment ({detail}). "
                f"Choose another out_dir, or delete {chunks_dir} to start over; results are never mixed."
            )
        stored_reps, reps = int(existing.get("reps", 0)), int(manifest["reps"])
        if reps < stored_reps:
            raise ManifestMismatchError(
                f"reps: {Path(out_dir)} holds a run of reps={stored_reps}; ask for reps >= {stored_reps} there (a "
                f"larger reps adds replicates to it), or use another directory for reps={reps}")
        if reps > stored_reps:
            write_manifest(chunks_dir, {**existing, "reps": reps})
    else:
        stray = [p.name for p in chunks_dir.iterdir() if parse_chunk_filename(p.name)]
        if stray:
            raise ManifestMismatchError(
                f"{chunks_dir} contains chunk files but no {MANIFEST_NAME}, so their provenance is unknown; "
                f"choose another out_dir or delete {chunks_dir}"
            )
        write_manifest(chunks_dir, manifest)
    # Temp files are left only by a killed writer; they are never valid results. A temp file
    # whose writer is still running on this host (pid in its name) is left alone.
    for p in chunks_dir.iterdir():
        if not p.name.startswith(TMP_PREFIX):
            continue
        m = _TMP_PID_RE.match(p.name)
        if m and pid_alive(int(m.group(1))):
            continue
        try:
            p.unlink()
        except OSError:
            pass
    return chunks_dir


# ---- chunks --------------------------------------------------------------------------------

def failures_frame(failures: Sequence[tuple[int, int, str]]) -> pd.DataFrame:
    """The failures table (condition, rep, reason) of (condition, rep, reason) triples."""
    if not failures:
        return pd.DataFrame({"condition": pd.Series([], dtype="int64"), "rep": pd.Series([], dtype="int64"),
                             "reason": pd.Series([], dtype="object")})
    return pd.DataFrame(list(failures), columns=FAILURE_COLUMNS).astype({"condition": "int64", "rep": "int64"})


def encode_chunk(payload: dict) -> bytes:
    """The bytes of a chunk file: 52-byte header (magic, version, length, SHA-256) + Arrow IPC body."""
    fails = payload["failures"]
    meta = {"condition": int(payload["condition"]), "first": int(payload["first"]), "last": int(payload["last"]),
            "failures": [[int(r), str(why)] for r, why in zip(fails["rep"], fails["reason"])],
            "reason_dtype": str(fails["reason"].dtype)}
    body = frame_bytes(payload["replicates"], meta)
    head = _HEADER.pack(CHUNK_MAGIC, FORMAT_VERSION, len(body))
    return head + hashlib.sha256(head + body).digest() + body


def decode_chunk(data: bytes, path: Path | str = "<bytes>") -> dict:
    """Verify and decode chunk-file bytes; ChunkCorruptError (naming ``path``) if anything is off."""
    if len(data) < HEADER_SIZE:
        raise ChunkCorruptError(path, f"{len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    head = data[:_HEADER.size]
    magic, version, length = _HEADER.unpack(head)
    if magic != CHUNK_MAGIC:
        raise ChunkCorruptError(path, f"bad magic {magic!r} (not a format-{FORMAT_VERSION} chunk file)")
    if version != FORMAT_VERSION:
        raise ChunkCorruptError(path, f"format version {version}, expected {FORMAT_VERSION}")
    if len(data) != HEADER_SIZE + length:
        raise ChunkCorruptError(path, f"{len(data)} bytes, header says {HEADER_SIZE + length} "
                                      f"({'truncated' if len(data) < HEADER_SIZE + length else 'extra bytes'})")
    body = data[HEADER_SIZE:]
    if hashlib.sha256(head + body).digest() != data[_HEADER.size:HEADER_SIZE]:
        raise ChunkCorruptError(path, "SHA-256 checksum mismatch")
    try:
        rows, meta = bytes_frame(body)
        c = int(meta["condition"])
        fails = failures_frame([(c, int(r), str(why)) for r, why in meta["failures"]])
        if str(fails["reason"].dtype) != meta.get("reason_dtype", str(fails["reason"].dtype)):
            fails = fails.astype({"reason": meta["reason_dtype"]})
        payload = {"condition": c, "first": int(meta["first"]), "last": int(meta["last"]), "replicates": rows,
                   "failures": fails}
    except Exception as exc:  # noqa: BLE001 - e.g. written by an incompatible pyarrow
        raise ChunkCorruptError(path, f"checksum ok but cannot decode ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]})") from exc
    return payload


def write_chunk(chunks_dir: Path, payload: dict) -> Path:
    """Atomically write a checksummed chunk (payload keys condition, first, last, replicates, failures)."""
    path = Path(chunks_dir) / chunk_filename(payload["condition"], payload["first"], payload["last"])
    atomic_write_bytes(path, encode_chunk(payload))
    return path


def read_chunk(path: Path, quarantine: bool = True) -> dict:
    """Load and verify a chunk written by ``write_chunk``.

    Raises ChunkCorruptError if the checksum, length or header do not verify, or the payload's
    condition/reps disagree with the file name; with ``quarantine`` the file is first renamed to
    ``<name>.corrupt`` (replacing an older one) so later scans do not find it. OSErrors (missing
    file, permissions) propagate unchanged.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        payload = decode_chunk(data, path)
        parsed = parse_chunk_filename(path.name)
        if parsed is not None:
            try:
                held = (int(payload["condition"]), int(payload["first"]), int(payload["last"]))
            except (TypeError, ValueError):
                held = None
            if held != parsed:
                raise ChunkCorruptError(path, f"holds (condition, first, last) {held}, its name says {parsed}")
    except ChunkCorruptError as exc:
        if quarantine:
            aside = path.with_name(path.name + CORRUPT_SUFFIX)
            try:
                os.replace(path, aside)
                exc.args = (f"{exc.args[0]} (moved aside to {aside.name})",)
            except OSError:
                pass
        raise
    return payload


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


def empty_rows() -> pd.DataFrame:
    """The replicate rows of a chunk or a run without any: the two key columns, typed."""
    return pd.DataFrame({"condition": pd.Series([], dtype="int64"), "rep": pd.Series([], dtype="int64")})

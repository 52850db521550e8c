"""On-disk chunk store: self-verifying chunk files plus a manifest, enabling resume.

Layout of ``out_dir/chunks/``::

    manifest.json                   seed, reps, conditions, their hashes, and a hash of itself
    c0003_r000000-000099.pkl        chunk: condition 3, reps 0..99 (inclusive); format below
    c0003_r000100-000199.pkl.corrupt   a chunk that failed verification, moved aside (never read)

Chunk file format (FORMAT_VERSION 2), all integers big-endian::

    offset  size  field
    0       8     magic b"SIMCHUNK"
    8       4     format version (uint32) = 2
    12      8     body length in bytes (uint64)
    20      32    SHA-256 of bytes 0..19 (magic, version, length) followed by the body
    52      n     body: pickle of the payload dict (condition, first, last, replicates, failures)

``read_chunk`` checks the magic, the version, that the file is exactly 52 + n bytes long and the
digest *before* unpickling, then that the payload's condition/first/last match the file name.
So any changed byte (header or body), a truncation, an empty file or appended bytes raise
``ChunkCorruptError`` (a ValueError naming the file), and the file is renamed to
``<name>.corrupt`` so it is not found again; the runner then recomputes those reps.

The manifest is JSON with a ``manifest_sha256`` field: SHA-256 of the canonical JSON (sorted
keys, no whitespace) of all other fields. A manifest that does not parse, is not an object, has
another format version, a wrong hash or different key fields raises a one-line
``ManifestMismatchError``; old-format (version 1) directories are thus refused, not mixed.

Every file is written through ``atomic_write_bytes``: a uniquely named temp file
``.tmp-<pid>-<name>.<random>.part`` in the same directory, fsync-ed, then ``os.replace``-d (and the
directory fsync-ed), so a killed run never leaves a truncated file and concurrent writers never
collide; the temp file is removed on failure. ``prepare_chunk_dir`` deletes leftover temp files
in ``chunks/`` unless their pid is still running on this host. Two runs must still not share a
run directory: whoever owns it holds ``sim.engine.lock.RunLock(out_dir)`` around the whole run.

Resume rule (per-rep coverage): the manifest key is (format, seed, reps, conditions hash,
fingerprint) and does *not* include the chunk layout.  On resume every chunk file whose name
parses is verified and loaded and the reps it covers are marked done; only uncovered reps
(including those of corrupt chunks) are recomputed, split into chunks of the current
``chunk_size``.  Resuming with a different ``chunk_size`` or ``n_jobs`` therefore works and gives
the same table, because seeds are per (condition, rep).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import TMP_PREFIX, atomic_write_bytes, atomic_write_text, atomic_writer
from .lock import pid_alive

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ManifestMismatchError",
    "ChunkCorruptError",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "encode_chunk",
    "decode_chunk",
    "chunk_filename",
    "parse_chunk_filename",
    "conditions_hash",
    "build_manifest",
    "prepare_chunk_dir",
    "write_chunk",
    "read_chunk",
    "scan_chunks",
]

FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"
MANIFEST_HASH_FIELD = "manifest_sha256"
CORRUPT_SUFFIX = ".corrupt"
CHUNK_MAGIC = b"SIMCHUNK"
_HEADER = struct.Struct(">8sIQ")  # magic, format version, body length
_DIGEST_SIZE = 32
HEADER_SIZE = _HEADER.size + _DIGEST_SIZE  # 52
_CHUNK_RE = re.compile(r"^c(\d+)_r(\d+)-(\d+)\.pkl$")
_TMP_PID_RE = re.compile(r"^\.tmp-(\d+)-")
# Fields that must agree for chunk files to be reused.
_KEY_FIELDS = ("format", "seed", "reps", "n_conditions", "conditions_hash", "fingerprint")


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


def prepare_chunk_dir(out_dir: Path, manifest: dict) -> Path:
    """Create ``out_dir/chunks``, check or write the manifest, drop stale temp files.

    Raises ManifestMismatchError (one line) if the directory belongs to another experiment or
    its manifest is unreadable or corrupt, so results of different seeds/conditions/store
    formats are never mixed.
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
    else:
        stray = [p.name for p in chunks_dir.iterdir() if parse_chunk_filename(p.name)]
        if stray:
            raise ManifestMismatchError(
                f"{chunks_dir} contains chunk files but no {MANIFEST_NAME}, so their provenance is unknown; "
                f"choose another out_dir or delete {chunks_dir}"
            )
        stored = {k: v for k, v in manifest.items() if k != MANIFEST_HASH_FIELD}
        stored[MANIFEST_HASH_FIELD] = _manifest_digest(stored)
        atomic_write_text(mpath, json.dumps(stored, indent=2, sort_keys=True, allow_nan=True) + "\n")
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

def encode_chunk(payload: dict) -> bytes:
    """The bytes of a chunk file: 52-byte header (magic, version, length, SHA-256) + pickled payload."""
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    head = _HEADER.pack(CHUNK_MAGIC, FORMAT_VERSION, len(body))
    return head + hashlib.sha256(head + body).digest() + body


def decode_chunk(data: bytes, path: Path | str = "<bytes>") -> dict:
    """Verify and unpickle chunk-file bytes; ChunkCorruptError (naming ``path``) if anything is off."""
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
        payload = pickle.loads(body)
    except Exception as exc:  # noqa: BLE001 - e.g. written by an incompatible pandas
        raise ChunkCorruptError(path, f"checksum ok but cannot unpickle ({type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(payload, dict) or not {"condition", "first", "last", "replicates", "failures"} <= payload.keys():
        raise ChunkCorruptError(path, "payload is not a chunk dict")
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

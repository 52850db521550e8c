"""Tests for sim.engine.store (checksummed chunks, verified manifest, atomic writes) and
sim.engine.lock (run-directory lock)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.engine import ManifestMismatchError, run_experiment
from sim.engine import lock as lockmod
from sim.engine.lock import LOCK_NAME, RunLock, RunLockedError, StaleLockWarning
from sim.engine.store import (CORRUPT_SUFFIX, FORMAT_VERSION, HEADER_SIZE, MANIFEST_NAME, ChunkCorruptError,
                              atomic_write_bytes, atomic_write_text, atomic_writer, build_manifest, chunk_filename,
                              parse_chunk_filename, prepare_chunk_dir, read_chunk, write_chunk)

LOCK_PY = Path(lockmod.__file__)


def small_payload(condition=1, first=0, last=1):
    return {"condition": condition, "first": first, "last": last,
            "replicates": pd.DataFrame({"condition": np.full(2, condition, dtype="int64"),
                                        "rep": np.array([first, last], dtype="int64"),
                                        "analysis": ["mean", "median"], "estimate": [0.5, -1.25]}),
            "failures": pd.DataFrame({"condition": pd.Series([condition], dtype="int64"),
                                      "rep": pd.Series([last], dtype="int64"),
                                      "reason": pd.Series(["ReplicateFailure: x"], dtype="object")})}


def assert_payload_equal(got, want):
    assert {k: got[k] for k in ("condition", "first", "last")} == {k: want[k] for k in ("condition", "first", "last")}
    pd.testing.assert_frame_equal(got["replicates"], want["replicates"])
    pd.testing.assert_frame_equal(got["failures"], want["failures"])


@pytest.fixture(scope="module")
def chunk_bytes(tmp_path_factory):
    """Bytes of one real, small chunk file (about 1.3 kB)."""
    d = tmp_path_factory.mktemp("chunk")
    return write_chunk(d, small_payload()).read_bytes()


@pytest.fixture
def scratch(tmp_path):
    """A directory for tests that rewrite a file thousands of times: tmpfs when available, since
    truncate-and-rewrite on a busy ext4 is ~100x slower."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="sim-test-store-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def assert_corrupt(path: Path, data: bytes):
    path.write_bytes(data)
    with pytest.raises(ChunkCorruptError) as info:
        read_chunk(path, quarantine=False)
    assert path.name in str(info.value) and "\n" not in str(info.value)


# ---- chunks -------------------------------------------------------------------------------

def test_chunk_round_trip_and_header(tmp_path):
    payload = small_payload(3, 10, 11)
    path = write_chunk(tmp_path, payload)
    assert path.name == chunk_filename(3, 10, 11)
    assert_payload_equal(read_chunk(path), payload)
    data = path.read_bytes()
    assert data[:8] == b"SIMCHUNK" and int.from_bytes(data[8:12], "big") == FORMAT_VERSION == 3
    assert int.from_bytes(data[12:20], "big") == len(data) - HEADER_SIZE
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp file left


def test_every_single_byte_change_is_detected(scratch, chunk_bytes):
    path = scratch / chunk_filename(1, 0, 1)
    assert_payload_equal(read_chunk(_write(path, chunk_bytes)), small_payload())
    for i in range(len(chunk_bytes)):
        for new in (chunk_bytes[i] ^ 0xFF, chunk_bytes[i] ^ 0x01):
            bad = bytearray(chunk_bytes)
            bad[i] = new
            path.write_bytes(bad)
            with pytest.raises(ChunkCorruptError):
                read_chunk(path, quarantine=False)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_empty_truncated_appended_and_old_format_chunks(tmp_path, chunk_bytes):
    import pickle

    path = tmp_path / chunk_filename(1, 0, 1)
    for data in (b"", chunk_bytes[:HEADER_SIZE], chunk_bytes[:-1], chunk_bytes + b"\0", chunk_bytes + chunk_bytes,
                 pickle.dumps(small_payload())):  # the last one: a format-1 chunk (bare pickle)
        assert_corrupt(path, data)


def test_corrupt_chunk_is_moved_aside(tmp_path, chunk_bytes):
    path = tmp_path / chunk_filename(1, 0, 1)
    bad = bytearray(chunk_bytes)
    bad[len(bad) // 2: len(bad) // 2 + 16] = b"\x00" * 16  # the user report: 16 bytes overwritten mid-file
    path.write_bytes(bad)
    with pytest.raises(ChunkCorruptError, match=r"c0001_r000000-000001\.chunk.*checksum.*moved aside"):
        read_chunk(path)
    assert not path.exists()
    aside = tmp_path / (path.name + CORRUPT_SUFFIX)
    assert aside.read_bytes() == bytes(bad) and parse_chunk_filename(aside.name) is None


def test_renamed_chunk_is_refused(tmp_path, chunk_bytes):
    """A valid chunk under another chunk's name would put its rows under the wrong reps."""
    path = _write(tmp_path / chunk_filename(1, 2, 3), chunk_bytes)
    with pytest.raises(ChunkCorruptError, match="name says"):
        read_chunk(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruptions_are_detected(scratch, chunk_bytes, data):
    path = scratch / chunk_filename(1, 0, 1)  # rewritten by every example
    kind = data.draw(st.sampled_from(["replace", "truncate", "append", "splice"]))
    if kind == "replace":
        i = data.draw(st.integers(0, len(chunk_bytes) - 1))
        new = data.draw(st.integers(0, 255).filter(lambda b: b != chunk_bytes[i]))
        bad = chunk_bytes[:i] + bytes([new]) + chunk_bytes[i + 1:]
    elif kind == "truncate":
        bad = chunk_bytes[:data.draw(st.integers(0, len(chunk_bytes) - 1))]
    elif kind == "append":
        bad = chunk_bytes + data.draw(st.binary(min_size=1, max_size=64))
    else:  # overwrite a run of bytes with different content
        i = data.draw(st.integers(0, len(chunk_bytes) - 1))
        junk = data.draw(st.binary(min_size=1, max_size=32))
        bad = chunk_bytes[:i] + junk + chunk_bytes[i + len(junk):]
        if bad == chunk_bytes:
            return
    assert_corrupt(path, bad)


# ---- end to end through the runner ----------------------------------------------------------

def tiny_replicate(condition, rng):
    u = rng.uniform()
    if u < 0.3:
        raise ValueError("unlucky")
    return pd.DataFrame({"estimate": [rng.normal(condition["mu"]), u], "k": rng.integers(0, 100, size=2)})


CONDS = [{"mu": 0.0}, {"mu": 1.0}]
ARGS = dict(conditions=CONDS, reps=6, seed=3, n_jobs=1, chunk_size=2, progress=False)


def _chunks(out: Path) -> list[Path]:
    return sorted(p for p in (out / "chunks").iterdir() if parse_chunk_filename(p.name))


@pytest.mark.parametrize("which", ["all", "one-16-bytes"])
def test_resume_recomputes_corrupt_chunks(tmp_path, which):
    ref = run_experiment(tiny_replicate, out_dir=tmp_path / "ref", **ARGS)
    assert len(ref.failures) > 0  # failures travel through the chunks too
    out = tmp_path / "run"
    run_experiment(tiny_replicate, out_dir=out, **ARGS)
    chunks = _chunks(out)
    assert len(chunks) == 6
    rng = np.random.default_rng(20251127)
    victims = chunks if which == "all" else chunks[2:3]
    for p in victims:
        data = bytearray(p.read_bytes())
        if which == "all":
            i = int(rng.integers(len(data)))
            data[i] ^= int(rng.integers(1, 256))
        else:
            mid = len(data) // 2
            data[mid:mid + 16] = bytes(16)
        p.write_bytes(data)
    with pytest.warns(RuntimeWarning) as record:
        res = run_experiment(tiny_replicate, out_dir=out, **ARGS)
    recomputed = sorted(m for p in victims for m in map(str, (w.message for w in record))
                        if "recomputing unreadable chunk" in m and p.name in m)
    assert len(recomputed) == len(victims)
    assert res.n_computed_chunks == len(victims) and res.n_resumed_chunks == 6 - len(victims)
    pd.testing.assert_frame_equal(res.replicates, ref.replicates)
    pd.testing.assert_frame_equal(res.failures, ref.failures)
    assert sorted(p.name for p in (out / "chunks").glob("*" + CORRUPT_SUFFIX)) == \
        sorted(p.name + CORRUPT_SUFFIX for p in victims)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = run_experiment(tiny_replicate, out_dir=out, **ARGS)
    assert again.n_computed_chunks == 0 and again.n_resumed_chunks == 6
    pd.testing.assert_frame_equal(again.replicates, ref.replicates)


# ---- manifest ---------------------------------------------------------------------------------

def _manifest():
    return build_manifest(7, 4, [{"mu": 0.0, "kind": "a"}, {"mu": float("nan"), "kind": "b"}], "mod.fn", "fp")


def _assert_refused(out: Path, manifest: dict, match: str = "") -> None:
    with pytest.raises(ManifestMismatchError, match=match) as info:
        prepare_chunk_dir(out, manifest)
    assert "\n" not in str(info.value)


def test_manifest_is_hashed_and_accepted_again(tmp_path):
    chunks = prepare_chunk_dir(tmp_path, _manifest())
    stored = json.loads((chunks / MANIFEST_NAME).read_text())
    assert stored["format"] == FORMAT_VERSION and len(stored["manifest_sha256"]) == 64
    assert prepare_chunk_dir(tmp_path, _manifest()) == chunks
    assert os.listdir(chunks) == [MANIFEST_NAME]


def test_garbled_manifest_always_one_line_mismatch(scratch):
    """Every single-byte change and every truncation: refused with a one-line
    ManifestMismatchError, unless the JSON content is unchanged (e.g. whitespace)."""
    manifest = _manifest()
    mpath = prepare_chunk_dir(scratch, manifest) / MANIFEST_NAME
    good = mpath.read_bytes()
    original = json.loads(good)
    refused = 0
    variants = [good[:n] for n in range(len(good) - 1)]  # dropping only the final newline is harmless
    for i in range(len(good)):
        for new in {good[i] ^ 0xFF, ord("0"), ord(" ")} - {good[i]}:
            variants.append(good[:i] + bytes([new]) + good[i + 1:])
    for bad in variants:
        mpath.write_bytes(bad)
        try:
            prepare_chunk_dir(scratch, manifest)
        except ManifestMismatchError as exc:
            assert "\n" not in str(exc) and MANIFEST_NAME in str(exc)
            refused += 1
        else:
            assert json.loads(bad) == original
    assert refused > 0.8 * len(variants)


@pytest.mark.parametrize("text,match", [
    ("", "not valid JSON"), ("[]", "not a JSON object"), ("null", "not a JSON object"),
    ("[" * 100_000, "not valid JSON"), ("\xff\xfe", "not valid JSON"),
    ('{"format": 1, "seed": 7}', "format 1"),  # an old-format directory
])
def test_bad_manifest_contents(tmp_path, text, match):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    (chunks / MANIFEST_NAME).write_bytes(text.encode("latin-1"))
    _assert_refused(tmp_path, _manifest(), match)


def test_edited_manifest_is_corrupt_and_other_experiment_mismatch(tmp_path):
    mpath = prepare_chunk_dir(tmp_path, _manifest()) / MANIFEST_NAME
    good = mpath.read_text()
    stored = json.loads(good)
    stored["seed"] = 8  # hand-edited without updating the hash
    mpath.write_text(json.dumps(stored))
    _assert_refused(tmp_path, _manifest(), "corrupt")
    del stored["manifest_sha256"]
    mpath.write_text(json.dumps(stored))
    _assert_refused(tmp_path, _manifest(), "corrupt")
    mpath.write_text(good)
    _assert_refused(tmp_path, build_manifest(8, 4, _manifest()["conditions"], "mod.fn", "fp"), "seed")


def test_temp_files_of_dead_writers_removed_live_kept(tmp_path):
    chunks = prepare_chunk_dir(tmp_path, _manifest())
    dead = _dead_pid()
    live = chunks / f".tmp-{os.getpid()}-c0000_r000000-000001.chunk.abc.part"
    stale = [chunks / f".tmp-{dead}-c0000_r000000-000001.chunk.abc.part", chunks / ".tmp-stale.part"]
    for p in [live, *stale]:
        p.write_bytes(b"partial")
    prepare_chunk_dir(tmp_path, _manifest())
    assert live.exists() and not any(p.exists() for p in stale)


# ---- atomic writes ---------------------------------------------------------------------------

def test_atomic_write_concurrent_writers(tmp_path):
    path = tmp_path / "summary.csv"
    texts = ["a,b\n" + "1,2\n" * 20_000, "a,b\n" + "3,4\n" * 5_000]
    errors, seen = [], set()
    stop = threading.Event()

    def writer(text):
        try:
            for _ in range(40):
                atomic_write_text(path, text)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader():
        while not stop.is_set():
            if path.exists():
                seen.add(path.read_text())

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    r.join(30)
    assert not errors
    assert path.read_text() in texts and seen <= set(texts)
    assert os.listdir(tmp_path) == ["summary.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_writer_failure_leaves_target_and_no_temp(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_bytes(path, b"old")
    with pytest.raises(ZeroDivisionError):
        with atomic_writer(path) as fh:
            fh.write(b"half")
            1 / 0
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["report.md"]
    df = pd.DataFrame({"x": [1, 2]})
    with atomic_writer(tmp_path / "r.csv.gz") as fh:
        df.to_csv(fh, index=False, compression="gzip")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r.csv.gz"), df)


# ---- run lock ----------------------------------------------------------------------------------

def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run_dir: Path, **fields) -> Path:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2025-01-01T00:00:00+00:00",
            "argv": ["x"], "token": "t"}
    info.update(fields)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps(info))
    return path


def test_lock_held_refuses_second_and_is_released(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RunLock(tmp_path) as held:
            info = json.loads((tmp_path / LOCK_NAME).read_text())
            assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
            assert info["argv"] == sys.argv and info["started"][:4].isdigit()
            with pytest.raises(RunLockedError) as exc:
                RunLock(tmp_path).acquire()
            msg = str(exc.value)
            assert "\n" not in msg and str(tmp_path / LOCK_NAME) in msg and f"pid {os.getpid()}" in msg
            assert info["started"] in msg and "hydra.run.dir" in msg
            assert held.held
        assert not (tmp_path / LOCK_NAME).exists()
        with RunLock(tmp_path):  # free again
            pass
    assert os.listdir(tmp_path) == []


def test_lock_with_dead_pid_is_taken_over(tmp_path):
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    with pytest.warns(StaleLockWarning, match=f"pid {dead} is no longer running"):
        with RunLock(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("content", [b"", b"   \n", b'{"pid": 12', b"\x00" * 40, b"[1, 2]", b'{"pid": -1, "host": "h"}'])
def test_garbled_lock_is_taken_over(tmp_path, content):
    (tmp_path / LOCK_NAME).write_bytes(content)
    with pytest.warns(StaleLockWarning, match="taking over stale run lock"):
        with RunLock(tmp_path):
            assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.skipif(lockmod._proc_start(os.getpid()) is None, reason="needs /proc")
def test_recycled_pid_or_reboot_is_stale(tmp_path):
    _write_lock(tmp_path, proc_start=lockmod._proc_start(os.getpid()) + 1)  # our pid, but "another process"
    with pytest.warns(StaleLockWarning, match="another process"):
        RunLock(tmp_path).acquire().release()
    _write_lock(tmp_path, boot_id="not-this-boot")
    with pytest.warns(StaleLockWarning, match="rebooted"):
        RunLock(tmp_path).acquire().release()


def test_lock_from_other_host_is_refused(tmp_path):
    path = _write_lock(tmp_path, host="some-other-host", pid=_dead_pid())
    with pytest.raises(RunLockedError, match="some-other-host") as exc:
        RunLock(tmp_path).acquire()
    assert f"delete {path}" in str(exc.value) and "\n" not in str(exc.value)
    assert json.loads(path.read_text())["host"] == "some-other-host"  # untouched


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = RunLock(tmp_path).acquire()
    _write_lock(tmp_path, token="someone-else")
    with pytest.warns(StaleLockWarning, match="replaced"):
        lock.release()
    assert (tmp_path / LOCK_NAME).exists()


_RACER = r"""
import importlib.util, sys, time, warnings
from pathlib import Path
spec = importlib.util.spec_from_file_location("racelock", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
run_dir, sync, i = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
if sys.argv[5] == "noflock":
    mod.fcntl = None
(sync / f"ready-{i}").touch()
t0 = time.monotonic()
while not (sync / "go").exists() and time.monotonic() - t0 < 20:
    time.sleep(0.001)
warnings.simplefilter("ignore")
try:
    lock = mod.RunLock(run_dir).acquire()
except mod.RunLockedError as exc:
    print("lost", exc, flush=True)
    sys.exit(0)
print("won", flush=True)
while not (sync / "release").exists() and time.monotonic() - t0 < 20:
    time.sleep(0.005)
lock.release()
"""


@pytest.mark.parametrize("start,guard", [("free", "flock"), ("stale", "flock"), ("free", "noflock")])
def test_racing_processes_exactly_one_wins(tmp_path, start, guard):
    n = 4
    run_dir, sync = tmp_path / "run", tmp_path / "sync"
    run_dir.mkdir()
    sync.mkdir()
    if start == "stale":
        _write_lock(run_dir, pid=_dead_pid())
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(LOCK_PY), str(run_dir), str(sync), str(i), guard],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        deadline = time.monotonic() + 20
        while len(list(sync.glob("ready-*"))) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        (sync / "go").touch()
        while sum(p.poll() is not None for p in procs) < n - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        (sync / "release").touch()
        outs = [p.communicate(timeout=20) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    results = [out.split()[0] for out, _ in outs]
    assert results.count("won") == 1 and results.count("lost") == n - 1, outs
    winner = procs[results.index("won")].pid
    assert all(f"pid {winner}" in out for out, _ in outs if out.startswith("lost"))
    assert not (run_dir / LOCK_NAME).exists()

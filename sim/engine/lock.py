"""Run-directory lock: at most one run writes into a run directory at a time.

``with RunLock(run_dir): ...`` creates ``run_dir/.lock`` atomically (``O_CREAT|O_EXCL``) holding
one line of JSON::

    {"pid": 4242, "host": "node7", "started": "2025-11-27T15:47:03+01:00", "argv": [...],
     "token": "<random hex>", "boot_id": "<kernel boot id>", "proc_start": 123456}

``pid``, ``host``, ``started`` (ISO 8601, local time with offset) and ``argv`` are for people;
``token`` identifies this lock instance (release removes the file only if it still holds our
token, and only in the process that took it, never in a forked child); ``boot_id`` and
``proc_start`` (Linux only, else null) let a later run tell a dead holder from a recycled pid.

If ``.lock`` already exists:

* holder on this host (``socket.gethostname()``) and still running -> ``RunLockedError``, a
  one-line message naming the lock file, the pid and when it started;
* holder on this host but gone -> the lock is stale and is taken over with a one-line
  ``StaleLockWarning``. Gone means: ``os.kill(pid, 0)`` raises ``ProcessLookupError``, or the
  machine rebooted since (``boot_id`` differs), or the pid now belongs to a younger process
  (``proc_start`` differs);
* the file is empty, unreadable or not a lock record (a crash while writing it, or damage)
  -> stale, taken over with a warning;
* holder on another host -> refused (whether it is alive cannot be checked from here, and no
  age limit is guessed); the message says to delete the lock file if that run is gone.

Race safety: every acquire and release runs inside a short critical section, an exclusive
``flock`` on the run directory itself (released by the kernel if the process dies, so it can
never go stale); the lock file is still created with ``O_EXCL``. So when several processes race
for a free or stale lock, exactly one wins and the others get ``RunLockedError`` naming the
winner. Where ``flock`` is unavailable (e.g. some network file systems) the ``O_EXCL`` create
alone decides, a freshly created but still empty lock file is given ``EMPTY_GRACE`` seconds to
be filled before it counts as garbled, and a stale lock is removed only if its content is
unchanged since it was judged stale (best effort: a window of microseconds remains between that
check and the removal).

The lock is advisory: it protects runs that use it (hold it around a whole run), not
against other programs writing into the directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

try:  # POSIX only; without it the O_EXCL create alone provides exclusion
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "StaleLockWarning", "pid_alive", "read_lock_info"]

LOCK_NAME = ".lock"
GUARD_TIMEOUT = 10.0  # seconds to wait for another process's acquire/release critical section
EMPTY_GRACE = 2.0  # seconds a new lock file may be empty/partial before it counts as garbled (no flock)
_MAX_LOCK_BYTES = 1 << 16


class RunLockedError(RuntimeError):
    """The run directory is locked by another run (message: one line, says what to do)."""


class StaleLockWarning(RuntimeWarning):
    """A stale run-directory lock (dead holder, or garbled lock file) was taken over."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a process of another user counts)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # unknown: err on the side of "alive" (never steal a live lock)
    return True


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _oneline(value: Any, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_lock_info(path: Path) -> tuple[dict | None, str | None, bytes | None]:
    """(info, problem, raw) for a lock file: info is the parsed record or None; problem says why
    it is unusable ("missing", "empty", "not valid JSON", ...); raw is the file content."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_LOCK_BYTES + 1)
    except FileNotFoundError:
        return None, "missing", None
    except OSError as exc:
        return None, f"unreadable ({_oneline(exc)})", None
    if not raw.strip():
        return None, "empty", raw
    if len(raw) > _MAX_LOCK_BYTES:
        return None, "too large to be a lock record", raw
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None, "not valid JSON", raw
    if not isinstance(info, dict):
        return None, "not a JSON object", raw
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None, "without a valid pid", raw
    if not isinstance(info.get("host"), str) or not info["host"]:
        return None, "without a host", raw
    return info, None, raw


class RunLock:
    """Exclusive lock on a run directory; a context manager (see the module docstring).

    ``RunLock(run_dir)`` creates ``run_dir`` if needed; ``acquire()`` raises ``RunLockedError``
    if another live run holds it, and takes over stale locks with a ``StaleLockWarning``.
    """

    def __init__(self, run_dir: str | os.PathLike, argv: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.argv = list(sys.argv if argv is None else argv)
        self.info: dict | None = None
        self._owner_pid: int | None = None

    @property
    def held(self) -> bool:
        return self.info is not None and self._owner_pid == os.getpid()

    def __repr__(self) -> str:
        return f"RunLock({str(self.run_dir)!r}, held={self.held})"

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- acquire -----------------------------------------------------------------------------

    def _new_info(self) -> dict:
        pid = os.getpid()
        return {
            "pid": pid,
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "argv": [str(a) for a in self.argv],
            "token": secrets.token_hex(16),
            "boot_id": _boot_id(),
            "proc_start": _proc_start(pid),
        }

    def acquire(self) -> "RunLock":
        if self.info is not None:
            raise RuntimeError(f"{self!r} is already held")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = self._new_info()
        data = (json.dumps(info, sort_keys=True) + "\n").encode("utf-8")
        deadline = time.monotonic() + GUARD_TIMEOUT
        with _guard(self.run_dir, self.path) as guarded:
            while True:
                if _create_exclusive(self.path, data):
                    self.info, self._owner_pid = info, info["pid"]
                    return self
                existing, problem, raw = read_lock_info(self.path)
                if existing is not None:
                    reason = self._stale_reason(existing)
                    if reason is None:
                        raise RunLockedError(self._locked_message(existing))
                elif problem == "missing":
                    reason = None  # removed since our create attempt (only possible without flock): retry
                elif not guarded and _young(self.path) and time.monotonic() < deadline:
                    reason = None  # without flock, another process may still be writing it: wait
                    time.sleep(0.05)
                else:
                    reason = f"lock file is {problem}"
                if time.monotonic() > deadline:
                    raise RunLockedError(f"could not acquire {self.path} within {GUARD_TIMEOUT:.0f} s (other "
                                         f"processes keep replacing it); wait or choose another hydra.run.dir")
                if reason is not None:
                    warnings.warn(f"taking over stale run lock {self.path}: {reason}", StaleLockWarning,
                                  stacklevel=3)
                    _remove_stale(self.path, raw, guarded)

    def _stale_reason(self, existing: dict) -> str | None:
        """Why the (well-formed) lock is stale, or None if its holder may be alive."""
        pid = existing["pid"]
        if existing["host"] != socket.gethostname():
            return None
        boot = _boot_id()
        if existing.get("boot_id") and boot and existing["boot_id"] != boot:
            return f"pid {pid} ran before this machine rebooted"
        if not pid_alive(pid):
            return f"pid {pid} is no longer running"
        then, now = existing.get("proc_start"), _proc_start(pid)
        if isinstance(then, int) and now is not None and then != now:
            return f"pid {pid} now belongs to another process"
        return None

    def _locked_message(self, existing: dict) -> str:
        pid, host = existing["pid"], _oneline(existing["host"])
        started = _oneline(existing.get("started", "an unknown time"))
        if host == socket.gethostname():
            return (f"run directory {self.run_dir} is in use by another run (pid {pid}, started {started}, "
                    f"lock file {self.path}); wait for it to finish or choose another hydra.run.dir")
        return (f"run directory {self.run_dir} is locked by pid {pid} on host {host} (started {started}, "
                f"lock file {self.path}), which cannot be checked from here; wait for it to finish or choose "
                f"another hydra.run.dir, or delete {self.path} if that run is no longer running")

    # -- release -----------------------------------------------------------------------------

    def release(self) -> None:
        """Remove the lock file if it is still ours (a no-op if not held, or in a forked child)."""
        info, owner = self.info, self._owner_pid
        self.info, self._owner_pid = None, None
        if info is None or owner != os.getpid():
            return
        with _guard(self.run_dir, self.path):
            existing, problem, raw = read_lock_info(self.path)
            if existing is not None and existing.get("token") == info["token"]:
                _remove_if_unchanged(self.path, raw)
                return
        what = "was removed" if problem == "missing" else "was replaced by another run"
        warnings.warn(f"run lock {self.path} {what} while this run held it; left as it is",
                      StaleLockWarning, stacklevel=3)


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < EMPTY_GRACE
    except OSError:
        return False


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` if it does not exist (O_EXCL); False if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    return True


def _remove_if_unchanged(path: Path, raw: bytes | None) -> None:
    """Unlink ``path`` if its content is still ``raw``."""
    try:
        with open(path, "rb") as fh:
            if fh.read(_MAX_LOCK_BYTES + 1) != (raw or b""):
                return
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_stale(path: Path, raw: bytes | None, guarded: bool) -> None:
    """Remove a lock file judged stale: inside the flock guard nobody can have replaced it since;
    without the guard only if its content is unchanged (else the next round judges it anew)."""
    try:
        if guarded:
            os.unlink(path)
        else:
            _remove_if_unchanged(path, raw)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RunLockedError(f"cannot remove stale lock {path} ({_oneline(exc)}); delete it by hand or choose "
                             f"another hydra.run.dir") from exc


@contextlib.contextmanager
def _guard(run_dir: Path, lock_path: Path) -> Iterator[bool]:
    """Exclusive flock on the run directory for the duration; yields False if flock is unavailable."""
    if fcntl is None:
        yield False
        return
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        deadline = time.monotonic() + GUARD_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    fd = -1
                    break  # flock not supported here: rely on O_EXCL alone
                if time.monotonic() > deadline:
                    raise RunLockedError(f"another process has been acquiring or releasing {lock_path} for more "
                                         f"than {GUARD_TIMEOUT:.0f} s; wait for it or choose another hydra.run.dir")
                time.sleep(0.01)
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)  # closing drops the flock

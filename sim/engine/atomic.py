"""Atomic file writes: a uniquely named temp file in the same directory, fsync, os.replace. A
killed process never leaves a half-written file, and two writers never collide."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TMP_PREFIX = ".tmp-"


_umask_cache: list[int] = []


def _umask() -> int:
    """The process umask, read without changing it where possible (Linux /proc)."""
    if not _umask_cache:
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                value = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
        except (OSError, StopIteration, ValueError, IndexError):
            value = os.umask(0o022)
            os.umask(value)
        _umask_cache.append(value)
    return _umask_cache[0]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not all systems allow it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Binary file handle whose content replaces ``path`` atomically when the block ends.

    Written to a unique temp file in the same directory (``.tmp-<pid>-<name>.<random>.part``),
    flushed and fsync-ed, then ``os.replace``-d onto ``path``; if the block raises, the temp file
    is removed and ``path`` is left untouched. Concurrent writers never collide: the last
    ``os.replace`` wins and readers always see one complete version. The new file gets the
    usual permissions (0666 minus umask), not mkstemp's 0600. Example (pandas)::

        with atomic_writer(out_dir / "replicates.csv.gz") as fh:
            df.to_csv(fh, index=False, compression="gzip")
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{path.name[:80]}.", suffix=".part",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            try:
                os.chmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp made it 0600
            except (OSError, NotImplementedError, TypeError):
                pass  # file systems without permissions (or platforms without fchmod)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temp file, fsync, os.replace); see atomic_writer."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically, encoded as ``encoding`` with newlines kept as given."""
    atomic_write_bytes(path, text.encode(encoding))

"""Guarantees of the run store and the run lock that earlier tests could not fail: each test here
was checked to fail with the bug named in the comment beside it planted in sim/ (in a scratch
worktree), and to pass on the code as it is."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
import sim.jobs.contract
from sim.engine import expand_grid, run_experiment
from sim.engine import lock as lockmod
from sim.engine.lock import LOCK_NAME, RunLock, RunLockedError
from sim.engine.store import chunk_filename, scan_chunks

CONDITIONS = expand_grid({"mu": [0.0]})


def draw_replicate(condition, rng):
    """One row per replicate; its value identifies the replicate's random stream."""
    return pd.DataFrame({"estimate": [rng.normal(condition["mu"], 1.0)]})


def _write_lock(run_dir: Path, **fields) -> Path:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2025-01-01T00:00:00+00:00",
            "argv": ["x"], "token": "t"}
    info.update(fields)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps(info))
    return path


# ---- the run lock ----------------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_lock_is_released_when_the_run_raises(tmp_path, error):
    """A run that fails (or is interrupted) must not leave its directory locked: the lock file is
    gone and the next run takes the lock without a stale-lock warning."""
    # catches: RunLock.__exit__ not releasing when the body raised (sim/engine/lock.py)
    with pytest.raises(error):
        with RunLock(tmp_path):
            assert (tmp_path / LOCK_NAME).exists()
            raise error("the run failed")
    assert not (tmp_path / LOCK_NAME).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RunLock(tmp_path).acquire().release()


def test_api_run_releases_the_lock_when_the_experiment_raises(tmp_path, monkeypatch):
    """sim.run(out_dir=...) holds the lock while the experiment runs and drops it when it raises."""
    # catches: RunLock.__exit__ not releasing when the body raised (sim/engine/lock.py)
    seen = []

    def failing_run(cfg, out):
        seen.append((Path(out) / LOCK_NAME).exists())
        raise RuntimeError("the experiment failed")

    monkeypatch.setattr(sim.jobs.contract, "run", failing_run)
    with pytest.raises(RuntimeError, match="the experiment failed"):
        sim.run("caliper_sweep", ["reps=2", "n_jobs=1"], out_dir=tmp_path)
    assert seen == [True]
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_process_that_cannot_be_signalled_keeps_its_lock(tmp_path, monkeypatch):
    """os.kill(pid, 0) raises PermissionError for a live process of another user: that holder is
    alive, so its lock is refused and left untouched, never taken over as stale. (Simulated: a live
    child whose signalling is made to raise EPERM, as it does for another user's process.)"""
    # catches: pid_alive returning False on PermissionError (sim/engine/lock.py, except PermissionError)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        real_kill = os.kill

        def kill(pid, sig):
            if pid == child.pid:
                raise PermissionError(errno.EPERM, "Operation not permitted")
            return real_kill(pid, sig)

        with monkeypatch.context() as m:
            m.setattr(lockmod.os, "kill", kill)
            assert lockmod.pid_alive(child.pid)
            path = _write_lock(tmp_path, pid=child.pid, proc_start=lockmod._proc_start(child.pid))
            before = path.read_bytes()
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a StaleLockWarning would mean a take-over
                with pytest.raises(RunLockedError, match=f"pid {child.pid}"):
                    RunLock(tmp_path).acquire()
            assert path.read_bytes() == before
    finally:
        child.kill()
        child.wait()


# ---- the chunk store's range check ------------------------------------------------------------

def test_scan_ignores_a_chunk_that_ends_at_reps(tmp_path):
    """Replicates are 0..reps-1: a chunk whose last replicate index is reps (or beyond, or of a
    condition that does not exist) is out of range and ignored with a warning; one ending at
    reps - 1 is used."""
    # catches: the off-by-one `last > reps` for `last >= reps` in scan_chunks (sim/engine/store.py)
    reps = 10
    for c, first, last in ((0, 0, 4), (0, 5, reps), (0, reps, reps), (1, 0, 4)):
        (tmp_path / chunk_filename(c, first, last)).touch()
    with pytest.warns(RuntimeWarning, match="outside 1 conditions x 10 reps") as rec:
        found = scan_chunks(tmp_path, 1, reps)
    assert [f[:3] for f in found] == [(0, 0, 4)]
    assert sorted(str(w.message).split()[3] for w in rec) == sorted(
        chunk_filename(*x) + ":" for x in ((0, 5, reps), (0, reps, reps), (1, 0, 4)))
    (tmp_path / chunk_filename(0, 5, reps - 1)).touch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [f[:3] for f in scan_chunks(tmp_path, 1, reps)] == [(0, 0, 4), (0, 5, reps - 1)]


def test_resume_ignores_a_verified_chunk_reaching_past_the_last_replicate(tmp_path):
    """A valid, checksummed chunk from a run with more replicates (reps 4..6) lands in a 6-rep run
    whose own chunk for reps 4..5 is gone: resuming must ignore it and recompute reps 4..5, giving
    exactly the fresh run's table (not an extra replicate 6)."""
    # catches: the off-by-one `last > reps` for `last >= reps` in scan_chunks (sim/engine/store.py)
    reps, seed = 6, 7
    fresh = run_experiment(draw_replicate, CONDITIONS, reps, seed, tmp_path / "fresh", n_jobs=1, chunk_size=4,
                           progress=False).replicates
    run_experiment(draw_replicate, CONDITIONS, reps + 1, seed, tmp_path / "longer", n_jobs=1, chunk_size=4,
                   progress=False)
    chunks = tmp_path / "fresh" / "chunks"
    os.remove(chunks / chunk_filename(0, 4, reps - 1))
    shutil.copy(tmp_path / "longer" / "chunks" / chunk_filename(0, 4, reps), chunks)
    with pytest.warns(RuntimeWarning, match=f"ignoring chunk file {chunk_filename(0, 4, reps)}"):
        resumed = run_experiment(draw_replicate, CONDITIONS, reps, seed, tmp_path / "fresh", n_jobs=1,
                                 chunk_size=4, progress=False)
    assert resumed.n_resumed_chunks == 1 and resumed.n_computed_chunks == 1
    assert list(resumed.replicates["rep"]) == list(range(reps))
    pd.testing.assert_frame_equal(resumed.replicates, fresh)
    assert np.isfinite(fresh["estimate"]).all()

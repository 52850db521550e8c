"""`python -m sim.bench`'s measurements in fresh processes: the engine's peak memory, the main
job's wall time and memory (caches warm and empty) and the one-off compilation of the batched
path. Each runs as a child process so that its peak RSS is its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from sim.api import compose
from sim.jobs.conditions import conditions

MEMORY_REPS = (1_000, 10_000)
MEMORY_N = 263
RSS_UNIT = 2**20 if sys.platform == "darwin" else 2**10  #: ru_maxrss per MB: bytes on macOS, KiB on Linux


#: starts a command, waits for it and prints its wall time and its peak RSS
#: (getrusage(RUSAGE_CHILDREN).ru_maxrss, none if the resource module is missing)
CHILD_WRAPPER = """
import subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - t0
try:
    import resource
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
except ImportError:
    peak = float("nan")
print("sim.bench-child", wall, peak)
sys.exit(code)
"""


def run_child(cmd: list[str], env: Mapping[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a command run to completion in a fresh process.
    The peak RSS is getrusage(RUSAGE_CHILDREN).ru_maxrss after the command exits (of its largest
    process, if it starts others), read in a small intermediate process that only starts it:
    Linux keeps ru_maxrss across exec, so a command started straight from this process (large after
    the measurements above) would report this process's size, and RUSAGE_CHILDREN of this process
    is the largest of all its children so far. Linux reports KiB, macOS bytes."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.call([sys.executable, "-c", CHILD_WRAPPER, *cmd], env=None if env is None else dict(env),
                               stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise SystemExit(f"error: {' '.join(cmd)} exited with {code}:\n{tail}")
    lines = stdout.rstrip("\n").splitlines()
    _, wall, peak = lines[-1].split()
    return float(wall), float(peak) / RSS_UNIT, "\n".join(lines[:-1])


ENGINE_CHILD = """
import resource, sys, tempfile, time
from pathlib import Path
from sim.bench.core import SEED, plan
from sim.bench.process import MEMORY_N
from sim.engine import run_chunks
from sim.jobs.psm import PsmJob
reps = int(sys.argv[1])
factors, p = plan(MEMORY_N)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
    t0 = time.perf_counter()
    res = run_chunks(PsmJob.simulate, [p], [factors], reps=reps, seed=SEED, out_dir=Path(tmp), n_jobs=1,
                     progress=False, keep_rows=False)
    print(before, len(res.chunk_files), len(res.failures), time.perf_counter() - t0)
"""


def memory_rows() -> list[tuple[int, float, float, float, int, int]]:
    """(reps, peak RSS MB before the engine and in all, engine seconds, chunk files, failures) of the
    engine in a fresh process."""
    rows = []
    for reps in MEMORY_REPS:
        _, peak, out = run_child([sys.executable, "-c", ENGINE_CHILD, str(reps)])
        before, n_files, n_failed, seconds = out.split()[-4:]
        rows.append((reps, int(before) / RSS_UNIT, peak, float(seconds), int(n_files), int(n_failed)))
        print(f"  engine, {reps} reps, n_jobs=1: peak RSS {peak:.0f} MB", file=sys.stderr, flush=True)
    return rows


def main_job(cold: bool) -> tuple[float, float, bool]:
    """(wall seconds, peak RSS MB of its largest process, whether it calibrated the cohort model) of
    `python -m sim experiment=caliper_sweep` into a temp dir; cold: with empty calibration and
    numba caches, as a first run after an install (which calibrates only if no calibrated model
    shipped with the package fits the code, study and settings)."""
    with tempfile.TemporaryDirectory(prefix="sim-bench-main-") as tmp:
        env = dict(os.environ)
        cache = Path(tmp) / "calibration"
        if cold:
            env["SIM_CACHE_DIR"] = str(cache)
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
        wall, peak, _ = run_child([sys.executable, "-m", "sim", "experiment=caliper_sweep",
                                   f"hydra.run.dir={Path(tmp) / 'run'}"], env)
        calibrated = cold and any(cache.glob("cohort-model-*"))  # written only when solved anew
    print(f"  main job{' (cold)' if cold else ''}: {wall:.0f} s", file=sys.stderr, flush=True)
    return wall, peak, calibrated


def main_job_size() -> tuple[int, int, int, int]:
    """(reps, conditions, n_jobs, workers) of the main job, from its composed config."""
    import joblib

    cfg = compose("caliper_sweep", [])
    return int(cfg.reps), len(conditions(cfg)), int(cfg.n_jobs), joblib.effective_n_jobs(int(cfg.n_jobs))


BATCHED_JIT_PROBE = """
import time
from sim.bench.core import plan, rngs
from sim.jobs.psm import psm_chunk
_, p = plan(263)
t = []
for first in (0, 2):
    t0 = time.perf_counter()
    psm_chunk(p, rngs(first, 2))
    t.append(time.perf_counter() - t0)
print(t[0] - t[1])
"""


COMMAND_N = 20_000  #: rows of the input the command-line tools are timed on
COMMAND_RUNS = 5  #: timed runs per command (median), after one warm-up run


def command_input(path: Path, n: int = COMMAND_N) -> Path:
    """A plain CSV as a user would bring: Austin's (2011) ten N(0, 1) confounders and his treatment
    odds ratios (sim.bench.matching), an outcome y = x0 + noise."""
    import numpy as np
    import pandas as pd
    from scipy.optimize import brentq
    from scipy.special import expit

    from sim.bench.matching import AUSTIN_OR, AUSTIN_SHARE, SEED

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, len(AUSTIN_OR)))
    lp = X @ np.log(AUSTIN_OR)
    a = brentq(lambda a: float(expit(a + lp).mean()) - AUSTIN_SHARE, -20.0, 20.0)
    df = pd.DataFrame(X, columns=[f"x{k}" for k in range(X.shape[1])])
    df.insert(0, "treated", (rng.random(n) < expit(a + lp)).astype(int))
    df["y"] = df["x0"] + rng.standard_normal(n)
    df.to_csv(path, index=False)
    return path


def command_seconds(cmd: list[str], runs: int = COMMAND_RUNS) -> tuple[float, float, float]:
    """(median CPU s (user + sys), min CPU s, median wall s) of a command in fresh processes, after one
    warm-up run; CPU from getrusage(RUSAGE_CHILDREN) around each run (other load hardly moves it)."""
    import resource
    import statistics
    import time

    subprocess.run(cmd, check=True, capture_output=True)
    cpu, wall = [], []
    for _ in range(runs):
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return statistics.median(cpu), min(cpu), statistics.median(wall)


def command_rows() -> list[tuple[str, float, float, float]]:
    """(command, median CPU s, min CPU s, median wall s): `python -m sim.match` on COMMAND_N rows,
    greedy 1:1 with the paper's caliper, then `python -m sim.sensitivity` on its matched.csv."""
    with tempfile.TemporaryDirectory(prefix="sim-bench-cmd-") as tmp:
        data = command_input(Path(tmp) / "data.csv")
        covs = ",".join(f"x{k}" for k in range(10))
        out = Path(tmp) / "out"
        rows = []
        for name, cmd in (("sim.match", ["sim.match", str(data), "--treatment", "treated", "--covariates", covs,
                                         "--out", str(out)]),
                          ("sim.sensitivity", ["sim.sensitivity", str(out / "matched.csv"), "--outcome", "y"])):
            rows.append((name, *command_seconds([sys.executable, "-m", *cmd], 3 if name == "sim.sensitivity"
                                                 else COMMAND_RUNS)))
            print(f"  python -m {name}, {COMMAND_N} rows: {rows[-1][1]:.2f} s CPU", file=sys.stderr, flush=True)
    return rows

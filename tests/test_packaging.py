"""An installed wheel runs the main job from any directory: the configs ship inside the package
(sim.conf, found by Hydra as pkg://sim.conf)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["experiment=caliper_sweep", "reps=20", "n_jobs=1", "draw_figures=false",
        "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"]


def _pip(*args: str, cwd: Path) -> None:
    """pip, with setuptools' build directory in `cwd`: a build/ left in the source tree by an earlier
    wheel would otherwise add files since deleted (a snapshot since re-keyed) to this one."""
    (cwd / "setup.cfg").write_text(f"[build]\nbuild_base = {cwd / 'build'}\n")
    env = {**os.environ, "DIST_EXTRA_CONFIG": str(cwd / "setup.cfg")}
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _run_from(site: Path, workdir: Path, run_dir: Path) -> subprocess.CompletedProcess:
    """`python -m sim ...` from `workdir`, with `site` (the installed copy) first on the path;
    the dependencies come from this interpreter's environment. numba runs the kernels as plain
    Python here: a fresh copy would otherwise compile them (about 20 s per copy) for 20 replicates."""
    env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_DISABLE_JIT": "1"}
    probe = subprocess.run([sys.executable, "-c", "import sim; print(sim.__file__)"], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip().startswith(str(site)), probe.stdout + probe.stderr
    return subprocess.run([sys.executable, "-m", "sim", *ARGS, f"hydra.run.dir={run_dir}"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_installed_wheel_runs_from_any_directory(tmp_path):
    """The wheel pip builds (as `pip install .` does) ships the configs and the model as data, and its
    installed copy runs the main job outside the source tree."""
    wheels = tmp_path / "wheels"
    _pip("wheel", "--no-deps", "-w", str(wheels), str(ROOT), cwd=tmp_path)
    wheel = next(wheels.glob("sim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sim/conf/config.yaml" in names and "sim/conf/study/tominaga2025.yaml" in names
    shipped = [n for n in names if n.startswith("sim/cohort/snapshots/")]
    assert len(shipped) == 1 and shipped[0].endswith(".json"), shipped  # the shipped model, as data
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path)
    assert (site / "sim" / "conf" / "experiment" / "caliper_sweep.yaml").is_file()
    r = _run_from(site, tmp_path, tmp_path / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "summary.csv").is_file() and (tmp_path / "run" / "key_table.csv").is_file()

"""A real SLURM cluster: `python -m sim --multirun hydra/launcher=submitit_slurm ...` submitted through
slurmctld and run by slurmd (a single-node cluster on this machine, tests/slurm/start_slurm.sh)
writes, job by job, the same summary.csv as a plain local `python -m sim` run of the same settings.

The module is skipped, with the script's one-line reason, when the cluster cannot be started (not
root, no packages and no apt-get to install them, daemons refused by the machine). The daemons are
stopped at the end (set SIM_SLURM_KEEP=1 to leave them running)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import sim

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "slurm"
SLURM_DIR = Path(os.environ.get("SIM_SLURM_DIR", "/var/lib/sim-slurm"))
PARTITION = "debug"  # the one partition start_slurm.sh defines
CONFOUNDING = ["0", "1"]
SETTINGS = ["experiment=caliper_sweep", "reps=20",
            "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"]
# what submitit_slurm needs on this cluster: the partition, a time limit, one CPU and 1 GB per job
LAUNCHER = ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
            "hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]

pytestmark = pytest.mark.slow


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def _reason(p: subprocess.CompletedProcess) -> str:
    """The script's reason: its last line on stderr."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()] or [ln for ln in p.stdout.splitlines() if ln.strip()]
    return (lines or [f"start_slurm.sh: exit code {p.returncode}"])[-1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}


@pytest.fixture(scope="module")
def slurm():
    """A running single-node cluster (started, or found running, by start_slurm.sh); stopped after."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the 'cluster' extra")
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("start_slurm.sh needs root (to install the packages and run slurmd and munged)")
    if not (_which("slurmctld") and _which("slurmd") and _which("munged")) and not _which("apt-get"):
        pytest.skip("slurmctld/slurmd/munged are not installed and there is no apt-get to install them")
    try:
        p = subprocess.run(["bash", str(SCRIPTS / "start_slurm.sh")], capture_output=True, text=True,
                           timeout=900, env=_env())
    except subprocess.TimeoutExpired:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh")], capture_output=True, timeout=120)
        pytest.skip("start_slurm.sh did not finish within 15 minutes")
    if p.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh")], capture_output=True, timeout=120)
        pytest.skip(_reason(p))
    yield _env()
    if os.environ.get("SIM_SLURM_KEEP") != "1":
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh")], capture_output=True, timeout=120)


def _slurm_state(env) -> str:
    """squeue and the node, for an assertion message."""
    out = []
    for cmd in (["squeue", "-a"], ["sinfo", "-N", "-l"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env).stdout)
        except (OSError, subprocess.TimeoutExpired) as e:
            out.append(f"{cmd[0]}: {e}")
    return "\n".join(out)


def test_submitit_slurm_multirun_equals_plain_runs(tmp_path, slurm):
    env = slurm
    # a multirun through slurmctld, one job-array task per swept value (in the background) ...
    sweep = tmp_path / "sweep"
    multirun = subprocess.Popen([sys.executable, "-m", "sim", "--multirun", *LAUNCHER, *SETTINGS,
                                 f"cohort.confounding={','.join(CONFOUNDING)}", "n_jobs=1", f"hydra.sweep.dir={sweep}"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # ... and meanwhile the references: plain local runs, one per value
        refs = {}
        for c in CONFOUNDING:
            refs[c] = tmp_path / f"local{c}"
            p = subprocess.run([sys.executable, "-m", "sim", *SETTINGS, f"cohort.confounding={c}", "n_jobs=1",
                                f"hydra.run.dir={refs[c]}"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr[-3000:]
        try:
            _, err = multirun.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail("the multirun did not end within 5 minutes:\n" + _slurm_state(env))
    finally:
        if multirun.poll() is None:
            multirun.kill()
            multirun.communicate()
    assert multirun.returncode == 0, err[-3000:] + "\n" + _slurm_state(env)

    # it went through SLURM: an sbatch job array on the partition, each task run by slurmd
    (script,) = (sweep / ".submitit").glob("*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text() and f"#SBATCH --partition={PARTITION}" in script.read_text()
    array_id = script.parent.name
    for i in range(len(CONFOUNDING)):
        task = sweep / ".submitit" / f"{array_id}_{i}"
        assert (task / f"{array_id}_{i}_0_result.pkl").exists(), list(task.iterdir())
        assert f"JobEnvironment(job_id={array_id}_{i}" in (task / f"{array_id}_{i}_0_log.out").read_text()
    deadline = time.monotonic() + 60  # the results are written a moment before the tasks end
    while True:
        shown = subprocess.run(["scontrol", "show", "job", array_id], capture_output=True, text=True, timeout=20,
                               env=env).stdout
        if shown.count("JobState=COMPLETED") == len(CONFOUNDING) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown.count("JobState=COMPLETED") == len(CONFOUNDING), shown
    assert f"Partition={PARTITION}" in shown and "NodeList=localhost" in shown, shown

    # each job's tables equal the plain run of its value
    seen = set()
    for job in sorted(d for d in sweep.iterdir() if d.name.isdigit()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        (c,) = [o.split("=", 1)[1] for o in overrides if o.startswith("cohort.confounding=")]
        seen.add(c)
        assert (job / "summary.csv").read_bytes() == (refs[c] / "summary.csv").read_bytes(), job
        pd.testing.assert_frame_equal(sim.read_replicates(job), sim.read_replicates(refs[c]), check_exact=True)
    assert seen == set(CONFOUNDING)

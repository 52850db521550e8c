"""Scale-out: the dask.distributed backend and the hydra-submitit-launcher multirun give the same
tables as a plain local run (same seeds, same chunks), resume the same way, and bad settings end
as one `error:` line. Clusters here are dask `LocalCluster`s and submitit's local executor."""

from __future__ import annotations

import functools
import io
import os
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim.engine import ReplicateFailure, expand_grid, run_experiment
from sim.engine import chunk, dask_backend, progress
from sim.engine.store import chunk_filename, parse_chunk_filename, read_chunk

distributed = pytest.importorskip("distributed", reason="backend=dask needs the 'cluster' extra")

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = expand_grid({"mu": [0.0, 1.0, 2.0]})
# A 2-condition slice of caliper_sweep (the paper's caliper and none, under the null).
SMALL_GRID = "experiment.grid={method.matching.caliper:[0.2,null],cohort.effect_mcid:[0.0]}"
ONE_CONDITION = "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"


def toy_replicate(condition, rng):
    """Two rows per replicate; some replicates fail (recorded as data)."""
    x = rng.normal(condition["mu"], 1.0, size=20)
    if x[0] > 1.8 + condition["mu"]:
        raise ReplicateFailure(f"first draw {x[0]:.3f} too large")
    return pd.DataFrame({"analysis": ["mean", "median"], "estimate": [x.mean(), np.median(x)],
                         "draw": rng.integers(0, 10**9, size=2)})


def slow_toy_replicate(condition, rng, seconds):
    time.sleep(seconds)
    return toy_replicate(condition, rng)


def _files(run_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(run_dir / "chunks") if parse_chunk_filename(n))


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.replicates, b.replicates, check_exact=True)
    pd.testing.assert_frame_equal(a.failures, b.failures, check_exact=True)


@pytest.fixture(scope="module")
def cluster():
    """Two in-process workers (threads): quick to start; the process-based cluster is tested below."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    res = run_experiment(toy_replicate, CONDITIONS, 20, 11, out, n_jobs=1, chunk_size=3, progress=False)
    assert len(res.failures) > 0 and len(res.replicates) > 0
    return res, out


# ---- engine: dask == local ---------------------------------------------------------------------

def test_dask_at_a_scheduler_address_equals_local(tmp_path, cluster, local_ref):
    ref, ref_dir = local_ref
    res = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, n_jobs=1, chunk_size=3, progress=False,
                         backend="dask", scheduler=cluster.scheduler_address)
    _same(res, ref)
    assert res.n_computed_chunks == ref.n_computed_chunks == 3 * 7
    # the same chunks, holding the same tables
    assert _files(tmp_path) == _files(ref_dir)
    for name in _files(tmp_path):
        a, b = read_chunk(tmp_path / "chunks" / name), read_chunk(ref_dir / "chunks" / name)
        pd.testing.assert_frame_equal(a["replicates"], b["replicates"], check_exact=True)


def test_dask_with_a_client_leaves_it_open(tmp_path, cluster, local_ref):
    with distributed.Client(cluster, set_as_default=False) as client:
        res = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, chunk_size=5, progress=False,
                             backend="dask", scheduler=client)
        assert client.status == "running"
    _same(res, local_ref[0])  # another chunk size: the same table


def test_dask_resume_after_losing_chunks_and_across_backends(tmp_path, cluster, local_ref):
    ref = local_ref[0]
    kw = dict(chunk_size=3, progress=False, backend="dask", scheduler=cluster.scheduler_address)
    run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, **kw)
    names = _files(tmp_path)
    for name in names[::2]:  # half of the work is lost
        os.remove(tmp_path / "chunks" / name)
    res = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, **kw)
    assert res.n_resumed_chunks == len(names[1::2]) and res.n_computed_chunks == len(names[::2])
    _same(res, ref)
    # a half-done local run finished by dask, and back
    other = tmp_path / "mixed"
    run_experiment(toy_replicate, CONDITIONS[:1], 20, 11, other, n_jobs=1, chunk_size=4, progress=False)
    os.remove(other / "chunks" / chunk_filename(0, 8, 11))
    mixed = run_experiment(toy_replicate, CONDITIONS[:1], 20, 11, other, **kw)
    assert mixed.n_computed_chunks == 2  # reps 8-10 and 11
    back = run_experiment(toy_replicate, CONDITIONS[:1], 20, 11, other, n_jobs=1, progress=False)
    assert back.n_computed_chunks == 0
    pd.testing.assert_frame_equal(back.replicates, ref.replicates[ref.replicates["condition"] == 0],
                                  check_exact=True)


def test_interrupted_dask_run_keeps_finished_chunks(tmp_path, cluster, local_ref, monkeypatch):
    """Ctrl-C in the driver: pending tasks are cancelled, every received chunk is on disk, and the
    same run resumes from them."""
    seen = []
    add = progress.Progress.add

    def interrupt_after_five(self, c, n, resumed=False):
        add(self, c, n, resumed)
        if not resumed:
            seen.append(c)
            if len(seen) == 5:
                raise KeyboardInterrupt

    kw = dict(chunk_size=3, progress=False, backend="dask", scheduler=cluster.scheduler_address)
    monkeypatch.setattr(progress.Progress, "add", interrupt_after_five)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(functools.partial(slow_toy_replicate, seconds=0.01), CONDITIONS, 20, 11, tmp_path, **kw)
    monkeypatch.undo()
    kept = len(_files(tmp_path))
    assert 5 <= kept <= 21
    deadline = time.monotonic() + 10
    while cluster.scheduler.tasks and time.monotonic() < deadline:  # nothing left running on the cluster
        time.sleep(0.05)
    assert not cluster.scheduler.tasks
    res = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, **kw)
    assert res.n_resumed_chunks == kept and res.n_computed_chunks == 21 - kept
    _same(res, local_ref[0])


def test_driver_writes_chunks_workers_cannot_see(tmp_path, cluster, local_ref, monkeypatch):
    """Workers without the run directory (no shared file system) return their chunks; the driver
    writes them, so resume works the same."""
    monkeypatch.setattr(chunk, "MANIFEST_NAME", "not-on-this-worker.json")  # what the workers look for
    written = []
    write = dask_backend.write_chunk  # the driver's writes
    monkeypatch.setattr(dask_backend, "write_chunk", lambda d, p: written.append(p["first"]) or write(d, p))
    kw = dict(chunk_size=4, progress=False, backend="dask", scheduler=cluster.scheduler_address)
    res = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, **kw)
    assert len(written) == res.n_computed_chunks == 15 and len(_files(tmp_path)) == 15
    _same(res, local_ref[0])
    again = run_experiment(toy_replicate, CONDITIONS, 20, 11, tmp_path, **kw)
    assert again.n_resumed_chunks == 15 and again.n_computed_chunks == 0


def test_unreachable_scheduler_is_one_clear_error(tmp_path):
    import dask

    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ConnectionError, match=f"dask scheduler at '{address}'"):
            run_experiment(toy_replicate, CONDITIONS, 2, 1, tmp_path, progress=False, backend="dask",
                           scheduler=address)


@pytest.mark.parametrize("kw,match", [
    (dict(backend="spark"), r"backend must be one of \['local', 'dask'\]"),
    (dict(backend="local", scheduler="tcp://h:8786"), "backend='dask' only"),
    (dict(backend="dask", scheduler=42), "scheduler must be"),
    (dict(backend="dask", scheduler="tcp://a b"), "scheduler must be"),
])
def test_engine_rejects_bad_backend_settings(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        run_experiment(toy_replicate, CONDITIONS, 2, 1, tmp_path, progress=False, **kw)
    assert not (tmp_path / "chunks").exists()


def test_engine_without_dask_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'sim\[cluster\]'"):
        run_experiment(toy_replicate, CONDITIONS, 2, 1, tmp_path, progress=False, backend="dask")


# ---- config: one error line naming the key -------------------------------------------------------

def _cli_error(overrides: list[str], tmp_path: Path) -> tuple[int, str]:
    """What `python -m sim` prints (sim.cli.app.run, the CLI's body, in-process)."""
    from sim.api import compose
    from sim.cli.app import run

    cfg = compose("caliper_sweep", overrides)
    err = io.StringIO()
    with redirect_stderr(err):
        code = run(cfg, tmp_path / "run", overrides)
    return code, err.getvalue()


@pytest.mark.parametrize("overrides,words", [
    (["backend=spark"], ["backend", "spark", "'local'", "'dask'"]),
    (["backend=dask", "dask_scheduler=42"], ["dask_scheduler", "42", "tcp://host:8786"]),
    (["dask_scheduler=tcp://127.0.0.1:8786"], ["dask_scheduler", "backend=dask"]),
    (["backend=dask", "dask_scheduler=tcp://a:1:2"], ["dask_scheduler", "'tcp://a:1:2'", "tcp://host:8786"]),
    (["backend=dask", "dask_scheduler=spark://h:7077"], ["dask_scheduler", "unknown address scheme 'spark'"]),
])
def test_bad_backend_settings_are_one_error_line(tmp_path, overrides, words):
    code, err = _cli_error(overrides, tmp_path)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_backend_dask_without_dask_names_key_and_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, err = _cli_error(["backend=dask"], tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: backend: 'dask' needs dask.distributed") and "pip install 'sim[cluster]'" in err


# ---- the pipeline: sim.run with backend=dask ------------------------------------------------------

PIPELINE = ["reps=8", "seed=5", SMALL_GRID, "draw_figures=false"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The reference: a local run of PIPELINE, files written (what `python -m sim` writes)."""
    import sim

    out = tmp_path_factory.mktemp("plain")
    return sim.run("caliper_sweep", [*PIPELINE, "n_jobs=1"], out_dir=out), out


def _same_files(run_dir: Path, ref_dir: Path) -> None:
    assert (run_dir / "summary.csv").read_bytes() == (ref_dir / "summary.csv").read_bytes()
    pd.testing.assert_frame_equal(sim.read_replicates(run_dir), sim.read_replicates(ref_dir), check_exact=True)


@pytest.mark.slow
def test_experiment_on_a_local_dask_cluster_equals_local_run(plain_run):
    """dask_scheduler=null: a LocalCluster of n_jobs worker processes (started and closed by the run)."""
    import sim

    local = plain_run[0]
    dask_run = sim.run("caliper_sweep", [*PIPELINE, "n_jobs=2", "backend=dask"])
    assert dask_run.n_computed_chunks > 0 and len(local.summary) > 0 and set(local.replicates["rep"]) == set(range(8))
    pd.testing.assert_frame_equal(dask_run.summary, local.summary, check_exact=True)
    pd.testing.assert_frame_equal(dask_run.replicates, local.replicates, check_exact=True)
    pd.testing.assert_frame_equal(dask_run.failures, local.failures, check_exact=True)


def test_experiment_at_a_scheduler_address(cluster):
    import sim

    args = ["reps=6", "seed=3", ONE_CONDITION, "chunk_size=2"]
    local = sim.run("caliper_sweep", [*args, "n_jobs=1"])
    remote = sim.run("caliper_sweep", [*args, "backend=dask", f"dask_scheduler={cluster.scheduler_address}"])
    assert remote.n_computed_chunks == 3
    pd.testing.assert_frame_equal(remote.summary, local.summary, check_exact=True)
    pd.testing.assert_frame_equal(remote.replicates, local.replicates, check_exact=True)


# ---- SLURM through hydra-submitit-launcher, tested with its local executor -------------------------

@pytest.mark.slow
def test_submitit_local_multirun_equals_plain_run(tmp_path, plain_run):
    """`python -m sim --multirun hydra/launcher=submitit_local ...` (what submitit_slurm does on a
    cluster, with local processes) writes the same summary.csv as the run without a launcher."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the 'cluster' extra")
    sweep = tmp_path / "sweep"
    p = subprocess.run([sys.executable, "-m", "sim", "--multirun", "hydra/launcher=submitit_local",
                        f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=10",
                        "experiment=caliper_sweep", "n_jobs=1", *PIPELINE],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # it did run as a submitit job
    _same_files(sweep / "0", plain_run[1])

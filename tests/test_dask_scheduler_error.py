"""An unreachable dask scheduler is a user error: one `error:` line naming dask_scheduler, exit code
2, no traceback (sim.cli.app)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from sim.cli import app  # noqa: E402
from sim.api import compose  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONE = "experiment.grid={method.matching.caliper:[0.2],cohort.effect_mcid:[0.0]}"
NOWHERE = "tcp://127.0.0.1:1"  # nothing listens on port 1


def test_unreachable_scheduler_is_a_user_error(tmp_path, capsys):
    import dask

    cfg = compose("caliper_sweep", ["reps=2", "backend=dask", f"dask_scheduler={NOWHERE}", ONE,
                                    "method.outcomes.names=[barthel]", "method.outcomes.times=[m6]"])
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = app.run(cfg, tmp_path / "run")
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("error:")]  # after the plan
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: dask_scheduler: cannot reach the dask scheduler at "
                                               f"'{NOWHERE}'"), err
    assert "dask_scheduler=null" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "run" / "error.log").exists()


def test_unreachable_scheduler_on_the_command_line(tmp_path):
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    r = subprocess.run([sys.executable, "-m", "sim", "experiment=caliper_sweep", "reps=2", "backend=dask",
                        f"dask_scheduler={NOWHERE}", ONE, f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: dask_scheduler: "), r.stderr
    assert "Traceback" not in r.stderr


def _raised(exc: BaseException, inside: str = "") -> BaseException:
    """`exc` with a traceback whose innermost frame is a function named `inside` (or this one)."""
    def _dask_client():
        raise exc

    def other():
        raise exc

    try:
        (_dask_client if inside == "_dask_client" else other)()
    except BaseException as e:  # noqa: BLE001
        return e
    raise AssertionError("not raised")


def test_only_connection_errors_of_a_named_scheduler_count():
    dask_cfg = compose("caliper_sweep", ["backend=dask", f"dask_scheduler={NOWHERE}"])
    local = compose("caliper_sweep", [])
    lost = _raised(ConnectionError("Timed out trying to connect"), "_dask_client")
    assert app.scheduler_error(dask_cfg, lost).startswith(f"dask_scheduler: cannot reach the dask scheduler at "
                                                          f"'{NOWHERE}' (Timed out trying to connect)")
    assert app.scheduler_error(dask_cfg, _raised(TimeoutError("t"), "_dask_client")) is not None
    # not from the connection to dask: a full disk stays an unexpected error
    assert app.scheduler_error(dask_cfg, _raised(OSError(28, "No space left on device"))) is None
    # not an OSError, or no scheduler named (a local cluster), or another backend
    assert app.scheduler_error(dask_cfg, _raised(ValueError("x"), "_dask_client")) is None
    assert app.scheduler_error(local, lost) is None
    no_address = compose("caliper_sweep", ["backend=dask"])
    assert app.scheduler_error(no_address, lost) is None

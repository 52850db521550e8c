"""Shared fixtures: the real study spec and the default cohort settings (both read-only)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY_PATH = ROOT / "conf" / "study" / "tominaga2025.yaml"
COHORT_SETTINGS_PATH = ROOT / "conf" / "cohort" / "tominaga2025.yaml"

# One BLAS thread in every test process and in the runs the tests start: two xdist workers on two
# cores, each with two OpenBLAS threads, spent 40 % more CPU on a calibration for no shorter wall.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _compose_each_once() -> None:
    """Each distinct (experiment, overrides) is composed by Hydra once per test process: a compose
    takes about 0.2 s (the study's 1,100 values through OmegaConf), and the suite asks for the same
    ones 42 times. Every caller (sim.compose, and sim.run and the rest of sim.api inside) gets its
    own deep copy (0.03 s); a failed compose is not kept. Set here, before the test files import
    `compose` by name."""
    import copy
    import functools

    from sim import api

    composed: dict = {}
    original = api.compose

    @functools.wraps(original)
    def compose(experiment=None, overrides=()):
        key = (experiment, tuple(overrides))
        if key not in composed:
            composed[key] = original(experiment, overrides)
        return copy.deepcopy(composed[key])

    api.compose = compose


_compose_each_once()


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """The same for an OpenBLAS loaded before this file set the variable."""
    from sim.engine import blas

    for path in blas.openblas_libraries():
        blas.set_threads(path, 1)


@pytest.fixture(scope="session")
def study_raw() -> dict:
    """The parsed study YAML; tests that mutate it must deep-copy it first."""
    with STUDY_PATH.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def study(study_raw):
    from sim.cohort.study import load_study

    return load_study(copy.deepcopy(study_raw))


@pytest.fixture(scope="session")
def cohort_settings() -> dict:
    with COHORT_SETTINGS_PATH.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session", autouse=True)
def shared_calibration_cache(tmp_path_factory):
    """One calibration cache for the whole session, in-process and in subprocesses (the CLI
    tests): the default cohort model comes from the shipped snapshot, and a model of other
    settings is calibrated at most once per session. Under
    pytest-xdist the workers share it (their base temp dirs' common parent): a model one worker
    calibrated is read by the other (cache files are written atomically, so a race only costs a
    second calibration, never a torn file)."""
    import os

    if "SIM_CACHE_DIR" in os.environ:
        yield Path(os.environ["SIM_CACHE_DIR"])
        return
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-<user>/pytest-<n>/, the same for every worker of this run
    cache = root / "sim-cache"
    cache.mkdir(exist_ok=True)
    os.environ["SIM_CACHE_DIR"] = str(cache)
    yield cache
    del os.environ["SIM_CACHE_DIR"]


@pytest.fixture(scope="session")
def fast_model(study, cohort_settings, shared_calibration_cache):
    """A quickly calibrated model (20 000 reference patients, ~3 s): enough for the generator's
    mechanics; shared by the test files that only need those (read-only: models are frozen), and
    by the workers, through the session's cache (as JSON: the same model to the bit)."""
    from sim.cohort import model_json
    from sim.cohort.calibrate import calibrate, model_filename

    path = shared_calibration_cache / f"fast-20000-{model_filename(study, cohort_settings)}"
    if path.is_file():
        return model_json.loads(path.read_text())
    model = calibrate(study, cohort_settings, n=20_000)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(model_json.dumps(model))
    partial.replace(path)
    return model


# The files that take longest (seconds of wall on a 2-core machine, measured with --durations),
# longest first, except that those which mostly wait (for SLURM, for a dask scheduler's timeout)
# come while test_cli.py's runs keep both cores busy: after test_snapshot.py, which runs beside
# test_cli.py's first step, where numba compiles the kernels (on a fresh clone) that they then load.
# Under --dist loadfile each worker takes whole files as it frees up, in the order collected
# (--no-loadscope-reorder, pyproject.toml): with these first, the two workers end together on the
# many quick files instead of one running a long file that came late while the other waits.
LONGEST_FIRST = ["test_cli.py", "test_snapshot.py", "test_slurm.py", "test_dask_scheduler_error.py",
                 "test_scale_out.py", "test_reproduce.py", "test_compatibility.py", "test_api.py", "test_batched.py",
                 "test_batched_sensitivity.py", "test_heterogeneity.py", "test_config_properties.py",
                 "test_unmeasured.py", "test_figures.py", "test_disk.py", "test_template_study.py", "test_bench.py",
                 "test_cohort.py", "test_numba_ids.py", "test_api_surface.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as collected

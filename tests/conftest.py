"""Shared fixtures: the real study spec and the default cohort settings (both read-only)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY_PATH = ROOT / "conf" / "study" / "tominaga2025.yaml"
COHORT_SETTINGS_PATH = ROOT / "conf" / "cohort" / "tominaga2025.yaml"


@pytest.fixture(scope="session")
def study_raw() -> dict:
    """The parsed study YAML; tests that mutate it must deep-copy it first."""
    with STUDY_PATH.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def study(study_raw):
    from sim.study import load_study

    return load_study(copy.deepcopy(study_raw))


@pytest.fixture(scope="session")
def cohort_settings() -> dict:
    with COHORT_SETTINGS_PATH.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session", autouse=True)
def shared_calibration_cache(tmp_path_factory):
    """One calibration cache for the whole session, in-process and in subprocesses (the CLI
    tests), so the ~30 s calibration of the default cohort model runs at most once."""
    import os

    if "SIM_CACHE_DIR" in os.environ:
        yield Path(os.environ["SIM_CACHE_DIR"])
        return
    cache = tmp_path_factory.mktemp("sim-cache")
    os.environ["SIM_CACHE_DIR"] = str(cache)
    yield cache
    del os.environ["SIM_CACHE_DIR"]

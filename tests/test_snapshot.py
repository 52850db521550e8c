"""The shipped calibrated model (sim/cohort/snapshots): it is current for the code, study and
settings, `calibrated` uses it instead of solving, and it is what a fresh calibration gives."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping

import numpy as np
import pytest

from sim.cohort import calibrate as C

REFRESH = "refresh it with: python -m sim.cohort.snapshot"


def assert_close(a, b, rtol: float, where: str = "model") -> None:
    """Recursive comparison of two models: same structure, numbers within rtol (absolute 1e-9)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_close(getattr(a, f.name), getattr(b, f.name), rtol, f"{where}.{f.name}")
    elif isinstance(a, Mapping):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_close(a[k], b[k], rtol, f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, rtol, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-9, err_msg=where)
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b)), (where, a, b)
    elif callable(a) and hasattr(a, "__dict__"):  # scales and ordinals: compare their state
        assert type(a) is type(b), where
        assert_close(vars(a), vars(b), rtol, where)
    else:
        assert a == b, (where, a, b)


def shipped(study, cohort_settings):
    path = C.SNAPSHOTS / C.model_filename(study, cohort_settings)
    assert path.is_file(), f"no snapshot for the current code, study and settings; {REFRESH}"
    with path.open("rb") as fh:
        return path, pickle.load(fh)


def test_the_shipped_snapshot_is_current_and_alone(study, cohort_settings):
    path, _ = shipped(study, cohort_settings)
    assert sorted(C.SNAPSHOTS.glob("*.pkl")) == [path], f"stale snapshots beside the current one; {REFRESH}"


def test_calibrated_loads_the_snapshot_without_solving(study, cohort_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("SIM_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(C, "_MEMO", {})
    monkeypatch.setattr(C, "calibrate", lambda *a, **k: pytest.fail("calibrated anew despite the snapshot"))
    _, model = shipped(study, cohort_settings)
    assert_close(C.calibrated(study, cohort_settings), model, rtol=0.0)


def test_a_stale_snapshot_is_never_used(study, cohort_settings, tmp_path, monkeypatch):
    """Other settings (another key): calibrate anew, whatever the snapshots hold."""
    monkeypatch.setenv("SIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(C, "_MEMO", {})
    other = {**cohort_settings, "calibration_seed": int(cohort_settings.get("calibration_seed", 0)) + 1}
    solved = []
    monkeypatch.setattr(C, "calibrate", lambda study, settings: solved.append(settings) or "solved")
    assert C.calibrated(study, other) == "solved" and solved == [other]


@pytest.mark.slow
def test_the_snapshot_is_what_calibration_gives(study, cohort_settings):
    """Solved anew on this machine (about a minute): the shipped model to 1e-6 (relative)."""
    _, model = shipped(study, cohort_settings)
    assert_close(C.calibrate(study, cohort_settings), model, rtol=1e-6)

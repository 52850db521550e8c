"""The shipped calibrated model (sim/cohort/snapshots): it is current for the code, study and
settings, `calibrated` uses it instead of solving, and it is what a fresh calibration gives. It is
data (JSON, sim.cohort.model_json), loaded without unpickling, every number to the bit: the model
the pickle it replaced held."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from sim.cohort import calibrate as C
from sim.cohort import model_json

REFRESH = "refresh it with: python -m sim.cohort.snapshot"
DATA = Path(__file__).with_name("data")
# The last pickled snapshot (tests/data) and the key of the JSON snapshot written from the same
# calibration when the format changed (the key covers the model's code, which changed with it).
PICKLED = DATA / "cohort-model-tominaga2025-00daa0717d5baf18.pkl"
PICKLED_AS_JSON = "cohort-model-tominaga2025-ecbd247e09d65321.json"  # the same model, re-keyed since


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


def assert_identical(a, b, where: str = "model") -> None:
    """The same value to the bit: the same types (tuple, float or numpy float64, ...), every float's
    bits (-0.0 is not 0.0), every array's dtype, shape and bytes."""
    assert type(a) is type(b), (where, type(a), type(b))
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_identical(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()), where
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes(), (where, a, b)
    else:
        assert a == b, (where, a, b)


def shipped(study, cohort_settings):
    path = C.SNAPSHOTS / C.model_filename(study, cohort_settings)
    assert path.is_file(), f"no snapshot for the current code, study and settings; {REFRESH}"
    return path, model_json.loads(path.read_text())


def test_the_shipped_snapshot_is_current_and_alone(study, cohort_settings):
    path, _ = shipped(study, cohort_settings)
    assert sorted(C.SNAPSHOTS.iterdir()) == [path], f"stale snapshots beside the current one; {REFRESH}"


def test_the_snapshot_is_data_loaded_without_unpickling(study, cohort_settings, tmp_path, monkeypatch):
    path, model = shipped(study, cohort_settings)
    doc = json.loads(path.read_text())  # plain JSON
    assert doc["format"] == model_json.FORMAT and path.suffix == ".json"
    assert model_json.dumps(model) == path.read_text()  # written as it reads back
    monkeypatch.setenv("SIM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(C, "_MEMO", {})
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, lambda *a, **k: pytest.fail("the cohort model was unpickled"))
    assert_identical(C.calibrated(study, cohort_settings), model)


def test_the_json_model_is_the_pickled_model():
    """The JSON snapshot of the calibration the last pickle held: the same model, to the bit."""
    path = C.SNAPSHOTS / PICKLED_AS_JSON
    if not path.is_file():
        pytest.skip("the model was recalibrated since the pickle (test_the_snapshot_is_what_calibration_gives "
                    "checks the current one)")
    with PICKLED.open("rb") as fh:
        pickled = pickle.load(fh)
    assert_identical(model_json.loads(path.read_text()), pickled)


def test_every_value_round_trips_to_the_bit(study, cohort_settings):
    """Floats of every kind (negative zero, subnormal, infinite, missing; float and numpy float64),
    arrays, tuples and lists come back as they were; a part of no model class is refused."""
    _, model = shipped(study, cohort_settings)
    odd = (-0.0, 5e-324, float("inf"), float("-inf"), float("nan"), 1 / 3)
    survival = dataclasses.replace(model.survival, loc=-0.0, scale=5e-324, cens_hi=float("inf"))
    edited = dataclasses.replace(
        model, survival=survival, treated_share=float("nan"), core_weights=np.array(odd),
        core_corr=np.array([[np.float64(-0.0), np.nan], [np.inf, 2.0]]),
        log_or={**model.log_or, "odd": np.float64(-np.inf), "zero": np.float64(-0.0)},
        mcid={"listed": [1, 2.5, None, (3, "x")]})
    for m in (model, edited):
        text = model_json.dumps(m)
        assert_identical(model_json.loads(text), m)
        assert model_json.dumps(model_json.loads(text)) == text
    with pytest.raises(TypeError, match="holds no"):
        model_json.dumps(dataclasses.replace(model, mcid={"x": object()}))
    doc = json.loads(model_json.dumps(model))
    doc["model"] = {"@Popen": {"args": ["true"]}}  # only the model's own classes are ever built
    with pytest.raises(ValueError, match="names no known part"):
        model_json.loads(json.dumps(doc))


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

"""`python -m sim.cohort.snapshot`: calibrate the default study's cohort model anew and ship it
as the package's snapshot (sim/cohort/snapshots/, read by sim.cohort.calibrate.calibrated).

Run it after changing the calibration, the model's code or the default study or settings: the
snapshot is keyed by all of them, and tests/test_snapshot.py fails while it is stale."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from sim.cohort.calibrate import SNAPSHOTS, calibrate, model_filename
from sim.engine.atomic import atomic_write_bytes
from sim.cohort.study import Study, load_study


def write_snapshot(study: Study, settings: Mapping[str, Any]) -> Path:
    """Calibrate anew and ship the result as the snapshot of (study, settings), replacing older
    snapshots of the study."""
    import pickle

    model = calibrate(study, settings)
    SNAPSHOTS.mkdir(exist_ok=True)
    for old in SNAPSHOTS.glob(f"cohort-model-{study.name}-*.pkl"):
        old.unlink()
    path = SNAPSHOTS / model_filename(study, settings)
    atomic_write_bytes(path, pickle.dumps(model))
    return path


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m sim.cohort.snapshot",
                            description="Calibrate the default study's cohort model (about a minute) and write "
                                        "sim/cohort/snapshots/cohort-model-<study>-<key>.pkl.").parse_args(argv)
    conf = resources.files("sim.conf")
    settings = yaml.safe_load((conf / "cohort" / "tominaga2025.yaml").read_text())
    study = load_study(yaml.safe_load((conf / "study" / "tominaga2025.yaml").read_text()))
    print(write_snapshot(study, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

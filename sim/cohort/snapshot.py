"""`python -m sim.cohort.snapshot`: calibrate the default study's cohort model anew and ship it
as the package's snapshot (sim/cohort/snapshots/, read by sim.cohort.calibrate.calibrated): JSON
(sim.cohort.model_json), data that loads without unpickling, every number to the bit.

Run it after changing the calibration, the model's code or the default study or settings: the
snapshot is keyed by all of them, and tests/test_snapshot.py fails while it is stale."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from sim.cohort import model_json
from sim.cohort.calibrate import SNAPSHOTS, calibrate, model_filename
from sim.engine.atomic import atomic_write_bytes
from sim.cohort.study import Study, load_study


def write_snapshot(study: Study, settings: Mapping[str, Any]) -> Path:
    """Calibrate anew and ship the result as the snapshot of (study, settings), replacing older
    snapshots of the study (of any key, and pickles of the format before JSON)."""
    model = calibrate(study, settings)
    SNAPSHOTS.mkdir(exist_ok=True)
    for old in [*SNAPSHOTS.glob(f"cohort-model-{study.name}-*{model_json.SUFFIX}"),
                *SNAPSHOTS.glob(f"cohort-model-{study.name}-*.pkl")]:
        old.unlink()
    path = SNAPSHOTS / model_filename(study, settings)
    atomic_write_bytes(path, model_json.dumps(model).encode())
    return path


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m sim.cohort.snapshot",
                            description="Calibrate the default study's cohort model (about a minute) and write "
                                        "sim/cohort/snapshots/cohort-model-<study>-<key>.json.").parse_args(argv)
    conf = resources.files("sim.conf")
    settings = yaml.safe_load((conf / "cohort" / "tominaga2025.yaml").read_text())
    study = load_study(yaml.safe_load((conf / "study" / "tominaga2025.yaml").read_text()))
    print(write_snapshot(study, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The reproduce job (experiment reproduce_paper): the paper-size cohorts are its replicates, every
cohort override is honoured, and the exit code says whether a required calibration target failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from sim import app, experiment
from sim.config import ConfigError
from sim.cohort.generate import generate
from sim.engine import condition_stream, replicate_rng
from sim.jobs import reproduce
from sim.methods.pipeline import fit_and_match

ROOT = Path(__file__).resolve().parents[1]

def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", overrides=["experiment=reproduce_paper", "n_jobs=1", "progress=false", *overrides])


def _mean_pairs_by_hand(cfg, n_cohorts: int) -> float:
    """Without the engine: cohort r of the (only) condition from replicate_rng(seed, stream, r),
    matched with the pipeline's PS fit and matcher."""
    _, _, plans = experiment.prepare(cfg)
    design, spec = plans[0]
    stream = condition_stream({})
    pairs = []
    for r in range(n_cohorts):
        rng = replicate_rng(int(cfg.seed), stream, r)
        pairs.append(fit_and_match(generate(design, rng).columns, spec, rng)[1].n_pairs)
    return float(np.mean(pairs))


@pytest.fixture(scope="module")
def PAIRS_263_500():
    return _mean_pairs_by_hand(_cfg(), 500)


@pytest.fixture(scope="module")
def PAIRS_600_50():
    return _mean_pairs_by_hand(_cfg("cohort.n=600", "experiment.pair_cohorts=50", "experiment.check_n=20000"), 50)


def _pairs_row(out: Path) -> pd.Series:
    cal = pd.read_csv(out / "calibration.csv")
    return cal[cal["quantity"].str.startswith("mean matched pairs")].iloc[0]


def test_mean_pairs_and_files_as_before(tmp_path, capsys, PAIRS_263_500):
    out = tmp_path / "run"
    assert app.run(_cfg(), out) == 0
    row = _pairs_row(out)
    assert row["synthetic"] == pytest.approx(PAIRS_263_500, abs=1e-12)
    assert "500 cohorts of n = 263" in row["quantity"]
    assert len(pd.read_csv(out / "cohort.csv")) == 263
    for name in ("calibration.png", "table1.md", "table3.md", "table4.md", "table5.md", "report.md", "summary.csv"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    mean = summary[summary["measure"] == "mean_n_pairs"].iloc[0]
    assert mean["value"] == pytest.approx(PAIRS_263_500, abs=1e-12) and mean["n"] == 500
    assert f"mean pairs {PAIRS_263_500:.1f} (paper: 51) over 500 cohorts of n = 263" in capsys.readouterr().out


def test_cohort_size_is_honoured(tmp_path, PAIRS_600_50):
    out = tmp_path / "run"
    app.run(_cfg("cohort.n=600", "experiment.pair_cohorts=50", "experiment.check_n=20000"), out)
    assert len(pd.read_csv(out / "cohort.csv")) == 600
    row = _pairs_row(out)
    assert "50 cohorts of n = 600" in row["quantity"]
    assert row["synthetic"] == pytest.approx(PAIRS_600_50, abs=1e-12)
    assert "synthetic cohort n = 600" in (out / "table4.md").read_text()


def test_failed_required_target_exits_1(tmp_path, monkeypatch, capsys):
    real = reproduce.calibration_table

    def failing(*args, **kwargs):
        table = real(*args, **kwargs)
        first = table.index[table["required"]][0]
        table.loc[first, "ok"] = False
        return table

    monkeypatch.setattr(reproduce, "calibration_table", failing)
    out = tmp_path / "run"
    cfg = _cfg("experiment.pair_cohorts=20")
    assert app.run(cfg, out) == 1
    assert "calibration targets failed" in capsys.readouterr().err
    assert (~pd.read_csv(out / "calibration.csv")["ok"]).any()
    # and the result says so without the CLI and without writing files too
    assert experiment.run(cfg).exit_code == 1


@pytest.mark.parametrize("override, key", [("experiment.pair_cohorts=1", "experiment.pair_cohorts"),
                                           ("experiment.check_n=10", "experiment.check_n"),
                                           ("experiment.check_n=2.5", "experiment.check_n"),
                                           ("+experiment.grid={cohort.n:[263,500]}", "experiment.grid")])
def test_bad_settings_are_config_errors(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        experiment.prepare(_cfg(override))
    assert "\n" not in str(err.value)

"""Effect sizes on one footing: one MCID of each outcome in SD units of its change from baseline.

The outcomes' MCIDs (conf/study: Barthel 9.25 points, EQ-5D 0.063, VAS 15 mm, face scale 2
points) are not equally demanding: a "one-MCID" effect is a large effect on one scale and a small
one on another, so powers and sample sizes "for one MCID" differ between outcomes for that reason
alone. `effect_units` sets each MCID beside the SD of that outcome's change from baseline
(`sim.cohort.generate.reference_change_sd`: the reference patients of the calibrated model, without
treatment, alive at the visit; the unit of `cohort.effect_sd` and of an unmeasured confounder's
`outcome_effect`), per outcome and follow-up visit:

    mcid        one MCID in outcome units
    sd_change   the SD of the change from baseline (outcome units, improvement scale)
    mcid_in_sd  one MCID in SD units of the change: mcid / sd_change

A Monte Carlo run writes the table as `effect_units.csv` (UNITS_FILE) beside its key table and in
report.md; a curated answer quotes it (`mcid_in_sd`) and shows it under UNITS_TITLE.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sim.cohort.model import CohortModel
    from sim.jobs.conditions import Condition

UNITS_FILE = "effect_units.csv"
UNITS_TITLE = "Effect sizes in SD units"
UNITS_CAPTION = (
    "One MCID of each outcome (outcome units, conf/study) beside the SD of that outcome's change from "
    "baseline (`sd_change`: the calibrated model's reference patients without treatment, alive at the visit; "
    "the unit of `cohort.effect_sd`), and one MCID in those SD units (`mcid_in_sd` = mcid / sd_change). "
    "An effect of one MCID is a larger standardised effect on an outcome whose `mcid_in_sd` is larger, so "
    "rejection rates and sample sizes for one MCID compare outcomes on different footings; an effect of "
    "x SD is the same standardised effect on every outcome.")
UNITS_SECTION = (UNITS_TITLE, UNITS_FILE, UNITS_CAPTION)
COLUMNS = ["outcome", "timepoint", "mcid", "sd_change", "mcid_in_sd"]


def effect_units(model: "CohortModel", outcomes: Sequence[str] | None = None,
                 times: Sequence[str] | None = None) -> pd.DataFrame:
    """Per outcome x follow-up visit of `model` (those named, in the model's order): mcid,
    sd_change (reference_change_sd) and mcid_in_sd = mcid / sd_change."""
    from sim.cohort.generate import reference_change_sd

    sds = reference_change_sd(model)
    rows = []
    for out in model.outcomes:
        if outcomes is not None and out.name not in outcomes:
            continue
        for t in model.follow_up:
            if times is not None and t not in times:
                continue
            mcid, sd = float(model.mcid[out.name]), float(sds[(out.name, t)])
            rows.append({"outcome": out.name, "timepoint": t, "mcid": mcid, "sd_change": sd, "mcid_in_sd": mcid / sd})
    return pd.DataFrame(rows, columns=COLUMNS)


def _analysed(cfg: Mapping[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    out = (cfg.get("method") or {}).get("outcomes") or {}
    names, times = out.get("names"), out.get("times")
    return (list(names) if names else None), (list(times) if times else None)


def condition_units(conds: Sequence["Condition"], factor_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """effect_units of the conditions' cohort models (the analysed outcomes and visits). One table
    when every condition has the same model (the usual case: the grid varies the design, not the
    calibration); otherwise one block per condition, with the grid factors as leading columns
    (named by `factor_names`, dotted key -> column)."""
    from sim.cohort.calibrate import calibrated
    from sim.jobs.conditions import study_of

    tables = [effect_units(calibrated(study_of(c.cfg), c.cfg["cohort"]), *_analysed(c.cfg)) for c in conds]
    if all(t.equals(tables[0]) for t in tables[1:]):
        return tables[0]
    names = dict(factor_names or {})
    return pd.concat([t.assign(**{names.get(k, k): v for k, v in c.factors.items()})
                      [[names.get(k, k) for k in c.factors] + COLUMNS] for c, t in zip(conds, tables)],
                     ignore_index=True)


def run_units(run_dir: Path) -> pd.DataFrame:
    """The run's effect_units.csv; computed from the run's configuration (.hydra/config.yaml) and
    written there the first time, for a run that did not write it."""
    run_dir = Path(run_dir)
    path = run_dir / UNITS_FILE
    if not path.is_file():
        from omegaconf import OmegaConf

        from sim.engine.atomic import atomic_writer
        from sim.jobs.conditions import conditions, short_names

        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        conds = conditions(cfg)
        table = condition_units(conds, short_names(list(conds[0].factors)))
        with atomic_writer(path) as fh:
            table.to_csv(fh, index=False)
    return pd.read_csv(path)


def mcid_in_sd(units: pd.DataFrame, outcome: str, timepoint: str) -> float:
    """One MCID of `outcome` at `timepoint` in SD units of its change (NaN if not in the table)."""
    d = units[(units["outcome"] == outcome) & (units["timepoint"] == timepoint)]["mcid_in_sd"]
    return float(d.iloc[0]) if len(d) and np.all(d == d.iloc[0]) else float("nan")


def in_sd(units: pd.DataFrame, outcome: str, timepoint: str) -> str:
    """'1 MCID = 0.62 SD' for the answers' sentences."""
    return f"1 MCID = {mcid_in_sd(units, outcome, timepoint):.2f} SD"


def span(units: pd.DataFrame, timepoint: str | None = None) -> str:
    """'0.22 SD (eq5d m6) to 0.67 SD (face m1)': the smallest and largest MCID in SD units (at one
    visit if `timepoint` is given)."""
    d = units if timepoint is None else units[units["timepoint"] == timepoint]
    lo, hi = d.loc[d["mcid_in_sd"].idxmin()], d.loc[d["mcid_in_sd"].idxmax()]
    return (f"{lo.mcid_in_sd:.2f} SD ({lo.outcome} {lo.timepoint}) to {hi.mcid_in_sd:.2f} SD "
            f"({hi.outcome} {hi.timepoint})")


def at_visit(units: pd.DataFrame, timepoint: str, outcomes: Sequence[str] | None = None) -> str:
    """'one MCID = barthel 0.30, eq5d 0.22, face 0.61, vas 0.44 SD of the change' at one visit
    (the outcomes given, in that order, else the table's)."""
    d = units[units["timepoint"] == timepoint]
    names = list(outcomes) if outcomes is not None else list(dict.fromkeys(d["outcome"]))
    return "one MCID = " + ", ".join(f"{o} {mcid_in_sd(d, o, timepoint):.2f}" for o in names) + " SD of the change"

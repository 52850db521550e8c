"""Direct simulation of a trial's power at one n per arm: the check that settles a gap between a
simulated n (a probit fit over a grid of n, sim.power.solve) and a closed form.

Why: the fitted curve carries its own error, most at the smallest n, and both numbers are rounded
up for planning; a gap of a few patients there says little until the power at the closed-form n
itself is known. `direct_checks` takes the largest unrounded gaps (sim.power.plan.comparison_table)
and simulates the power (the benefit-direction rejection rate, as the sample size is solved on) at
the closed-form n rounded down and up, with enough replicates that its Monte Carlo SE tells
whether the target is reached there.

Trials are cut from large cohorts of the design: patients are i.i.d., so 2 x n_per_arm of them
are distributed as the job's per-replicate cohort; each trial is randomised and analysed by the
job's own code (sim.methods.trial).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from sim.cohort.generate import Design, generate
from sim.methods.trial import TrialSpec, analyse_trial, randomise
from sim.power.plan import largest_gap

__all__ = ["direct_power", "direct_checks", "CHECK_COLUMNS"]

CHECK_COLUMNS = ["effect_mcid", "outcome", "timepoint", "power", "analysis", "closed", "closed_n", "sim_n", "sim_low",
                 "sim_high", "gap", "n_per_arm", "role", "reps", "power_direct", "mcse"]
Z = 2.0  #: MCSEs the simulated power must clear to count as above or below the target (as sim.report.phrasing)


def direct_power(design: Design, spec: TrialSpec, reps: int, rng: np.random.Generator, *,
                 block: int = 400_000) -> tuple[float, float, int]:
    """(benefit-direction rejection rate, its MCSE, trials analysed) of `reps` trials of
    spec.n_per_arm per arm, for the one outcome, time and analysis of `spec`; cohorts are drawn
    `block` patients at a time. A trial whose analysis fails (p NaN) is not counted."""
    if len(spec.outcomes) != 1 or len(spec.times) != 1 or len(spec.analyses) != 1:
        raise ValueError("direct_power: spec must name one outcome, one time and one analysis")
    if not (isinstance(reps, (int, np.integer)) and reps >= 1):
        raise ValueError(f"reps must be a whole number >= 1, got {reps!r}")
    m = 2 * spec.n_per_arm
    per = max(1, block // m)
    dirs = {o.name: o.direction() for o in design.model.outcomes}
    hits = used = done = 0
    while done < reps:
        k = min(per, reps - done)
        big = generate(dataclasses.replace(design, n=m * k), rng)
        for r in range(k):
            z = randomise(m, spec.n_per_arm, rng)
            cols = analyse_trial(big.take(slice(r * m, (r + 1) * m)), z, spec, dirs, design.model.visit_days,
                                 design.effect)
            p, fav = cols["p_value"][0], cols["favours"][0]
            if np.isfinite(p):
                used += 1
                hits += bool(p < spec.alpha and fav > 0)
        done += k
    rate = hits / used if used else math.nan
    return rate, math.sqrt(rate * (1 - rate) / used) if used else math.nan, used


def _side(rate: float, mcse: float, target: float) -> int:
    """+1 / -1 when the power's Z-MCSE band lies above / below the target, 0 when it covers it."""
    return 1 if rate - Z * mcse > target else -1 if rate + Z * mcse < target else 0


def direct_checks(cmp: pd.DataFrame, plan: Callable[[float], tuple[Design, TrialSpec]],
                  rng_for: Callable[[Mapping], np.random.Generator], *, top: int = 3,
                  reps: int = 20_000, walk: int = 4) -> pd.DataFrame:
    """For the `top` rows of a comparison table with the largest |gap|: the power simulated
    directly at the closed-form n rounded down and up (`role` floor / ceil) and, when the target
    is missed at the n rounded up (or passed at the n rounded down) beyond Z MCSE, at up to `walk`
    further n one patient apart in that direction until it is not (`role` walk), so that the table
    also brackets the n at which direct simulation reaches the target. Columns CHECK_COLUMNS.
    `plan(effect_mcid)` gives the design and trial spec at that effect; `rng_for(key)` the stream of
    one check (key: effect, outcome, time, analysis, n per arm)."""
    rows = []
    for g in largest_gap(cmp, k=top).itertuples(index=False):
        design, spec = plan(float(g.effect_mcid))

        def run(n: int, role: str) -> int:
            one = dataclasses.replace(spec, n_per_arm=int(n), outcomes=(g.outcome,), times=(g.timepoint,),
                                      analyses=(g.analysis,))
            key = {"effect_mcid": float(g.effect_mcid), "outcome": g.outcome, "timepoint": g.timepoint,
                   "analysis": g.analysis, "n_per_arm": int(n)}
            rate, mcse, used = direct_power(dataclasses.replace(design, n=2 * int(n)), one, reps, rng_for(key))
            rows.append([g.effect_mcid, g.outcome, g.timepoint, g.power, g.analysis, g.closed, g.closed_n, g.sim_n,
                         g.sim_low, g.sim_high, g.gap, int(n), role, used, rate, mcse])
            return _side(rate, mcse, g.power)

        low = math.floor(g.closed_n)
        below, above = run(low, "floor"), run(low + 1, "ceil")
        n, side, step = (low + 1, above, 1) if above < 0 else (low, below, -1)
        for _ in range(walk if side == -step else 0):
            n += step
            if n < 2 or run(n, "walk") != -step:
                break
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)

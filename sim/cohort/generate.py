"""Generate: a calibrated CohortModel plus a design (n, confounding, effect) becomes a Cohort.

A Cohort carries both potential outcomes, so the true ATE and ATT of each outcome's change from
baseline are known per replicate. Effects are given on the observed scale (outcome units of
improvement); because of floors and ceilings they are applied as a latent shift solved so that the
population ATE on the observed scale equals the requested effect. An optional unmeasured confounder
U (`cohort.unmeasured`, sim.cohort.unmeasured) shifts treatment and both potential outcomes alike.
Both potential death days are generated (`cohort.survival_effect`) and both potential missed visits
(`cohort.attrition_effect`; sim.cohort.attrition), so each patient's principal stratum is known:
a potential outcome exists when the patient is alive at the visit under that arm, and it is
observed when the patient is also seen (did not miss the visit). The design (intercept, latent
shifts) is solved once per condition in sim.cohort.design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from sim.cohort import model as M
from sim.cohort import unmeasured as U
from sim.cohort.unmeasured import check_unmeasured  # noqa: F401  (re-exported for the config check)
from sim.cohort.design import (_REFERENCE_N, Design, make_design, reference_change_sd,  # noqa: F401
                               reference_latents, requested_effects, solve_intercept)  # (re-exported)
from sim.cohort.mechanism import Latents


@dataclass
class Cohort:
    """One synthetic cohort: `columns` (arrays, one row per patient) and true effects."""

    columns: dict[str, np.ndarray]
    # delta[(outcome, time)] = (delta under control, delta under treatment), improvement scale; NaN
    # where the patient is dead at the visit under that arm
    potential_deltas: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # per follow-up visit: (alive under control, alive under treatment), (seen ..., seen ...)
    alive: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    death_days: tuple[np.ndarray, np.ndarray] | None = None  # (without, with decompression)

    @property
    def n(self) -> int:
        return len(self.columns["treated"])

    def take(self, rows) -> "Cohort":
        """The patients `rows` (an index, slice or mask) as a cohort of their own."""
        pair = lambda p: (p[0][rows], p[1][rows])  # noqa: E731
        return Cohort({k: v[rows] for k, v in self.columns.items()},
                      {k: pair(v) for k, v in self.potential_deltas.items()},
                      {k: pair(v) for k, v in self.alive.items()}, {k: pair(v) for k, v in self.seen.items()},
                      pair(self.death_days) if self.death_days is not None else None)

    def true_effects(self, mask: np.ndarray | None = None) -> dict[tuple[str, str], float]:
        """Mean individual effect on the change from baseline among `mask` (default: everyone),
        over patients alive at the visit under both arms (the survivor average causal effect)."""
        out = {}
        for key, (d0, d1) in self.potential_deltas.items():
            diff = d1 - d0
            if mask is not None:
                diff = diff[mask]
            diff = diff[~np.isnan(diff)]
            out[key] = float(diff.mean()) if diff.size else float("nan")
        return out

    def to_frame(self, model: M.CohortModel | None = None) -> pd.DataFrame:
        df = pd.DataFrame(self.columns)
        if model is not None:
            for cov in model.core + model.others:
                if cov.kind in ("categorical", "nominal") and cov.name in df:
                    df[cov.name] = np.asarray(cov.categories, dtype=object)[df[cov.name].to_numpy()]
        return df

def generate(design: Design, rng: np.random.Generator) -> Cohort:
    """One cohort of design.n patients; all randomness from `rng`."""
    model = design.model
    lat = model.draw(design.n, rng)
    # U's noise comes after every other draw, so a design without U draws exactly what it always did
    u_noise = U.draw_noise(rng, design.n) if design.unmeasured is not None else None
    return cohort_from_latents(design, lat, u_noise)


def generate_batch(design: Design, rngs, only: Iterable[str] | None = None) -> Cohort:
    """The cohorts of `rngs` (one replicate each, drawn as `generate` draws it) stacked into one
    cohort of len(rngs) x design.n rows, replicate by replicate: row i of replicate b is row
    b * n + i. Computed in one pass, since every column is computed patient by patient; the
    values equal `generate`'s for each rng to the bit (tests/test_batched.py). `only`: the
    columns an analysis reads beyond the outcomes, deaths and visits; the covariates it does not
    name are left out, and the operation's consequences unless it names one of them (the columns
    kept are the same)."""
    lat, noise = batch_kernels().draw_batch(design.model, design.n, rngs, design.unmeasured is not None)
    return cohort_from_latents(design, lat, noise, only, compiled=True)


def covariate_sources(model: M.CohortModel, names: Iterable[str]) -> frozenset[str]:
    """The covariates of the model that columns `names` (covariates, `<name>_code`, one-hot
    `<name>_<category>`, refinements, derived indicators) are computed from, and those the model
    itself needs: the treatment model's and the prognostic score's."""
    out = set()
    needs = (*names, *model.log_or, *model.omitted_log_or, *model.prognosis_weights)
    covs = [c.name for c in model.core + model.others]
    for name in needs:
        out.add(name)
        out.add(name.removesuffix("_code"))
        out.update(c for c in covs if name.startswith(c + "_"))
    out.update(ref.source for ref in model.refinements if ref.column in out)
    out.update(source for source, _ in model.derived.values())
    return frozenset(out)


def cohort_from_latents(design: Design, lat: Latents, u_noise: np.ndarray | None = None,
                        only: Iterable[str] | None = None, compiled: bool = False) -> Cohort:
    """The design laid over the model's steps (sim.cohort.mechanism): its intercept and confounding
    on the treatment, U on the treatment and both potential outcomes, its survival and attrition
    effects, and the effect's latent shifts. `compiled`: the outcomes by batch_kernels' twin of
    outcome_block (the same values)."""
    model = design.model
    cols, L = model.covariates(lat, None if only is None else covariate_sources(model, only))
    P = model.prognosis(cols)
    eta = design.intercept + model.linear_predictor(cols, design.confounding)
    ud = design.unmeasured
    u = None
    if ud is not None:
        if u_noise is None or u_noise.shape != (lat.n,):
            raise ValueError("a design with an unmeasured confounder needs u_noise: one N(0, 1) per patient")
        u = ud.values(L, u_noise)
        eta = eta + ud.treatment_log_or * u
    treated, ps_true = model.treatment(eta, lat)
    is_treated = treated == 1
    H = model.health(P, lat)
    t0, t1 = model.death_days(L, H, lat, design.health_scale, design.survival_effect)
    columns: dict[str, np.ndarray] = {"treated": treated, "ps_true": ps_true, **cols}
    columns.update(model.deaths(t0, t1, is_treated, lat))
    if only is None or not {*model.surgery.continuous, *model.surgery.binary}.isdisjoint(only):
        columns.update(model.operation(is_treated, lat))
    alive, seen, visit_columns = model.visits(t0, t1, is_treated, H, lat, design.attrition, design.attrition_effect)
    columns.update(visit_columns)
    mult = 1.0 + design.heterogeneity * P
    terms = {} if ud is None else {k: x for k in _keys(model) if (x := ud.outcome_term(k, u)) is not None}
    block = batch_kernels().outcome_block if compiled else None
    outcomes, potential = model.outcome_columns(P, lat, design.latent_shift, mult, terms, alive, seen, is_treated, block)
    columns.update(outcomes)
    if u is not None:
        columns[U.U_COLUMN] = u  # recorded for diagnostics; never a PS covariate (see sim.cohort.unmeasured)
    return Cohort(columns, potential, alive, seen, (t0, t1))


def _keys(model: M.CohortModel) -> list[tuple[str, str]]:
    return [(out.name, t) for out in model.outcomes for t in model.follow_up]


def batch_kernels():
    """sim.cohort.batch_kernels, imported when first needed: numba is for the workers that simulate."""
    from sim.cohort import batch_kernels as K

    return K

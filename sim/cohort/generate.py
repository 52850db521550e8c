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

import numpy as np
import pandas as pd

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort import unmeasured as U
from sim.cohort.unmeasured import check_unmeasured  # noqa: F401  (re-exported for the config check)
from sim.cohort.design import (_REFERENCE_N, Design, _tree, make_design, reference_change_sd,  # noqa: F401
                               reference_latents, requested_effects, solve_intercept)  # (re-exported)
from sim.numerics import expit


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
    lat = M.draw_latents(model, design.n, rng)
    # U's noise comes after every other draw, so a design without U draws exactly what it always did
    u_noise = U.draw_noise(rng, design.n) if design.unmeasured is not None else None
    return cohort_from_latents(design, lat, u_noise)


def generate_batch(design: Design, rngs) -> Cohort:
    """The cohorts of `rngs` (one replicate each, drawn as `generate` draws it) stacked into one
    cohort of len(rngs) x design.n rows, replicate by replicate: row i of replicate b is row
    b * n + i. Computed in one pass, since every column is computed patient by patient; the
    values equal `generate`'s for each rng to the bit (tests/test_batched.py)."""
    n = design.n
    shapes = M.latent_shapes(design.model, n)
    lat = M.Latents(**{k: np.empty((len(rngs) * n, *shape[1:])) for k, shape in shapes.items()})
    noises = []
    for b, rng in enumerate(rngs):
        rows = slice(b * n, (b + 1) * n)
        M.draw_latents(design.model, n, rng, M.Latents(**{k: getattr(lat, k)[rows] for k in shapes}))
        if design.unmeasured is not None:
            noises.append(U.draw_noise(rng, n))
    return cohort_from_latents(design, lat, np.concatenate(noises) if noises else None)


def cohort_from_latents(design: Design, lat: M.Latents, u_noise: np.ndarray | None = None) -> Cohort:
    model = design.model
    cols, L, P = _tree(model, lat)
    eta = design.intercept + M.linear_predictor(model, cols, design.confounding)
    ud = design.unmeasured
    u = None
    if ud is not None:
        if u_noise is None or u_noise.shape != (lat.n,):
            raise ValueError("a design with an unmeasured confounder needs u_noise: one N(0, 1) per patient")
        u = ud.values(L, u_noise)
        eta = eta + ud.treatment_log_or * u
    ps_true = expit(eta)
    treated = (lat.treat_u < ps_true).astype(np.int8)
    is_treated = treated == 1
    H = M.health(model, P, lat)
    t0, t1 = M.death_days(model, L, H, lat, design.health_scale, design.survival_effect)
    death = np.where(is_treated, t1, t0)
    followup = M.followup_days(model.survival, lat.cens_u)

    columns: dict[str, np.ndarray] = {"treated": treated, "ps_true": ps_true}
    columns.update(cols)
    died = (death <= followup).astype(np.int8)
    columns["died"] = died
    columns["survival_days"] = np.round(np.minimum(death, followup))

    for j, (name, (m0, m1)) in enumerate(model.surgery.continuous.items()):
        z = lat.surgery[:, j]
        columns[name] = np.where(is_treated, m1(z), m0(z))
    for j, (name, (p0, p1)) in enumerate(model.surgery.binary.items()):
        p = np.where(is_treated, p1, p0)
        columns[name] = (lat.surgery_u[:, j] < p).astype(np.int8)

    alive, seen = {}, {}
    for j, t in enumerate(model.follow_up):
        day = model.visit_days[t]
        alive[t] = (t0 > day, t1 > day)
        m0, m1 = A.missed(design.attrition or model.attrition, H, lat.missed_u[:, j], t,
                          odds_ratio=design.attrition_effect)
        seen[t] = (alive[t][0] & ~m0, alive[t][1] & ~m1)
        columns[f"seen_{t}"] = np.where(is_treated, seen[t][1], seen[t][0]).astype(np.int8)
        columns[f"dead_{t}"] = (death <= day).astype(np.int8)

    potential: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    mult = 1.0 + design.heterogeneity * P
    for o_idx, out in enumerate(model.outcomes):
        ylat = M.outcome_latents(model, out, P, lat.outcome[:, o_idx, :])
        pre = out.observe(ylat[model.baseline])
        columns[f"{out.name}_{model.baseline}"] = pre
        for t in model.follow_up:
            alive0, alive1 = alive[t]
            yt = ylat[t]
            term = ud.outcome_term((out.name, t), u) if ud is not None else None
            if term is not None:  # U shifts both potential outcomes alike
                yt = yt + out.direction() * term
            y0 = out.observe(yt)
            shift = design.latent_shift.get((out.name, t), 0.0)
            y1 = out.observe(yt + out.direction() * shift * mult) if shift else y0
            y0 = np.where(alive0, y0, np.nan)
            y1 = np.where(alive1, y1, np.nan)
            seen_t = columns[f"seen_{t}"] == 1
            columns[f"{out.name}_{t}"] = np.where(seen_t, np.where(is_treated, y1, y0), np.nan)
            columns[f"{out.name}_{t}_y0"] = y0
            columns[f"{out.name}_{t}_y1"] = y1
            d = out.direction()
            potential[(out.name, t)] = ((y0 - pre) * d, (y1 - pre) * d)
            columns[f"{out.name}_delta_{t}"] = (columns[f"{out.name}_{t}"] - pre) * d
    if u is not None:
        columns[U.U_COLUMN] = u  # recorded for diagnostics; never a PS covariate (see sim.cohort.unmeasured)
    return Cohort(columns, potential, alive, seen, (t0, t1))

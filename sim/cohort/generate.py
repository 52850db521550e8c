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
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort import unmeasured as U
from sim.cohort.unmeasured import check_unmeasured  # noqa: F401  (re-exported for the config check)
from sim.cohort.design import (_REFERENCE_N, Design, make_design, reference_change_sd,  # noqa: F401
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


def cohort_from_latents(design: Design, lat: M.Latents, u_noise: np.ndarray | None = None,
                        only: Iterable[str] | None = None, compiled: bool = False) -> Cohort:
    """`compiled`: the outcomes by batch_kernels' twin of outcome_block (the same values)."""
    model = design.model
    cols, L = M.covariates(model, lat, None if only is None else covariate_sources(model, only))
    P = M.prognosis(model, cols)
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

    surgery = only is None or not {*model.surgery.continuous, *model.surgery.binary}.isdisjoint(only)
    for j, (name, (m0, m1)) in enumerate(model.surgery.continuous.items() if surgery else ()):
        z = lat.surgery[:, j]
        columns[name] = np.where(is_treated, m1(z), m0(z))
    for j, (name, (p0, p1)) in enumerate(model.surgery.binary.items() if surgery else ()):
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

    mult = 1.0 + design.heterogeneity * P
    terms = {} if ud is None else {k: x for k in _keys(model) if (x := ud.outcome_term(k, u)) is not None}
    observed = np.stack([columns[f"seen_{t}"] == 1 for t in model.follow_up])
    alive0, alive1 = (np.stack([alive[t][arm] for t in model.follow_up]) for arm in (0, 1))
    block = batch_kernels().outcome_block if compiled else outcome_block
    pre, y0, y1, obs, d0, d1, delta = block(model, design.latent_shift, P, mult, lat.outcome, terms,
                                            alive0, alive1, observed, is_treated)
    potential: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for o, out in enumerate(model.outcomes):
        columns[f"{out.name}_{model.baseline}"] = pre[o]
        for k, t in enumerate(model.follow_up):
            columns[f"{out.name}_{t}"] = obs[o, k]
            columns[f"{out.name}_{t}_y0"] = y0[o, k]
            columns[f"{out.name}_{t}_y1"] = y1[o, k]
            potential[(out.name, t)] = (d0[o, k], d1[o, k])
            columns[f"{out.name}_delta_{t}"] = delta[o, k]
    if u is not None:
        columns[U.U_COLUMN] = u  # recorded for diagnostics; never a PS covariate (see sim.cohort.unmeasured)
    return Cohort(columns, potential, alive, seen, (t0, t1))


def outcome_block(model: M.CohortModel, latent_shift: Mapping[tuple[str, str], float], P: np.ndarray,
                  mult: np.ndarray, v: np.ndarray, terms: Mapping[tuple[str, str], np.ndarray],
                  alive0: np.ndarray, alive1: np.ndarray, observed: np.ndarray, treated: np.ndarray) -> tuple:
    """Each outcome's baseline (O, N) and, per follow-up (O, T, N): potential outcomes y0, y1 (NaN
    when dead under that arm), the observed value (NaN when unseen), the potential changes
    d0, d1 and the observed change, all in the improvement direction. `terms`: U's term per
    (outcome, visit); alive0/alive1/observed: (T, N). batch_kernels.outcome_block is its twin."""
    O, T, N = len(model.outcomes), len(model.follow_up), P.shape[0]
    pre = np.empty((O, N))
    y0, y1, obs, d0, d1, delta = (np.empty((O, T, N)) for _ in range(6))
    for o, out in enumerate(model.outcomes):
        ylat = M.outcome_latents(model, out, P, v[:, o, :])
        pre[o] = out.observe(ylat[model.baseline])
        d = out.direction()
        for k, t in enumerate(model.follow_up):
            yt = ylat[t]
            if (out.name, t) in terms:  # U shifts both potential outcomes alike
                yt = yt + d * terms[(out.name, t)]
            z0 = out.observe(yt)
            shift = latent_shift.get((out.name, t), 0.0)
            z1 = out.observe(yt + d * shift * mult) if shift else z0
            y0[o, k] = np.where(alive0[k], z0, np.nan)
            y1[o, k] = np.where(alive1[k], z1, np.nan)
            obs[o, k] = np.where(observed[k], np.where(treated, y1[o, k], y0[o, k]), np.nan)
            d0[o, k] = (y0[o, k] - pre[o]) * d
            d1[o, k] = (y1[o, k] - pre[o]) * d
            delta[o, k] = (obs[o, k] - pre[o]) * d
    return pre, y0, y1, obs, d0, d1, delta


def _keys(model: M.CohortModel) -> list[tuple[str, str]]:
    return [(out.name, t) for out in model.outcomes for t in model.follow_up]


def batch_kernels():
    """sim.cohort.batch_kernels, imported when first needed: numba is for the workers that simulate."""
    from sim.cohort import batch_kernels as K

    return K

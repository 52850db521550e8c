"""Generate: a calibrated CohortModel plus a design (n, confounding, effect) becomes a Cohort.

A Cohort carries both potential outcomes, so the true ATE and ATT of each outcome's change from
baseline are known per replicate. Effects are given on the observed scale (outcome units of
improvement); because of floors and ceilings they are applied as a latent shift solved so that the
population ATE on the observed scale equals the requested effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import optimize

from sim.cohort import model as M

POST = ("m1", "m6")
_REFERENCE_N = 100_000
_REFERENCE_SEED = 8_675_309


@dataclass(frozen=True)
class Design:
    """Everything a replicate needs besides its RNG; solved once per experimental condition."""

    model: M.CohortModel
    n: int
    confounding: float
    intercept: float
    effect: Mapping[tuple[str, str], float]  # requested observed-scale effect (improvement units)
    latent_shift: Mapping[tuple[str, str], float]
    heterogeneity: float = 0.0


@dataclass
class Cohort:
    """One synthetic cohort: `columns` (arrays, one row per patient) and true effects."""

    columns: dict[str, np.ndarray]
    # delta[(outcome, time)] = (delta under control, delta under treatment), improvement scale
    potential_deltas: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.columns["treated"])

    def true_effects(self, mask: np.ndarray | None = None) -> dict[tuple[str, str], float]:
        """Mean individual effect on the change from baseline among `mask` (default: everyone),
        over patients alive at the visit."""
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


def _tree(model: M.CohortModel, lat: M.Latents) -> tuple[dict, np.ndarray, np.ndarray]:
    cols, L = M.covariates(model, lat)
    P = M.prognosis(model, cols)
    return cols, L, P


def solve_intercept(model: M.CohortModel, confounding: float, lat: M.Latents | None = None) -> float:
    """Intercept keeping the expected treated share at the study's (189/263) for this strength."""
    lat = lat if lat is not None else reference_latents(model)
    cols, _, _ = _tree(model, lat)
    eta = M.linear_predictor(model, cols, confounding)
    target = model.treated_share
    f = lambda a: M.expit(a + eta).mean() - target  # noqa: E731
    lo, hi = -30.0, 30.0
    return float(optimize.brentq(f, lo, hi, xtol=1e-12))


_REF_CACHE: dict[tuple, M.Latents] = {}


def reference_latents(model: M.CohortModel) -> M.Latents:
    """A fixed large latent sample; it depends only on the model's dimensions, hence the key."""
    key = (len(model.core), len(model.others), len(model.outcomes),
           len(model.surgery.continuous), len(model.surgery.binary))
    if key not in _REF_CACHE:
        _REF_CACHE.clear()
        _REF_CACHE[key] = M.draw_latents(model, _REFERENCE_N, np.random.default_rng(_REFERENCE_SEED))
    return _REF_CACHE[key]


def requested_effects(model: M.CohortModel, effect_mcid: float = 0.0,
                      effect: Mapping[str, Mapping[str, float]] | None = None) -> dict[tuple[str, str], float]:
    """effect_mcid x MCID for every outcome and post time, plus explicit per-outcome entries."""
    names = [o.name for o in model.outcomes]
    out = {(k, t): float(effect_mcid) * model.mcid.get(k, 0.0) for k in names for t in POST}
    for k, times in (effect or {}).items():
        if k not in names:
            raise ValueError(f"cohort.effect: unknown outcome {k!r}; allowed: {names}")
        if not isinstance(times, Mapping):
            raise ValueError(f"cohort.effect.{k}: must map time to effect, e.g. {{m1: 5, m6: 10}}")
        for t, v in times.items():
            if t not in POST:
                raise ValueError(f"cohort.effect.{k}.{t}: unknown time; allowed: {list(POST)}")
            out[(k, t)] += float(v)
    return out


def make_design(model: M.CohortModel, n: int, confounding: float = 1.0, effect_mcid: float = 0.0,
                effect: Mapping[str, Mapping[str, float]] | None = None,
                heterogeneity: float = 0.0) -> Design:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer, float)) or not np.isfinite(n) or int(n) != n or n < 2:
        raise ValueError(f"cohort.n must be a whole number >= 2, got {n!r}")
    if not np.isfinite(confounding) or confounding < 0:
        raise ValueError(f"cohort.confounding must be a number >= 0, got {confounding!r}")
    if not np.isfinite(heterogeneity):
        raise ValueError(f"cohort.effect_heterogeneity must be a finite number, got {heterogeneity!r}")
    requested = requested_effects(model, effect_mcid, effect)
    lat = reference_latents(model)
    intercept = solve_intercept(model, confounding, lat)
    shifts = {key: 0.0 for key in requested}
    if any(v != 0.0 for v in requested.values()):
        cols, L, P = _tree(model, lat)
        death, _ = M.death_and_followup(model.survival, L, lat.death, lat.cens_u)
        for o_idx, out in enumerate(model.outcomes):
            ylat = M.outcome_latents(out, P, lat.outcome[:, o_idx, :], model.partial_corr_m1_m6)
            for t in POST:
                target = requested[(out.name, t)]
                if target == 0.0:
                    continue
                alive = death > model.visit_days[t]
                y0 = out.observe(ylat[t][alive])
                mult = 1.0 + heterogeneity * P[alive]

                def ate(shift: float) -> float:
                    y1 = out.observe(ylat[t][alive] + out.direction() * shift * mult)
                    return float(np.mean(y1 - y0) * out.direction())

                width = out.upper - out.lower
                if abs(target) >= width:
                    raise ValueError(f"cohort.effect for {out.name} {t}: {target} exceeds the scale's range {width}")
                lo, hi = (0.0, 50 * width) if target > 0 else (-50 * width, 0.0)
                shifts[(out.name, t)] = float(optimize.brentq(lambda s: ate(s) - target, lo, hi, xtol=1e-9 * width))
    return Design(model, int(n), float(confounding), intercept, requested, shifts, float(heterogeneity))


def generate(design: Design, rng: np.random.Generator) -> Cohort:
    """One cohort of design.n patients; all randomness from `rng`."""
    model = design.model
    lat = M.draw_latents(model, design.n, rng)
    return cohort_from_latents(design, lat)


def cohort_from_latents(design: Design, lat: M.Latents) -> Cohort:
    model = design.model
    cols, L, P = _tree(model, lat)
    eta = design.intercept + M.linear_predictor(model, cols, design.confounding)
    ps_true = M.expit(eta)
    treated = (lat.treat_u < ps_true).astype(np.int8)
    death, followup = M.death_and_followup(model.survival, L, lat.death, lat.cens_u)

    columns: dict[str, np.ndarray] = {"treated": treated, "ps_true": ps_true}
    columns.update(cols)
    died = (death <= followup).astype(np.int8)
    columns["died"] = died
    columns["survival_days"] = np.round(np.minimum(death, followup))

    for j, (name, (m0, m1)) in enumerate(model.surgery.continuous.items()):
        z = lat.surgery[:, j]
        columns[name] = np.where(treated == 1, m1(z), m0(z))
    for j, (name, (p0, p1)) in enumerate(model.surgery.binary.items()):
        p = np.where(treated == 1, p1, p0)
        columns[name] = (lat.surgery_u[:, j] < p).astype(np.int8)

    potential: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    mult = 1.0 + design.heterogeneity * P
    for o_idx, out in enumerate(model.outcomes):
        ylat = M.outcome_latents(out, P, lat.outcome[:, o_idx, :], model.partial_corr_m1_m6)
        pre = out.observe(ylat["pre"])
        columns[f"{out.name}_pre"] = pre
        for t in POST:
            alive = death > model.visit_days[t]
            y0 = out.observe(ylat[t])
            shift = design.latent_shift.get((out.name, t), 0.0)
            y1 = out.observe(ylat[t] + out.direction() * shift * mult) if shift else y0
            y0 = np.where(alive, y0, np.nan)
            y1 = np.where(alive, y1, np.nan)
            columns[f"{out.name}_{t}"] = np.where(treated == 1, y1, y0)
            columns[f"{out.name}_{t}_y0"] = y0
            columns[f"{out.name}_{t}_y1"] = y1
            d = out.direction()
            potential[(out.name, t)] = ((y0 - pre) * d, (y1 - pre) * d)
            columns[f"{out.name}_delta_{t}"] = np.where(treated == 1, potential[(out.name, t)][1],
                                                        potential[(out.name, t)][0])
    return Cohort(columns, potential)

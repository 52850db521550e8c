"""Designs: what a replicate needs besides its random numbers, solved once per condition on a
fixed large reference sample of latents (common random numbers): the treatment intercept that
keeps the study's treated share, the latent shifts that give each requested effect on the observed
(bounded) scale, U's shifts, and attrition rescaled to a health_scale. sim.cohort.generate turns a
design and a generator into a cohort."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np
from scipy import optimize

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort import unmeasured as U
from sim.cohort.mechanism import Latents
from sim.numerics import INTERCEPT_BRACKET, intercept_for_share

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
    unmeasured: U.UnmeasuredDesign | None = None  # None: no U (kind none)
    survival_effect: float = 1.0  # hazard ratio of decompression on death, given (L, H)
    attrition_effect: float = 1.0  # odds ratio of decompression on missing a visit while alive
    health_scale: float = 1.0  # multiplies the calibrated dependence of death and missed visits on H
    attrition: A.AttritionModel | None = None  # missed visits at this health_scale (None: as calibrated)

def _tree(model: M.CohortModel, lat: Latents) -> tuple[dict, np.ndarray, np.ndarray]:
    cols, L = model.covariates(lat)
    P = model.prognosis(cols)
    return cols, L, P


def _reference_death(model: M.CohortModel, lat: Latents, L: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Death days without decompression, attrition as calibrated: effects, U's shifts and the SD
    unit are defined among the reference patients alive at the visit."""
    return model.death_days(L, model.health(P, lat), lat)[0]


def solve_intercept(model: M.CohortModel, confounding: float, lat: Latents | None = None) -> float:
    """Intercept keeping the expected treated share at the study's (189/263) for this strength."""
    lat = lat if lat is not None else reference_latents(model)
    cols, _, _ = _tree(model, lat)
    eta = model.linear_predictor(cols, confounding)
    return intercept_for_share(eta, model.treated_share, bracket=INTERCEPT_BRACKET)


_REF_CACHE: dict[tuple, Latents] = {}


def reference_latents(model: M.CohortModel) -> Latents:
    """A fixed large latent sample; it depends only on the model's dimensions, hence the key."""
    key = (len(model.core), len(model.others), len(model.outcomes), len(model.times),
           len(model.surgery.continuous), len(model.surgery.binary))
    if key not in _REF_CACHE:
        _REF_CACHE.clear()
        _REF_CACHE[key] = model.draw(_REFERENCE_N, np.random.default_rng(_REFERENCE_SEED))
    return _REF_CACHE[key]


def requested_effects(model: M.CohortModel, effect_mcid: float = 0.0,
                      effect: Mapping[str, Mapping[str, float]] | None = None,
                      effect_sd: float = 0.0) -> dict[tuple[str, str], float]:
    """effect_mcid x MCID plus effect_sd x the SD of the change (reference_change_sd) for every
    outcome and follow-up visit, plus explicit per-outcome entries (outcome units)."""
    names = [o.name for o in model.outcomes]
    out = {(k, t): float(effect_mcid) * model.mcid.get(k, 0.0) for k in names for t in model.follow_up}
    if effect_sd:
        for key, sd in reference_change_sd(model).items():
            out[key] += float(effect_sd) * sd
    for k, times in (effect or {}).items():
        if k not in names:
            raise ValueError(f"cohort.effect: unknown outcome {k!r}; allowed: {names}")
        if not isinstance(times, Mapping):
            example = ", ".join(f"{t}: 5" for t in model.follow_up)
            raise ValueError(f"cohort.effect.{k}: must map time to effect, e.g. {{{example}}}")
        for t, v in times.items():
            if t not in model.follow_up:
                raise ValueError(f"cohort.effect.{k}.{t}: unknown time; allowed: {list(model.follow_up)}")
            out[(k, t)] += float(v)
    return out


def make_design(model: M.CohortModel, n: int, confounding: float = 1.0, effect_mcid: float = 0.0,
                effect: Mapping[str, Mapping[str, float]] | None = None,
                heterogeneity: float = 0.0, unmeasured: Mapping | None = None, effect_sd: float = 0.0,
                survival_effect: float = 1.0, attrition_effect: float = 1.0, health_scale: float = 1.0) -> Design:
    """Solve a design on the reference latents: the treatment intercept, the latent shifts of the
    treatment effect (among the patients alive at the visit without decompression) and, with
    `unmeasured` (the raw `cohort.unmeasured` settings), U's latent shifts. ValueError (naming the
    setting) for anything that cannot be built."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer, float)) or not np.isfinite(n) or int(n) != n or n < 2:
        raise ValueError(f"cohort.n must be a whole number >= 2, got {n!r}")
    if not np.isfinite(confounding) or confounding < 0:
        raise ValueError(f"cohort.confounding must be a number >= 0, got {confounding!r}")
    if not np.isfinite(heterogeneity):
        raise ValueError(f"cohort.effect_heterogeneity must be a finite number, got {heterogeneity!r}")
    survival_effect = A.check_effect(survival_effect, "cohort.survival_effect")
    attrition_effect = A.check_effect(attrition_effect, "cohort.attrition_effect")
    if isinstance(health_scale, bool) or not np.isfinite(health_scale) or not 0 <= health_scale <= 5:
        raise ValueError(f"cohort.attrition.health_scale: must be a number in [0, 5] (1 = as calibrated), "
                         f"got {health_scale!r}")
    uset = U.parse_unmeasured(unmeasured, [o.name for o in model.outcomes], model.follow_up)
    requested = requested_effects(model, effect_mcid, effect, effect_sd)
    # the solved parts do not depend on n (nor on the analysis): conditions that differ only in
    # those (a caliper or sample-size grid) share one solve
    key = (id(model), float(confounding), tuple(sorted(requested.items())), float(heterogeneity), repr(uset),
           float(health_scale))
    hit = _DESIGN_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return replace(hit[1], n=int(n), survival_effect=survival_effect, attrition_effect=attrition_effect)
    design = _solve_design(model, confounding, requested, heterogeneity, uset, health_scale)
    if len(_DESIGN_CACHE) > 64:
        _DESIGN_CACHE.clear()
    _DESIGN_CACHE[key] = (model, design)
    return replace(design, n=int(n), survival_effect=survival_effect, attrition_effect=attrition_effect)


_DESIGN_CACHE: dict[tuple, tuple[M.CohortModel, Design]] = {}


def _solve_design(model: M.CohortModel, confounding: float, requested: dict[tuple[str, str], float],
                  heterogeneity: float, uset: U.UnmeasuredSettings | None, health_scale: float) -> Design:
    lat = reference_latents(model)
    any_effect = any(v != 0.0 for v in requested.values())
    if uset is not None or any_effect:
        cols, L, P = _tree(model, lat)
        death = _reference_death(model, lat, L, P)
    udesign, u_ref = None, None
    if uset is None:
        intercept = solve_intercept(model, confounding, lat)
    else:  # U from its own fixed reference stream, correlated with the reference L as in a replicate
        u_ref = uset.values(L, U.reference_noise(lat.n))
        eta = model.linear_predictor(cols, confounding)
        # bracket from the data, so any finite log-OR of U works
        intercept = intercept_for_share(eta + uset.treatment_log_or * u_ref, model.treated_share)
        udesign = _unmeasured_design(model, uset, lat, P, death)
    shifts = {key: 0.0 for key in requested}
    if any_effect:
        for o_idx, out in enumerate(model.outcomes):
            ylat = model.outcome_latents(out, P, lat.outcome[:, o_idx, :])
            for t in model.follow_up:
                target = requested[(out.name, t)]
                if target == 0.0:
                    continue
                alive = death > model.visit_days[t]
                y = ylat[t][alive]
                if udesign is not None:  # U is part of both potential outcomes: solve with it present
                    term = udesign.outcome_term((out.name, t), u_ref[alive])
                    if term is not None:
                        y = y + out.direction() * term
                shifts[(out.name, t)] = _solve_shift(out, t, y, P[alive], heterogeneity, target)
    attrition = None
    if health_scale != 1.0:
        ref_cols, ref_L, ref_P = _tree(model, lat)
        attrition = A.rescaled(model.attrition, float(health_scale), model.health(ref_P, lat))
    return Design(model, 2, float(confounding), intercept, requested, shifts, float(heterogeneity), udesign,
                  1.0, 1.0, float(health_scale), attrition)


def _solve_shift(out: M.OutcomeModel, t: str, y: np.ndarray, P: np.ndarray, heterogeneity: float,
                 target: float) -> float:
    """Latent shift s such that the mean over `y` (latent post-operative values of the reference
    patients alive at t) of the observed-scale effect of shifting each by s * (1 + h * P) is `target`.

    When 1 + h*P >= 0 for everyone the ATE is monotone in s and the root is unique. Otherwise some
    individual effects oppose the average and the ATE rises, then falls (those patients are pushed
    to the far bound): the smallest |s| reaching the target is taken, found on a geometric grid and
    refined by brentq; if no s reaches it, a ValueError names cohort.effect_heterogeneity.
    """
    y0 = out.observe(y)
    mult = 1.0 + heterogeneity * P
    d = out.direction()

    def ate(shift: float) -> float:
        y1 = out.observe(y + d * shift * mult)
        return float(np.mean(y1 - y0) * d)

    def f(shift: float) -> float:
        return ate(shift) - target

    width = out.upper - out.lower
    if abs(target) >= width:
        raise ValueError(f"cohort.effect_mcid, cohort.effect: the effect on {out.name} {t} ({target:g}) "
                                 f"exceeds the scale's range {width:g}")
    xtol = 1e-9 * width
    reverses = f"cohort.effect_heterogeneity: {heterogeneity:g} reverses the individual effect (1 + h*P < 0) " \
               f"for {np.mean(mult < 0):.0%} of patients, and"
    if mult.min() >= 0.0:
        lo, hi = (0.0, 50 * width) if target > 0 else (-50 * width, 0.0)
        if f(lo) * f(hi) > 0:
            best = ate(hi if target > 0 else lo)
            raise ValueError(f"cohort.effect for {out.name} {t}: {target:g} cannot be reached on the bounded "
                             f"scale (the largest possible ATE is about {best:.4g})")
        root = float(optimize.brentq(f, lo, hi, xtol=xtol))
    else:
        sign = 1.0 if target > 0 else -1.0
        prev, best, root = 0.0, 0.0, None
        for s in sign * width * np.geomspace(1e-4, 50.0, 121):
            v = f(s)
            if sign * v >= 0:
                root = float(optimize.brentq(f, min(prev, s), max(prev, s), xtol=xtol))
                break
            prev, best = s, max(best, sign * (v + target))
        if root is None:
            raise ValueError(f"{reverses} the ATE of {out.name} at {t} cannot reach {target:g} "
                             f"(at most about {sign * best:.4g})")
    # the ATE is a step function of the shift (a stepped scale): the root must still hit the target
    # (one patient crossing a step moves it by step/n; allow a few of those)
    got = ate(root)
    if root == 0.0 or not abs(got - target) <= 1e-3 * abs(target) + 10 * out.step / y.size:
        why = reverses + " there is" if mult.min() < 0.0 else f"cohort.effect_heterogeneity: {heterogeneity:g} leaves"
        raise ValueError(f"{why} no latent shift giving an ATE of {target:g} for {out.name} at {t} "
                         f"(closest {got:.4g}; the individual effects are too uneven)")
    return root


_U_CACHE: dict[tuple, tuple[M.CohortModel, U.UnmeasuredDesign]] = {}
_SD_CACHE: dict[int, tuple[M.CohortModel, dict[tuple[str, str], float]]] = {}


def _reference_survivors(model: M.CohortModel):
    """Each outcome and follow-up visit with the reference patients' latent values at the baseline and
    at the visit, among those alive then (without decompression): where effects and units are defined."""
    lat = reference_latents(model)
    cols, L, P = _tree(model, lat)
    death = _reference_death(model, lat, L, P)
    for o_idx, out in enumerate(model.outcomes):
        ylat = model.outcome_latents(out, P, lat.outcome[:, o_idx, :])
        for t in model.follow_up:
            alive = death > model.visit_days[t]
            yield out, t, ylat[model.baseline][alive], ylat[t][alive]


def _per_model(cache: dict, model: M.CohortModel, compute):
    """compute(model), cached per model object (the last few models)."""
    hit = cache.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    if len(cache) > 8:
        cache.clear()
    cache[id(model)] = (model, compute(model))
    return cache[id(model)][1]


def reference_change_sd(model: M.CohortModel) -> dict[tuple[str, str], float]:
    """SD of each outcome's change from baseline (improvement scale, no treatment, no U) among the
    reference patients alive at the visit: the unit of `cohort.effect_sd` and of U's outcome effect."""
    return _per_model(_SD_CACHE, model, lambda m: {
        (out.name, t): float(((out.observe(post) - out.observe(pre)) * out.direction()).std())
        for out, t, pre, post in _reference_survivors(m)})


def reachable_effects(model: M.CohortModel) -> dict[tuple[str, str], tuple[float, float]]:
    """The range of average effects a bounded scale allows (improvement direction), per outcome and
    visit: everyone pushed to the worst or to the best value, among the reference patients alive
    at the visit (where `cohort.effect` is defined). An effect outside it cannot be requested."""
    def reach(m):
        out_range = {}
        for out, t, _, post in _reference_survivors(m):
            d = out.direction()
            best, worst = (out.upper, out.lower) if d > 0 else (out.lower, out.upper)
            y0 = out.observe(post)
            out_range[(out.name, t)] = (float(np.mean(worst - y0) * d), float(np.mean(best - y0) * d))
        return out_range
    return _per_model(_REACH_CACHE, model, reach)


_REACH_CACHE: dict[int, tuple[M.CohortModel, dict[tuple[str, str], tuple[float, float]]]] = {}


def _unmeasured_design(model: M.CohortModel, uset: U.UnmeasuredSettings, lat: Latents, P: np.ndarray,
                       death: np.ndarray) -> U.UnmeasuredDesign:
    """U's latent shift per unit for each outcome and time (see sim.cohort.unmeasured), solved on the
    reference patients alive at the visit; cached per model and U setting (it depends on neither n,
    confounding, the treatment effect nor corr_core)."""
    key = (id(model), uset.kind, uset.prevalence if uset.kind == "binary" else None,
           tuple(sorted(uset.outcome_effect.items())))
    hit = _U_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return U.UnmeasuredDesign(uset, hit[1].latent_shift, hit[1].change_sd)
    noise = U.reference_noise(lat.n)
    sds = reference_change_sd(model)
    gamma = {}
    for o_idx, out in enumerate(model.outcomes):
        ylat = model.outcome_latents(out, P, lat.outcome[:, o_idx, :])
        for t in model.follow_up:
            alive = death > model.visit_days[t]
            y = ylat[t][alive]
            sd = sds[(out.name, t)]
            gamma[(out.name, t)] = U.solve_outcome_shift(
                uset.kind, uset.prevalence, out.observe, out.direction(), out.upper - out.lower, y,
                uset.outcome_effect[(out.name, t)], sd, noise[alive],
                f"cohort.unmeasured.outcome_effect.{out.name}.{t}")
    result = U.UnmeasuredDesign(uset, gamma, sds)
    if len(_U_CACHE) > 32:
        _U_CACHE.clear()
    _U_CACHE[key] = (model, result)
    return result

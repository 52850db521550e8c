"""Who is seen at a follow-up visit: death and missed visits, both depending on baseline health.

A change from baseline exists only for patients seen at the visit, and in the study those patients
started healthier than everyone (Fig. 1 minus Table 2: the completers' baseline Barthel is 6-8
points above all patients' at 6 months). So both ways of not being seen depend on H, baseline
health: the standardised baseline latent of the outcomes in `cohort.attrition.health` (improvement
direction), which carries the prognostic score P through the outcomes' loadings on it.

Death (times in days): log T = loc - scale * Z, Z = (a L + k b H + sqrt(1 - a^2) E) / s_k, with L
the core treatment index, b the calibrated loading on H, k = `cohort.attrition.health_scale` (1 as
calibrated, 0 none, 2 doubled) and s_k keeping Z standard normal. Decompression acts on the hazard
given (L, H): S1(t) = S0(t)^HR (`cohort.survival_effect`), both times from the same E, so every
patient's principal stratum at a visit (alive under both arms, one, neither) is known, and the
effect is monotone (HR < 1: no one dies sooner under decompression).

Missed visit t (alive): P = expit(alpha_t + k g H + log(OR) * arm), one uniform per visit shared by
both arms (`cohort.attrition_effect` = OR). The average P over the reference cohort is
`cohort.attrition.missed_visit[t]` (the paper gives no counts: an assumption) whatever k (alpha_t
is re-solved, `rescaled`); g is calibrated with b, to the completers' baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
from scipy import special

from sim.numerics import expit, intercept_for_share



@dataclass(frozen=True)
class AttritionModel:
    """The calibrated missed-visit model and the make-up of H."""

    health_weights: Mapping[str, float]  # outcome -> weight of its baseline latent in H
    missed_share: Mapping[str, float]  # follow-up visit -> average P(miss) (setting)
    missed_intercept: Mapping[str, float]  # follow-up visit -> alpha_t (solved)
    missed_health: float = 0.0  # g: log-OR of missing a visit per SD of H (calibrated)
    corr_lh: float = 0.0  # corr(L, H) in the reference cohort (for s_k)


def settings(raw: Mapping[str, Any] | None, outcomes: tuple[str, ...], follow_up: tuple[str, ...],
             prefix: str = "cohort.attrition") -> tuple[dict[str, float], dict[str, float]]:
    """(health weights, missed-visit shares) from the raw settings; ValueError naming the key."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {"health", "missed_visit", "health_scale"})
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]}: unknown key; allowed: ['health', 'missed_visit', 'health_scale']")
    health = raw.get("health") or {}
    if not isinstance(health, Mapping) or not health:
        raise ValueError(f"{prefix}.health: must map outcomes to weights, e.g. {{{outcomes[0]}: 1.0}}, got {health!r}")
    for k, w in health.items():
        if k not in outcomes:
            raise ValueError(f"{prefix}.health.{k}: unknown outcome; allowed: {list(outcomes)}")
        if not _finite(w):
            raise ValueError(f"{prefix}.health.{k}: must be a finite weight, got {w!r}")
    if not any(float(w) != 0.0 for w in health.values()):
        raise ValueError(f"{prefix}.health: at least one weight must be non-zero")
    missed = raw.get("missed_visit")
    if missed is None or _finite(missed):  # one share for every visit
        missed = {t: float(missed or 0.0) for t in follow_up}
    if not isinstance(missed, Mapping) or sorted(missed) != sorted(follow_up):
        raise ValueError(f"{prefix}.missed_visit: must be one share or give a share for every follow-up visit "
                         f"{list(follow_up)}, got {missed!r}")
    for t, v in missed.items():
        if not _finite(v) or not 0.0 <= float(v) < 0.5:
            raise ValueError(f"{prefix}.missed_visit.{t}: must be a share in [0, 0.5), got {v!r}")
    return {k: float(w) for k, w in health.items()}, {t: float(missed[t]) for t in follow_up}


def check_effect(value: Any, key: str) -> float:
    """A hazard or odds ratio of decompression: a number in [0.1, 10]."""
    if not _finite(value) or not 0.1 <= float(value) <= 10.0:
        raise ValueError(f"{key}: must be a ratio in [0.1, 10] (1 = no effect), got {value!r}")
    return float(value)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))


def health(outcomes, baseline: str, weights: Mapping[str, float], P: np.ndarray,
           v_baseline: np.ndarray) -> np.ndarray:
    """H: the weighted baseline latents (improvement direction) of the outcomes, standardised in
    closed form (P has unit variance, the V's are independent of it and of each other)."""
    total = np.zeros(P.shape[0])
    common, own = 0.0, 0.0
    for k, out in enumerate(outcomes):
        w = weights.get(out.name, 0.0)
        if w == 0.0:
            continue
        lam = out.loading[baseline]
        d = out.direction()
        total += w * d * (lam * P + np.sqrt(1 - lam**2) * v_baseline[:, k])
        common += w * d * lam
        own += (w**2) * (1 - lam**2)
    return total / np.sqrt(common**2 + own)


def death_scale(sm, am: AttritionModel, kappa: float) -> float:
    """s_k: the SD of a L + k b H + sqrt(1 - a^2) E."""
    a, b = sm.loading, kappa * sm.health_loading
    return float(np.sqrt(a * a + b * b + 2 * a * b * am.corr_lh + 1 - a * a))


def death_days(sm, am: AttritionModel, L: np.ndarray, H: np.ndarray, e: np.ndarray, kappa: float = 1.0,
               hazard_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Death day without and with decompression (T0, T1), from the same E."""
    s = death_scale(sm, am, kappa)
    sys = sm.loading * L + kappa * sm.health_loading * H
    c = np.sqrt(1 - sm.loading**2)
    t0 = np.exp(sm.loc - sm.scale * (sys + c * e) / s)
    if hazard_ratio == 1.0:
        return t0, t0
    log_s = special.log_ndtr(e) / hazard_ratio  # log of Phi(E1) = Phi(E)^(1 / HR)
    with np.errstate(invalid="ignore"):  # each branch is evaluated where it is accurate
        e1 = np.where(e > 0, -special.ndtri(-np.expm1(log_s)), special.ndtri(np.exp(log_s)))
    return t0, np.exp(sm.loc - sm.scale * (sys + c * e1) / s)


def p_alive(sm, am: AttritionModel, L: np.ndarray, H: np.ndarray, day: float, kappa: float = 1.0) -> np.ndarray:
    """P(T0 > day | L, H): smooth in the parameters, for calibration."""
    s = death_scale(sm, am, kappa)
    sys = sm.loading * L + kappa * sm.health_loading * H
    return special.ndtr(((sm.loc - np.log(day)) / sm.scale * s - sys) / np.sqrt(1 - sm.loading**2))


def p_missed(am: AttritionModel, H: np.ndarray, t: str, kappa: float = 1.0, log_or: float = 0.0) -> np.ndarray:
    return expit(am.missed_intercept[t] + kappa * am.missed_health * H + log_or)


def missed(am: AttritionModel, H: np.ndarray, u: np.ndarray, t: str, kappa: float = 1.0,
           odds_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Missed visit t (if alive) without and with decompression, from the same uniform."""
    m0 = u < p_missed(am, H, t, kappa)
    if odds_ratio == 1.0:
        return m0, m0
    return m0, u < p_missed(am, H, t, kappa, float(np.log(odds_ratio)))


def rescaled(am: AttritionModel, kappa: float, H_reference: np.ndarray) -> AttritionModel:
    """The missed-visit model with its loading on H times kappa and the intercepts re-solved on the
    reference cohort's H, so the average share missing each visit stays the setting."""
    g = kappa * am.missed_health
    return replace(am, missed_health=g, missed_intercept=solve_intercepts(am.missed_share, g, H_reference))


def solve_intercepts(missed_share: Mapping[str, float], g: float, H: np.ndarray) -> dict[str, float]:
    """alpha_t with mean(expit(alpha_t + g H)) = the visit's missed share (-inf for none)."""
    return {t: (-np.inf if share == 0.0 else intercept_for_share(g * H, share)) for t, share in missed_share.items()}

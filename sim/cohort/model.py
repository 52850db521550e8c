"""The cohort model: every solved parameter of the data-generating mechanism, and how a set of
latent normals becomes a cohort under it.

Structure (docs in conf/cohort/tominaga2025.yaml and the README):
- core covariates (those the true treatment model depends on: ESCC, Frankel, emergency) share a
  Gaussian copula with calibrated latent correlations;
- L, the standardised latent treatment index, summarises them; every other covariate's latent is
  a*L + sqrt(1-a^2)*E with its own loading a, calibrated to its between-group difference;
- treatment: logistic in the paper's PS covariates with the published log-ORs times `confounding`;
- outcomes: latent W = lambda*P + sqrt(1-lambda^2)*V, P a prognostic score of observed covariates,
  V correlated over time; then bounded and stepped on the real scale, at the study's visits (one
  baseline, any number of follow-ups: `CohortModel.baseline`, `.follow_up`);
- death: lognormal time loading on L and on baseline health H, administrative censoring; a patient
  alive at a visit may still miss it (sim.cohort.attrition); an unseen visit is missing.
The steps that turn latents into a cohort under these parameters are CohortModel's methods, kept
in sim.cohort.mechanism; calibration (sim.cohort.calibrate) solves the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import special

from sim.cohort import attrition as A
from sim.cohort.mechanism import Mechanism
from sim.cohort.scales import Continuous, Ordinal


@dataclass(frozen=True)
class CovariateModel:
    """One Table 1 variable: a binary threshold, an ordinal/categorical cut, or a continuous map."""

    name: str
    kind: str  # binary | categorical | continuous | nominal
    loading: float = 0.0  # on L (ignored for core covariates)
    threshold: float = 0.0  # binary: x = z > threshold
    ordinal: Ordinal | None = None
    categories: tuple = ()
    continuous: Continuous | None = None
    # nominal: P(category k | L) = softmax(alpha + theta * L)_k, drawn by inverse CDF of Phi(e)
    alpha: tuple[float, ...] = ()
    theta: tuple[float, ...] = ()

    def values(self, z: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            return (z > self.threshold).astype(np.int8)
        if self.kind == "categorical":
            return self.ordinal(z)  # category position in `categories`
        return self.continuous(z)

    def nominal_probs(self, L: np.ndarray) -> np.ndarray:
        logits = np.asarray(self.alpha) + np.outer(L, self.theta)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def nominal_values(self, L: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Category of each patient: the first whose cumulative probability (nominal_probs) reaches
        Phi(e). Computed category by category on whole columns, the operations of nominal_probs and
        a cumulative sum in the same order, so the values are those of the row-wise formula to the
        bit (tests/test_cohort.py), at a quarter of its cost (sums along a short axis are slow)."""
        logits = [a + L * t for a, t in zip(self.alpha, self.theta)]
        top = logits[0].copy()
        for x in logits[1:]:
            np.maximum(top, x, out=top)
        p = [np.exp(x - top) for x in logits]
        total = p[0].copy()
        for x in p[1:]:
            total += x
        u = special.ndtr(e)
        count = np.zeros(L.shape, dtype=np.intp)
        cum = np.zeros(L.shape)
        for x in p:
            cum = cum + x / total
            count += u > cum
        return np.minimum(count, len(self.alpha) - 1)


@dataclass(frozen=True)
class Refinement:
    """A binary variable generated as a finer ordinal column (e.g. ECOG 0-4 behind 'PS 3-4')."""

    source: str
    column: str
    ordinal: Ordinal
    values: tuple[int, ...]
    yes_values: tuple[int, ...]


@dataclass(frozen=True)
class OutcomeModel:
    """One outcome: latent location/scale/loading per time, pre-post correlation per post time."""

    name: str
    lower: float
    upper: float
    step: float
    higher_is_better: bool
    loc: Mapping[str, float]
    scale: Mapping[str, float]
    loading: Mapping[str, float]
    rho: Mapping[str, float]  # corr(V_baseline, V_t) for each follow-up visit t

    def observe(self, latent: np.ndarray) -> np.ndarray:
        from sim.cohort.scales import snap

        return snap(latent, self.lower, self.upper, self.step)

    def direction(self) -> float:
        return 1.0 if self.higher_is_better else -1.0


@dataclass(frozen=True)
class SurvivalModel:
    """log(death day) = loc - scale*Z_d, Z_d = (a*L + b*H + sqrt(1-a^2)*E) / s (sim.cohort.attrition);
    censoring ~ U(c_lo, c_hi)."""

    loc: float
    scale: float
    loading: float
    cens_lo: float
    cens_hi: float
    health_loading: float = 0.0  # b

    def followup_days(self, cens_u: np.ndarray) -> np.ndarray:
        """Administrative censoring day (after the last visit)."""
        return self.cens_lo + (self.cens_hi - self.cens_lo) * cens_u


@dataclass(frozen=True)
class SurgeryModel:
    """Consequences of the operation, by arm received (they are not confounders)."""

    continuous: Mapping[str, tuple[Continuous, Continuous]]  # name -> (control, treated)
    binary: Mapping[str, tuple[float, float]]  # name -> (p control, p treated)


@dataclass(frozen=True)
class CohortModel(Mechanism):
    """Every solved parameter; the steps from latents to a cohort are its methods (Mechanism)."""

    study_name: str
    treated_share: float
    core: tuple[CovariateModel, ...]
    core_corr: np.ndarray
    core_weights: np.ndarray  # L = core_weights . Z_core / norm
    others: tuple[CovariateModel, ...]
    refinements: tuple[Refinement, ...]
    derived: Mapping[str, tuple[str, tuple]]  # name -> (source variable, categories that are 1)
    ps_covariates: tuple[str, ...]
    log_or: Mapping[str, float]  # published, at confounding = 1
    omitted_log_or: Mapping[str, float]
    prognosis_weights: Mapping[str, float]
    prognosis_center: Mapping[str, float]
    prognosis_scale: Mapping[str, float]
    prognosis_sd: float
    outcomes: tuple[OutcomeModel, ...]
    partial_corr_m1_m6: float  # between consecutive follow-ups given the baseline (see outcome_latents)
    baseline: str  # the study's visits (conf/study: visits)
    follow_up: tuple[str, ...]
    visit_days: Mapping[str, float]  # follow-up visit -> day after the operation
    survival: SurvivalModel
    surgery: SurgeryModel
    attrition: A.AttritionModel
    mcid: Mapping[str, float] = field(default_factory=dict)

    @property
    def times(self) -> tuple[str, ...]:
        """Every visit: the baseline, then the follow-ups."""
        return (self.baseline, *self.follow_up)

    @property
    def n_latent_others(self) -> int:
        return len(self.others)

    def covariate(self, name: str) -> CovariateModel:
        for c in self.core + self.others:
            if c.name == name:
                return c
        raise KeyError(name)

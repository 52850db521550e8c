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
The functions here are pure; calibration (sim.cohort.calibrate) solves the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy import special

from sim.cohort import attrition as A
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


@dataclass(frozen=True)
class SurgeryModel:
    """Consequences of the operation, by arm received (they are not confounders)."""

    continuous: Mapping[str, tuple[Continuous, Continuous]]  # name -> (control, treated)
    binary: Mapping[str, tuple[float, float]]  # name -> (p control, p treated)


@dataclass(frozen=True)
class CohortModel:
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


# ------------------------------------------------------------------ latent draws
@dataclass(frozen=True)
class Latents:
    """All randomness of one cohort, drawn up front so calibration can reuse it (common random
    numbers) and generation stays a pure map from (model, latents) to data."""

    core: np.ndarray  # (n, n_core) iid N(0,1)
    others: np.ndarray  # (n, n_others) iid N(0,1)
    treat_u: np.ndarray  # (n,) U(0,1)
    death: np.ndarray  # (n,) N(0,1)
    cens_u: np.ndarray  # (n,) U(0,1)
    outcome: np.ndarray  # (n, n_outcomes, n_visits) iid N(0,1): V_baseline, then one per follow-up
    surgery: np.ndarray  # (n, n_surgery_cont) N(0,1)
    surgery_u: np.ndarray  # (n, n_surgery_bin) U(0,1)
    missed_u: np.ndarray  # (n, n_follow_up) U(0,1): missing a visit while alive

    @property
    def n(self) -> int:
        return self.treat_u.shape[0]


def latent_shapes(model: CohortModel, n: int) -> dict[str, tuple[int, ...]]:
    """The shape of each latent array of n patients, in the order they are drawn."""
    return {"core": (n, len(model.core)), "others": (n, len(model.others)), "treat_u": (n,), "death": (n,),
            "cens_u": (n,), "outcome": (n, len(model.outcomes), len(model.times)),
            "surgery": (n, len(model.surgery.continuous)), "surgery_u": (n, len(model.surgery.binary)),
            "missed_u": (n, len(model.follow_up))}


_UNIFORM = frozenset({"treat_u", "cens_u", "surgery_u", "missed_u"})  # the rest are N(0, 1)


def draw_latents(model: CohortModel, n: int, rng: np.random.Generator, out: Latents | None = None) -> Latents:
    """Draw in a fixed order, so a given (seed, n) always yields the same cohort; `out` (arrays of
    these shapes, e.g. one replicate's rows of a batch) is filled in place with the same values."""
    if out is None:
        out = Latents(**{k: np.empty(shape) for k, shape in latent_shapes(model, n).items()})
    for name in latent_shapes(model, n):
        draw = rng.random if name in _UNIFORM else rng.standard_normal
        draw(out=getattr(out, name))
    return out


# ------------------------------------------------------------------ covariates
def core_latent(model: CohortModel, lat: Latents, corr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Correlated core latents and the standardised index L."""
    corr = model.core_corr if corr is None else corr
    chol = np.linalg.cholesky(corr)
    z = lat.core @ chol.T
    w = model.core_weights
    L = z @ w / np.sqrt(w @ corr @ w)
    return z, L


def other_latent(loading: float, L: np.ndarray, e: np.ndarray) -> np.ndarray:
    return loading * L + np.sqrt(1.0 - loading**2) * e


def covariates(model: CohortModel, lat: Latents, only: frozenset[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observed covariates (codes for categories) and L; `only` limits the non-core covariates
    computed (calibration of the core needs just a few)."""
    z, L = core_latent(model, lat)
    cols: dict[str, np.ndarray] = {}
    for j, cov in enumerate(model.core):
        cols[cov.name] = cov.values(z[:, j])
    zo = {}
    for j, cov in enumerate(model.others):
        if only is not None and cov.name not in only:
            continue
        if cov.kind == "nominal":
            cols[cov.name] = cov.nominal_values(L, lat.others[:, j])
            continue
        zo[cov.name] = other_latent(cov.loading, L, lat.others[:, j])
        cols[cov.name] = cov.values(zo[cov.name])
    for ref in model.refinements:
        if ref.source not in zo:
            continue
        code = ref.ordinal(zo[ref.source])
        cols[ref.column] = np.asarray(ref.values)[code]
        cols[ref.source] = np.isin(cols[ref.column], ref.yes_values).astype(np.int8)
    for name, (source, members) in model.derived.items():
        cov = model.covariate(source)
        member_codes = [cov.categories.index(m) for m in members]
        cols[name] = np.isin(cols[source], member_codes).astype(np.int8)
    return cols, L


def numeric_column(model: CohortModel, cols: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    """A covariate as a number: categories by their value if numeric, else `<name>_code`."""
    if name in cols:
        x = cols[name]
        cov = _maybe_cov(model, name)
        if cov is not None and cov.kind in ("categorical", "nominal"):
            cats = np.asarray(cov.categories)
            if np.issubdtype(cats.dtype, np.number):
                return cats[x].astype(float)
        return x.astype(float)
    if name.endswith("_code") and name[:-5] in cols:
        return cols[name[:-5]].astype(float)
    for cov in model.core + model.others:
        if cov.kind in ("categorical", "nominal") and name.startswith(cov.name + "_"):
            cat = name[len(cov.name) + 1:]
            if cat in [str(c) for c in cov.categories]:
                code = [str(c) for c in cov.categories].index(cat)
                return (cols[cov.name] == code).astype(float)
    raise KeyError(f"no covariate column {name!r}")


def _maybe_cov(model: CohortModel, name: str) -> CovariateModel | None:
    try:
        return model.covariate(name)
    except KeyError:
        return None


def linear_predictor(model: CohortModel, cols: Mapping[str, np.ndarray], confounding: float) -> np.ndarray:
    """Treatment log-odds without intercept: confounding * (published + omitted terms)."""
    n = next(iter(cols.values())).shape[0]
    eta = np.zeros(n)
    for name, b in {**model.log_or, **model.omitted_log_or}.items():
        if b != 0.0:
            eta += b * numeric_column(model, cols, name)
    return confounding * eta


def prognosis(model: CohortModel, cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Standardised prognostic score P (higher = worse outcome before calibration signs)."""
    n = next(iter(cols.values())).shape[0]
    raw = np.zeros(n)
    for name, w in model.prognosis_weights.items():
        x = numeric_column(model, cols, name)
        raw += w * (x - model.prognosis_center[name]) / model.prognosis_scale[name]
    return raw / model.prognosis_sd


# ------------------------------------------------------------------ outcomes and survival
def innovations(model: CohortModel, v: np.ndarray) -> dict[str, np.ndarray]:
    """The follow-ups' innovations U_t (see outcome_latents) from v = (n, n_visits) iid normals."""
    c = model.partial_corr_m1_m6
    res, u = {}, v[:, 1]
    for k, t in enumerate(model.follow_up, start=1):
        if k > 1:
            u = c * u + np.sqrt(1 - c**2) * v[:, k]
        res[t] = u
    return res


def outcome_latents(model: CohortModel, out: OutcomeModel, P: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """Latent outcome at each visit of `model`; v = (n, n_visits) iid normals.

    V_baseline = v_0; follow-up k: V_k = rho_k * V_baseline + sqrt(1 - rho_k^2) * U_k, with
    U_1 = v_1 and U_k = c * U_{k-1} + sqrt(1 - c^2) * v_k (c = partial_corr_m1_m6): the follow-ups'
    innovations form a chain, so c is the partial correlation of consecutive follow-ups given the
    baseline (Tominaga: the one pair, 1 and 6 months; the setting keeps that name)."""
    base = v[:, 0]
    res = {model.baseline: base}
    for t, u in innovations(model, v).items():
        r = out.rho[t]
        res[t] = r * base + np.sqrt(1 - r**2) * u
    for t, vt in res.items():
        lam = out.loading[t]
        res[t] = out.loc[t] + out.scale[t] * (lam * P + np.sqrt(1 - lam**2) * vt)
    return res


def health(model: CohortModel, P: np.ndarray, lat: Latents) -> np.ndarray:
    """Baseline health H (standardised; higher = healthier), what death and missed visits load on."""
    return A.health(model.outcomes, model.baseline, model.attrition.health_weights, P, lat.outcome[:, :, 0])


def death_days(model: CohortModel, L: np.ndarray, H: np.ndarray, lat: Latents, health_scale: float = 1.0,
               hazard_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Death day without and with decompression (sim.cohort.attrition.death_days)."""
    return A.death_days(model.survival, model.attrition, L, H, lat.death, health_scale, hazard_ratio)


def followup_days(sm: SurvivalModel, cens_u: np.ndarray) -> np.ndarray:
    """Administrative censoring day (after the last visit)."""
    return sm.cens_lo + (sm.cens_hi - sm.cens_lo) * cens_u

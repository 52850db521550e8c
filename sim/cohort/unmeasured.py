"""An unmeasured confounder U (`cohort.unmeasured`): its settings, their validation, the draws and
the per-design solves.

U is a confounder of the decompression-vs-other comparison that no analysis sees:

- **Draw.** U's latent is ``Z_U = corr_core * L + sqrt(1 - corr_core^2) * E``, with ``L`` the
  standardised core latent index of the covariates and ``E ~ N(0, 1)`` drawn from the replicate's
  generator *after* every other draw (so `kind: none` leaves every existing random stream, hence
  every result, unchanged). ``kind: normal``: ``U = Z_U``; ``kind: binary``: ``U = 1{Z_U > tau}``
  with ``P(U = 1) = prevalence``.
- **Treatment.** ``logit P(treated) = intercept + confounding * (true model) + treatment_log_or * U``
  (per presence for binary U, per SD for normal U). `treatment_log_or` is NOT scaled by
  `cohort.confounding`. The intercept is re-solved on the reference latents (with U from a fixed
  seed of its own) so that the expected treated share stays the study's (189/263).
- **Outcomes.** U shifts each outcome's latent post-operative value (every follow-up visit; not
  the baseline one) in the outcome's improvement direction by ``gamma[o, t] * (U - c)``, with
  ``c = prevalence`` (binary) or 0 (normal), so the population mean of the latent is unchanged.
  ``gamma`` is solved once per design on the reference population (patients alive at the visit),
  so that on the observed (bounded, stepped) scale

  - binary: the mean difference in the change from baseline between U = 1 and U = 0, averaged over
    the population, ``E[Delta(U=1) - Delta(U=0)]``,
  - normal: the average slope per SD of U, ``E[dDelta/dU]`` (= the least-squares slope of the
    change on an independent U, by Stein's lemma),

  equals ``outcome_effect[o, t] * SD_ref[o, t]``, where ``SD_ref`` is the SD of the change from
  baseline (improvement direction, no U, under control) among the reference patients alive at
  the visit. Positive = U makes patients improve more; negative = worse. U enters both potential
  outcomes identically (a confounder, not an effect modifier); the treatment effect's latent shift
  is solved with U present, so the true ATE stays the requested one. U adds variance: the SDs of
  the post-operative values and of the change grow (roughly by sqrt(1 + outcome_effect^2 * Var U)
  where no bound binds), so the calibration to Fig. 1 / Table 2 holds for the means, not the SDs.
- **Column.** The cohort records U as column ``u`` (``U_COLUMN``). It is there for diagnostics and
  oracle analyses only: the paper's PS covariates (conf/method/*.yaml) do not include it
  (tests/test_unmeasured.py checks every method file), and `guard_ps_covariates` rejects a PS
  covariate list that would silently adjust for it.
- **Settings.** Validated by `check_unmeasured`; with ``kind: none`` the other keys are validated
  but ignored. Defaults: `DEFAULTS` (the same as conf/cohort/tominaga2025.yaml).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import optimize, special

KINDS = ("none", "binary", "normal")
DEFAULTS: Mapping[str, Any] = {
    "kind": "none",
    "prevalence": 0.5,
    "corr_core": 0.0,
    "treatment_log_or": 0.0,
    "outcome_effect": 0.0,
}
KEYS = tuple(DEFAULTS)
MAX_LOG_OR = 30.0  # far beyond any plausible confounder; the intercept solve is reliable up to it
MAX_OUTCOME_EFFECT = 10.0  # SDs of the change; bounded scales cannot show more
U_COLUMN = "u"
_REFERENCE_SEED = 31_415_926  # U's own reference stream (independent of the other reference latents)


# ------------------------------------------------------------------ validation
def _is_number(x: Any) -> bool:
    if not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, (bool, np.bool_)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond a float's range
        return False


def check_unmeasured(settings: Mapping | None, prefix: str = "cohort.unmeasured",
                     outcomes: Sequence[str] | None = None, times: Sequence[str] | None = None) -> None:
    """Raise ValueError (one line, naming the full key) for any bad `cohort.unmeasured` setting.

    `outcomes` (names) and `times` (the follow-up visits) are checked in `outcome_effect` when
    given (the cohort model knows them: make_design passes both). Settings other than `kind` are
    validated even when kind is `none` (where they are ignored), so a grid over `kind` fails
    before its first replicate, not midway.
    """
    if settings is None:
        return
    if not isinstance(settings, Mapping):
        raise ValueError(f"{prefix}: must be a mapping with keys {list(KEYS)}, got {settings!r}")
    unknown = sorted(str(k) for k in settings if k not in KEYS)
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]}: unknown key; allowed: {list(KEYS)}")
    s = {**DEFAULTS, **settings}
    if not isinstance(s["kind"], str) or s["kind"] not in KINDS:
        raise ValueError(f"{prefix}.kind: got {s['kind']!r}; allowed: {list(KINDS)}")
    p = s["prevalence"]
    if not _is_number(p) or not 0.0 < p < 1.0:
        raise ValueError(f"{prefix}.prevalence: must be a number in (0, 1) (share with U = 1), got {p!r}")
    r = s["corr_core"]
    if not _is_number(r) or not -1.0 < r < 1.0:
        raise ValueError(f"{prefix}.corr_core: must be a number in (-1, 1), got {r!r}")
    b = s["treatment_log_or"]
    if not _is_number(b):
        raise ValueError(f"{prefix}.treatment_log_or: must be a finite number (log odds ratio), got {b!r}")
    if abs(b) > MAX_LOG_OR:
        raise ValueError(f"{prefix}.treatment_log_or: must be within +-{MAX_LOG_OR:g} (an odds ratio of "
                         f"{math.exp(MAX_LOG_OR):.3g} at most), got {b!r}")
    _check_outcome_effect(s["outcome_effect"], f"{prefix}.outcome_effect", outcomes, times)


def _is_effect(x: Any) -> bool:
    return _is_number(x) and abs(x) <= MAX_OUTCOME_EFFECT


def _check_outcome_effect(value: Any, key: str, outcomes: Sequence[str] | None,
                          times: Sequence[str] | None) -> None:
    if _is_effect(value):
        return
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: must be a number within +-{MAX_OUTCOME_EFFECT:g} (SDs of the change) or a mapping {{outcome: number}} "
                         f"or {{outcome: {{visit: number}}}}, got {value!r}")
    for o, v in value.items():
        if outcomes is not None and o not in outcomes:
            raise ValueError(f"{key}.{o}: unknown outcome; allowed: {list(outcomes)}")
        if _is_effect(v):
            continue
        if not isinstance(v, Mapping):
            raise ValueError(f"{key}.{o}: must be a number within +-{MAX_OUTCOME_EFFECT:g} or a mapping {{visit: number}}, got {v!r}")
        for t, x in v.items():
            if times is not None and t not in times:
                raise ValueError(f"{key}.{o}.{t}: unknown time; allowed: {list(times)}")
            if not _is_effect(x):
                raise ValueError(f"{key}.{o}.{t}: must be a number within +-{MAX_OUTCOME_EFFECT:g} (SDs of the change), got {x!r}")


def guard_ps_covariates(names: Sequence[str], prefix: str = "method.propensity.covariates") -> None:
    """U is unmeasured: a PS model or exact matching on the `u` column would adjust for it (an
    oracle analysis, not the paper's); balance on it is a fair diagnostic."""
    if U_COLUMN in names:
        raise ValueError(f"{prefix}: {U_COLUMN!r} is the unmeasured confounder (cohort.unmeasured); "
                         "no analysis may adjust for it")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class UnmeasuredSettings:
    """Validated settings with kind != none; `outcome_effect` expanded to every (outcome, time)."""

    kind: str
    prevalence: float
    corr_core: float
    treatment_log_or: float
    outcome_effect: Mapping[tuple[str, str], float]

    @property
    def center(self) -> float:
        return self.prevalence if self.kind == "binary" else 0.0

    @property
    def threshold(self) -> float:
        return float(special.ndtri(1.0 - self.prevalence))

    def latent(self, L: np.ndarray, noise: np.ndarray) -> np.ndarray:
        r = self.corr_core
        return r * L + np.sqrt(1.0 - r * r) * noise

    def values(self, L: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """U from the standardised core index L and U's own standard-normal noise."""
        z = self.latent(L, noise)
        if self.kind == "binary":
            return (z > self.threshold).astype(np.int8)
        return z


def outcome_effects(value: Any, outcomes: Sequence[str], times: Sequence[str]) -> dict[tuple[str, str], float]:
    """`outcome_effect` (already checked) for every outcome and time; unlisted entries are 0."""
    if _is_number(value):
        return {(o, t): float(value) for o in outcomes for t in times}
    out = {(o, t): 0.0 for o in outcomes for t in times}
    for o, v in (value or {}).items():
        if _is_number(v):
            out.update({(o, t): float(v) for t in times})
        else:
            out.update({(o, t): float(x) for t, x in v.items()})
    return out


def parse_unmeasured(settings: Mapping | None, outcomes: Sequence[str], times: Sequence[str],
                     prefix: str = "cohort.unmeasured") -> UnmeasuredSettings | None:
    """Checked settings, or None when there is no U (kind none or no block)."""
    check_unmeasured(settings, prefix, outcomes, times)
    s = {**DEFAULTS, **(settings or {})}
    if s["kind"] == "none":
        return None
    return UnmeasuredSettings(str(s["kind"]), float(s["prevalence"]), float(s["corr_core"]),
                              float(s["treatment_log_or"]), outcome_effects(s["outcome_effect"], outcomes, times))


# ------------------------------------------------------------------ draws
def draw_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """U's own noise for one replicate; call after every other draw of the replicate."""
    return rng.standard_normal(n)


_REF_NOISE: dict[int, np.ndarray] = {}


def reference_noise(n: int) -> np.ndarray:
    """U's noise for the reference latents: a fixed stream of its own."""
    if n not in _REF_NOISE:
        _REF_NOISE.clear()
        _REF_NOISE[n] = np.random.default_rng(_REFERENCE_SEED).standard_normal(n)
    return _REF_NOISE[n]


# ------------------------------------------------------------------ solves
@dataclass(frozen=True)
class UnmeasuredDesign:
    """U's settings plus what a design solved for it: the latent shift per unit of U and the
    reference SD of each change it is expressed in."""

    settings: UnmeasuredSettings
    latent_shift: Mapping[tuple[str, str], float]  # gamma: latent units (improvement) per unit of U
    change_sd: Mapping[tuple[str, str], float]  # SD_ref of the change (no U, control, alive)

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def treatment_log_or(self) -> float:
        return self.settings.treatment_log_or

    def values(self, L: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self.settings.values(L, noise)

    def outcome_term(self, key: tuple[str, str], u: np.ndarray) -> np.ndarray | None:
        """gamma * (U - c) for one outcome and time (improvement direction), or None when 0."""
        g = self.latent_shift.get(key, 0.0)
        if g == 0.0:
            return None
        return g * (u - self.settings.center)


def u_effect_on_change(kind: str, prevalence: float, observe, direction: float, y: np.ndarray,
                       gamma: float, noise: np.ndarray | None = None) -> float:
    """Observed-scale effect of U on the change (improvement units) for a latent shift `gamma` per
    unit of U: binary, mean over patients of Delta(U=1) - Delta(U=0); normal, the average slope
    E[(Delta(+e) - Delta(-e)) e] / (2 E[e^2]) over an independent standard normal e (antithetic, so
    the noise of e hardly matters). The pre-operative value cancels in either contrast."""
    d = direction
    if kind == "binary":
        return float(np.mean(observe(y + d * gamma * (1.0 - prevalence)) - observe(y - d * gamma * prevalence)) * d)
    assert noise is not None
    diff = (observe(y + d * gamma * noise) - observe(y - d * gamma * noise)) * d
    return float(np.mean(diff * noise) / (2.0 * np.mean(noise * noise)))


def solve_outcome_shift(kind: str, prevalence: float, observe, direction: float, width: float,
                        y: np.ndarray, effect_sd: float, sd: float, noise: np.ndarray | None, key: str) -> float:
    """gamma with u_effect_on_change(gamma) = effect_sd * sd (monotone in gamma); ValueError naming
    `key` when the bounded scale cannot show so large an effect."""
    if effect_sd == 0.0:
        return 0.0
    target = effect_sd * sd
    f = lambda g: u_effect_on_change(kind, prevalence, observe, direction, y, g, noise) - target  # noqa: E731
    sign = 1.0 if target > 0 else -1.0
    hi = sign * width
    for _ in range(12):  # up to ~4000 x the scale's range: beyond it nothing changes any more
        if sign * f(hi) >= 0:
            break
        hi *= 2.0
    else:
        best = (f(hi) + target) / sd
        raise ValueError(f"{key}: {effect_sd:g} SD of the change cannot be reached on this bounded scale "
                         f"(at most {best:.3g} SD; SD of the change {sd:.4g})")
    lo, hi = (0.0, hi) if sign > 0 else (hi, 0.0)
    return float(optimize.brentq(f, lo, hi, xtol=1e-9 * width))

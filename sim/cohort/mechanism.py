"""How a cohort model's random numbers become a cohort, in the order a cohort is made:

  draw -> covariates (and the treatment index L) -> prognostic score P -> treatment ->
  baseline health H -> death days -> the operation's consequences -> visits (alive, seen) -> outcomes

`Mechanism` holds these steps as methods and CohortModel (sim.cohort.model) inherits them, so a
model owns its draws: `model.draw(n, rng)`, `model.covariates(lat)`, `model.treatment(eta, lat)`,
`model.outcome_columns(...)`. Each is a pure map of the model's parameters and the latents it is given
(calibration reuses one latent sample across candidate parameters); what a design adds (the
treatment intercept and confounding, the effect's latent shifts, an unmeasured confounder U) is
passed in by sim.cohort.generate. Why a separate module: the parameters stay in model.py, the
classes the shipped snapshot is built from, each file under 400 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from sim.cohort import attrition as A
from sim.numerics import expit

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


UNIFORM = frozenset({"treat_u", "cens_u", "surgery_u", "missed_u"})  # the other latents are N(0, 1)


def other_latent(loading: float, L: np.ndarray, e: np.ndarray) -> np.ndarray:
    """A non-core covariate's latent: loading * L plus its own noise, unit variance."""
    return loading * L + np.sqrt(1.0 - loading**2) * e


class Mechanism:
    """CohortModel's steps from latents to a cohort (a mixin: the parameters are its fields)."""

    # ------------------------------------------------------------------ draws
    def latent_shapes(self, n: int) -> dict[str, tuple[int, ...]]:
        """The shape of each latent array of n patients, in the order they are drawn."""
        return {"core": (n, len(self.core)), "others": (n, len(self.others)), "treat_u": (n,), "death": (n,),
                "cens_u": (n,), "outcome": (n, len(self.outcomes), len(self.times)),
                "surgery": (n, len(self.surgery.continuous)), "surgery_u": (n, len(self.surgery.binary)),
                "missed_u": (n, len(self.follow_up))}

    def draw(self, n: int, rng: np.random.Generator, out: Latents | None = None) -> Latents:
        """Draw in a fixed order, so a given (seed, n) always yields the same cohort; `out` (arrays
        of these shapes, e.g. one replicate's rows of a batch) is filled in place with the same
        values. sim.cohort.batch_kernels.draw_batch is its compiled twin for many generators."""
        shapes = self.latent_shapes(n)
        if out is None:
            out = Latents(**{k: np.empty(shape) for k, shape in shapes.items()})
        for name in shapes:
            fill = rng.random if name in UNIFORM else rng.standard_normal
            fill(out=getattr(out, name))
        return out

    # ------------------------------------------------------------------ covariates
    def core_latent(self, lat: Latents, corr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Correlated core latents and the standardised index L."""
        corr = self.core_corr if corr is None else corr
        chol = np.linalg.cholesky(corr)
        z = lat.core @ chol.T
        w = self.core_weights
        L = z @ w / np.sqrt(w @ corr @ w)
        return z, L

    def covariates(self, lat: Latents, only: frozenset[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Observed covariates (codes for categories) and L; `only` limits the non-core covariates
        computed (calibration of the core needs just a few)."""
        z, L = self.core_latent(lat)
        cols: dict[str, np.ndarray] = {}
        for j, cov in enumerate(self.core):
            cols[cov.name] = cov.values(z[:, j])
        zo = {}
        for j, cov in enumerate(self.others):
            if only is not None and cov.name not in only:
                continue
            if cov.kind == "nominal":
                cols[cov.name] = cov.nominal_values(L, lat.others[:, j])
                continue
            zo[cov.name] = other_latent(cov.loading, L, lat.others[:, j])
            cols[cov.name] = cov.values(zo[cov.name])
        for ref in self.refinements:
            if ref.source not in zo:
                continue
            code = ref.ordinal(zo[ref.source])
            cols[ref.column] = np.asarray(ref.values)[code]
            cols[ref.source] = np.isin(cols[ref.column], ref.yes_values).astype(np.int8)
        for name, (source, members) in self.derived.items():
            cov = self.covariate(source)
            member_codes = [cov.categories.index(m) for m in members]
            cols[name] = np.isin(cols[source], member_codes).astype(np.int8)
        return cols, L

    def numeric_column(self, cols: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        """A covariate as a number: categories by their value if numeric, else `<name>_code`."""
        if name in cols:
            x = cols[name]
            cov = _maybe_cov(self, name)
            if cov is not None and cov.kind in ("categorical", "nominal"):
                cats = np.asarray(cov.categories)
                if np.issubdtype(cats.dtype, np.number):
                    return cats[x].astype(float)
            return x.astype(float)
        if name.endswith("_code") and name[:-5] in cols:
            return cols[name[:-5]].astype(float)
        for cov in self.core + self.others:
            if cov.kind in ("categorical", "nominal") and name.startswith(cov.name + "_"):
                cat = name[len(cov.name) + 1:]
                if cat in [str(c) for c in cov.categories]:
                    code = [str(c) for c in cov.categories].index(cat)
                    return (cols[cov.name] == code).astype(float)
        raise KeyError(f"no covariate column {name!r}")

    def prognosis(self, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """Standardised prognostic score P (higher = worse outcome before calibration signs)."""
        n = next(iter(cols.values())).shape[0]
        raw = np.zeros(n)
        for name, w in self.prognosis_weights.items():
            x = self.numeric_column(cols, name)
            raw += w * (x - self.prognosis_center[name]) / self.prognosis_scale[name]
        return raw / self.prognosis_sd

    # ------------------------------------------------------------------ treatment
    def linear_predictor(self, cols: Mapping[str, np.ndarray], confounding: float) -> np.ndarray:
        """Treatment log-odds without intercept: confounding * (published + omitted terms)."""
        n = next(iter(cols.values())).shape[0]
        eta = np.zeros(n)
        for name, b in {**self.log_or, **self.omitted_log_or}.items():
            if b != 0.0:
                eta += b * self.numeric_column(cols, name)
        return confounding * eta

    def treatment(self, eta: np.ndarray, lat: Latents) -> tuple[np.ndarray, np.ndarray]:
        """Decompression (0/1) and its true propensity, given the design's full log-odds `eta`."""
        ps_true = expit(eta)
        return (lat.treat_u < ps_true).astype(np.int8), ps_true

    # ------------------------------------------------------------------ survival, the operation, visits
    def health(self, P: np.ndarray, lat: Latents) -> np.ndarray:
        """Baseline health H (standardised; higher = healthier), what death and missed visits load on."""
        return A.health(self.outcomes, self.baseline, self.attrition.health_weights, P, lat.outcome[:, :, 0])

    def death_days(self, L: np.ndarray, H: np.ndarray, lat: Latents, health_scale: float = 1.0,
                   hazard_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Death day without and with decompression (sim.cohort.attrition.death_days)."""
        return A.death_days(self.survival, self.attrition, L, H, lat.death, health_scale, hazard_ratio)

    def deaths(self, t0: np.ndarray, t1: np.ndarray, treated: np.ndarray,
               lat: Latents) -> dict[str, np.ndarray]:
        """The columns `died` (before the censoring day) and `survival_days`, under the arm received."""
        death = np.where(treated, t1, t0)
        followup = self.survival.followup_days(lat.cens_u)
        return {"died": (death <= followup).astype(np.int8), "survival_days": np.round(np.minimum(death, followup))}

    def operation(self, treated: np.ndarray, lat: Latents) -> dict[str, np.ndarray]:
        """The operation's consequences under the arm received (not confounders)."""
        columns = {}
        for j, (name, (m0, m1)) in enumerate(self.surgery.continuous.items()):
            z = lat.surgery[:, j]
            columns[name] = np.where(treated, m1(z), m0(z))
        for j, (name, (p0, p1)) in enumerate(self.surgery.binary.items()):
            p = np.where(treated, p1, p0)
            columns[name] = (lat.surgery_u[:, j] < p).astype(np.int8)
        return columns

    def visits(self, t0: np.ndarray, t1: np.ndarray, treated: np.ndarray, H: np.ndarray,
               lat: Latents, attrition: A.AttritionModel | None = None, odds_ratio: float = 1.0) -> tuple:
        """Per follow-up visit: (alive under control, under treatment), (seen ..., seen ...), and the
        columns `seen_<visit>`, `dead_<visit>` under the arm received. `attrition`: the missed-visit
        model (default: as calibrated); `odds_ratio`: decompression's on missing a visit."""
        death = np.where(treated, t1, t0)
        alive, seen, columns = {}, {}, {}
        for j, t in enumerate(self.follow_up):
            day = self.visit_days[t]
            alive[t] = (t0 > day, t1 > day)
            m0, m1 = A.missed(attrition or self.attrition, H, lat.missed_u[:, j], t, odds_ratio=odds_ratio)
            seen[t] = (alive[t][0] & ~m0, alive[t][1] & ~m1)
            columns[f"seen_{t}"] = np.where(treated, seen[t][1], seen[t][0]).astype(np.int8)
            columns[f"dead_{t}"] = (death <= day).astype(np.int8)
        return alive, seen, columns

    # ------------------------------------------------------------------ outcomes
    def innovations(self, v: np.ndarray) -> dict[str, np.ndarray]:
        """The follow-ups' innovations U_t (see outcome_latents) from v = (n, n_visits) iid normals."""
        c = self.partial_corr_m1_m6
        res, u = {}, v[:, 1]
        for k, t in enumerate(self.follow_up, start=1):
            if k > 1:
                u = c * u + np.sqrt(1 - c**2) * v[:, k]
            res[t] = u
        return res

    def outcome_latents(self, out, P: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        """Latent outcome at each visit; v = (n, n_visits) iid normals.

        V_baseline = v_0; follow-up k: V_k = rho_k * V_baseline + sqrt(1 - rho_k^2) * U_k, with
        U_1 = v_1 and U_k = c * U_{k-1} + sqrt(1 - c^2) * v_k (c = partial_corr_m1_m6): the follow-ups'
        innovations form a chain, so c is the partial correlation of consecutive follow-ups given the
        baseline (Tominaga: the one pair, 1 and 6 months; the setting keeps that name)."""
        base = v[:, 0]
        res = {self.baseline: base}
        for t, u in self.innovations(v).items():
            r = out.rho[t]
            res[t] = r * base + np.sqrt(1 - r**2) * u
        for t, vt in res.items():
            lam = out.loading[t]
            res[t] = out.loc[t] + out.scale[t] * (lam * P + np.sqrt(1 - lam**2) * vt)
        return res

    def outcome_columns(self, P: np.ndarray, lat: Latents, latent_shift: Mapping[tuple[str, str], float],
                 mult: np.ndarray, terms: Mapping[tuple[str, str], np.ndarray], alive: Mapping, seen: Mapping,
                 treated: np.ndarray, block: Callable | None = None) -> tuple[dict, dict]:
        """The outcome columns (`<outcome>_<visit>` observed, `_y0`, `_y1`, `<outcome>_delta_<visit>`)
        and each (outcome, visit)'s potential changes (d0, d1). The design gives the effect's
        `latent_shift` (times `mult` per patient) and U's `terms`; `alive`, `seen`: from visits.
        `block`: outcome_block or its compiled twin, batch_kernels.outcome_block (the same values)."""
        observed = np.stack([np.where(treated, seen[t][1], seen[t][0]) for t in self.follow_up])
        alive0, alive1 = (np.stack([alive[t][arm] for t in self.follow_up]) for arm in (0, 1))
        pre, y0, y1, obs, d0, d1, delta = (block or Mechanism.outcome_block)(
            self, latent_shift, P, mult, lat.outcome, terms, alive0, alive1, observed, treated)
        columns, potential = {}, {}
        for o, out in enumerate(self.outcomes):
            columns[f"{out.name}_{self.baseline}"] = pre[o]
            for k, t in enumerate(self.follow_up):
                columns[f"{out.name}_{t}"] = obs[o, k]
                columns[f"{out.name}_{t}_y0"] = y0[o, k]
                columns[f"{out.name}_{t}_y1"] = y1[o, k]
                potential[(out.name, t)] = (d0[o, k], d1[o, k])
                columns[f"{out.name}_delta_{t}"] = delta[o, k]
        return columns, potential

    def outcome_block(self, latent_shift: Mapping[tuple[str, str], float], P: np.ndarray,
                      mult: np.ndarray, v: np.ndarray, terms: Mapping[tuple[str, str], np.ndarray],
                      alive0: np.ndarray, alive1: np.ndarray, observed: np.ndarray, treated: np.ndarray) -> tuple:
        """Each outcome's baseline (O, N) and, per follow-up (O, T, N): potential outcomes y0, y1 (NaN
        when dead under that arm), the observed value (NaN when unseen), the potential changes
        d0, d1 and the observed change, all in the improvement direction. `terms`: U's term per
        (outcome, visit); alive0/alive1/observed: (T, N). batch_kernels.outcome_block is its twin."""
        O, T, N = len(self.outcomes), len(self.follow_up), P.shape[0]
        pre = np.empty((O, N))
        y0, y1, obs, d0, d1, delta = (np.empty((O, T, N)) for _ in range(6))
        for o, out in enumerate(self.outcomes):
            ylat = self.outcome_latents(out, P, v[:, o, :])
            pre[o] = out.observe(ylat[self.baseline])
            d = out.direction()
            for k, t in enumerate(self.follow_up):
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


def _maybe_cov(model, name: str):
    try:
        return model.covariate(name)
    except KeyError:
        return None

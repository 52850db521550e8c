"""Calibration: solve the cohort model's parameters so that, at confounding = 1, it reproduces
the study's published marginals (Table 1 by group, Fig. 1, Table 2 SDs, deaths and survival).

Every step uses one large reference sample of latent normals (common random numbers), and
group-wise statistics are weighted by the true propensity (treated weight ps, control weight
1 - ps): the expected group composition, without the noise of drawing treatment.
Steps, each a small least-squares problem: core latent correlations -> loadings of the other
covariates on L -> prognostic score constants -> survival -> outcome location/scale/loading ->
baseline/follow-up correlations. Results are cached on disk, keyed by the study, the settings,
this module's version and the code of the model (this module, skeleton, model, scales, sim.numerics).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import optimize

from sim.cohort import model as M
from sim.engine.atomic import atomic_write_bytes
from sim.cohort.skeleton import skeleton, treatment_terms
from sim.numerics import INTERCEPT_BRACKET, expit, fit_logit_fractional, intercept_for_share
from sim.study import GROUPS, Study

CALIBRATION_VERSION = "1"


# ------------------------------------------------------------------ small helpers
def wstats(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean and SD (population form; the reference sample is large)."""
    ok = ~np.isnan(x)
    x, w = x[ok], w[ok]
    m = np.sum(w * x) / np.sum(w)
    return float(m), float(np.sqrt(np.sum(w * (x - m) ** 2) / np.sum(w)))


def wprops(codes: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes, weights=w, minlength=k) / np.sum(w)


def group_weights(ps: np.ndarray) -> dict[str, np.ndarray]:
    return {"treated": ps, "control": 1.0 - ps}


def _replace(obj, **kw):
    from dataclasses import replace

    return replace(obj, **kw)


# ------------------------------------------------------------------ calibration steps
def _corr_from(params: np.ndarray, k: int) -> np.ndarray:
    r = np.eye(k)
    r[np.triu_indices(k, 1)] = params
    r = r + r.T - np.eye(k)
    return r


def _true_ps(model: M.CohortModel, cols: Mapping[str, np.ndarray]) -> np.ndarray:
    eta = M.linear_predictor(model, cols, 1.0)
    a = intercept_for_share(eta, model.treated_share, bracket=INTERCEPT_BRACKET, xtol=1e-10)
    return expit(a + eta)


def _core_targets(study: Study, model: M.CohortModel) -> list[np.ndarray]:
    return [np.concatenate([study.proportions(c.name, g) for g in GROUPS]) for c in model.core]


def _core_fit(study: Study, model: M.CohortModel, lat: M.Latents, free: list[str]) -> M.CohortModel:
    """Solve, together: the core latent correlations, the true treatment coefficients and any
    omitted-confounder log-ORs marked 'calibrate', so that (a) the core covariates' group-wise
    distributions match Table 1 and (b) the paper's PS model, refitted on the synthetic
    population, reproduces the Table 3 odds ratios. With no omitted confounder (b) makes the true
    coefficients the published ones; with one, they are what the paper's model would estimate."""
    k = len(model.core)
    npar = k * (k - 1) // 2
    targets = np.concatenate(_core_targets(study, model))
    published = study.log_odds_ratios()
    fitted_terms = [t for t, b in published.items() if b != 0.0]
    target_lor = np.array([published[t] for t in model.ps_covariates])
    LOR_WEIGHT = 0.1  # 0.1 on the log-OR scale counts like one point of a proportion
    needed = frozenset(model.ps_covariates) | frozenset(model.omitted_log_or)

    def build(params: np.ndarray) -> M.CohortModel:
        omitted = {**model.omitted_log_or, **dict(zip(free, params[npar:npar + len(free)]))}
        log_or = {**model.log_or, **dict(zip(fitted_terms, params[npar + len(free):]))}
        return _replace(model, core_corr=_corr_from(params[:npar], k), omitted_log_or=omitted, log_or=log_or)

    def resid(params: np.ndarray) -> np.ndarray:
        m = build(params)
        if np.linalg.eigvalsh(m.core_corr)[0] < 1e-3:
            return np.full(targets.size + target_lor.size, 1.0)
        cols, _ = M.covariates(m, lat, only=needed)
        ps = _true_ps(m, cols)
        w = group_weights(ps)
        got = []
        for c in m.core:
            ncat = 2 if c.kind == "binary" else len(c.categories)
            for g in GROUPS:
                pr = wprops(cols[c.name].astype(np.int64), w[g], ncat)
                got.append(pr[1:] if c.kind == "binary" else pr)
        X = np.column_stack([M.numeric_column(m, cols, t) for t in m.ps_covariates])
        lor = fit_logit_fractional(X, ps)[1:]
        return np.concatenate([np.concatenate(got) - targets, LOR_WEIGHT * (lor - target_lor)])

    x0 = np.concatenate([np.full(npar, 0.3), np.zeros(len(free)), [published[t] for t in fitted_terms]])
    lo = np.concatenate([np.full(npar, -0.95), np.full(len(free), -5.0), np.full(len(fitted_terms), -5.0)])
    sol = optimize.least_squares(resid, x0, bounds=(lo, -lo), diff_step=1e-2)
    return build(sol.x)


def _loading_fit(study: Study, model: M.CohortModel, cov: M.CovariateModel, L: np.ndarray,
                 e: np.ndarray, w: dict[str, np.ndarray]) -> float:
    """The loading on L that best reproduces the variable's two group-wise marginals. The loss
    is the worst error in units of its acceptance tolerance (plus a little of the rest), since
    acceptance is judged per number."""
    var = study.covariates[cov.name]
    if cov.kind == "continuous":
        targets = np.array([var[g]["mean"] for g in GROUPS])
        tol = np.array([0.1 * var[g]["sd"] for g in GROUPS])

        def errors(a: float) -> np.ndarray:
            x = cov.values(M.other_latent(a, L, e))
            return np.array([wstats(x, w[g])[0] for g in GROUPS]) - targets
    else:
        ncat = 2 if cov.kind == "binary" else len(cov.categories)
        targets = np.concatenate([study.proportions(cov.name, g)[-1:] if cov.kind == "binary"
                                  else study.proportions(cov.name, g) for g in GROUPS])
        tol = 0.03

        def errors(a: float) -> np.ndarray:
            x = cov.values(M.other_latent(a, L, e)).astype(np.int64)
            got = [wprops(x, w[g], ncat) for g in GROUPS]
            return np.concatenate([g[-1:] if cov.kind == "binary" else g for g in got]) - targets

    def loss(a: float) -> float:
        r = np.abs(errors(a)) / tol
        return float(r.max() + 0.1 * np.mean(r**2))

    return float(optimize.minimize_scalar(loss, bounds=(-0.95, 0.95), method="bounded",
                                          options={"xatol": 1e-4}).x)


def _nominal_fit(study: Study, cov: M.CovariateModel, L: np.ndarray, w: dict[str, np.ndarray]) -> M.CovariateModel:
    """Multinomial-logit tilt of a nominal variable on L: 2(K-1) parameters for 2(K-1) group-wise
    proportions, fitted on expected (smooth) proportions."""
    k = len(cov.categories)
    targets = np.concatenate([study.proportions(cov.name, g)[1:] for g in GROUPS])

    def build(p: np.ndarray) -> M.CovariateModel:
        return _replace(cov, alpha=(0.0, *p[: k - 1]), theta=(0.0, *p[k - 1:]))

    def resid(p: np.ndarray) -> np.ndarray:
        probs = build(p).nominal_probs(L)
        got = [(w[g] @ probs / w[g].sum())[1:] for g in GROUPS]
        return np.concatenate(got) - targets

    x0 = np.concatenate([cov.alpha[1:], np.zeros(k - 1)])
    return build(optimize.least_squares(resid, x0, xtol=1e-12, ftol=1e-12).x)


def _prognosis_constants(model: M.CohortModel, cols: Mapping[str, np.ndarray]) -> M.CohortModel:
    center, scale = {}, {}
    for name in model.prognosis_weights:
        try:
            x = M.numeric_column(model, cols, name)
        except KeyError:
            raise ValueError(f"cohort.prognosis: unknown covariate column {name!r}; "
                             f"allowed: {sorted(cols) + [c + '_code' for c in cols]}") from None
        center[name] = float(x.mean())
        scale[name] = float(x.std()) or 1.0
    m = _replace(model, prognosis_center=center, prognosis_scale=scale, prognosis_sd=1.0)
    sd = float(M.prognosis(m, cols).std())
    return _replace(m, prognosis_sd=sd or 1.0)


def _survival_fit(study: Study, model: M.CohortModel, lat: M.Latents, L: np.ndarray,
                  w: dict[str, np.ndarray]) -> M.SurvivalModel:
    days = study.raw["survival"]["survival_days"]
    sd0 = days["total"]["sd"]
    t_died = np.array([study.proportions("died", g)[0] for g in GROUPS])
    t_mean = np.array([days[g]["mean"] for g in GROUPS])
    t_sd = np.array([days[g]["sd"] for g in GROUPS])
    last_visit = model.visit_days[model.follow_up[-1]]

    def unpack(p: np.ndarray) -> M.SurvivalModel:
        lo = last_visit + abs(p[3])  # administrative censoring only after the last visit
        return M.SurvivalModel(p[0], abs(p[1]), float(np.clip(p[2], -0.95, 0.95)), lo, lo + abs(p[4]))

    def resid(p: np.ndarray) -> np.ndarray:
        sm = unpack(p)
        death, fu = M.death_and_followup(sm, L, lat.death, lat.cens_u)
        d = (death <= fu).astype(float)
        obs = np.minimum(death, fu)
        out = []
        for i, g in enumerate(GROUPS):
            mean, sd = wstats(obs, w[g])
            out += [(wstats(d, w[g])[0] - t_died[i]) * 3, (mean - t_mean[i]) / sd0, (sd - t_sd[i]) / sd0]
        return np.array(out)

    x0 = np.array([np.log(500.0), 1.0, 0.0, 50.0, 500.0])
    sol = optimize.least_squares(resid, x0, diff_step=1e-3, x_scale=[1, 1, 0.3, 100, 300])
    return unpack(sol.x)


def _outcome_fit(study: Study, model: M.CohortModel, out: M.OutcomeModel, P: np.ndarray,
                 v: np.ndarray, alive: dict[str, np.ndarray], w: dict[str, np.ndarray]) -> M.OutcomeModel:
    fig1 = study.outcomes[out.name]["fig1"]
    tab2 = study.outcomes[out.name]["table2"]
    loc, scale, loading = {}, {}, {}
    for t in model.times:
        tm = np.array([fig1[g][t][0] for g in GROUPS])
        ts = np.array([fig1[g][t][1] for g in GROUPS])
        pooled_sd = float(np.mean(ts))
        keep = alive[t]
        base = v[:, 0]
        wt = {g: w[g][keep] for g in GROUPS}
        Pk, bk = P[keep], base[keep]

        def resid(p: np.ndarray) -> np.ndarray:
            lam = np.tanh(p[2])
            y = out.observe(p[0] + abs(p[1]) * (lam * Pk + np.sqrt(1 - lam**2) * bk))
            r = []
            for i, g in enumerate(GROUPS):
                m, s = wstats(y, wt[g])
                r += [(m - tm[i]) / pooled_sd, (s - ts[i]) / pooled_sd]
            return np.array(r)

        # lambda = 0 is a stationary point of the spread; start on both sides, keep the better
        sols = [optimize.least_squares(resid, np.array([float(np.mean(tm)), pooled_sd, s0]), diff_step=1e-3,
                                       x_scale=[pooled_sd, pooled_sd, 0.3]) for s0 in (-0.3, 0.3)]
        sol = min(sols, key=lambda s: s.cost)
        loc[t], scale[t], loading[t] = float(sol.x[0]), float(abs(sol.x[1])), float(np.tanh(sol.x[2]))
    out = _replace(out, loc=loc, scale=scale, loading=loading)

    rho = dict(out.rho)
    for t in model.follow_up:
        ts = np.array([tab2[g][t][1] for g in GROUPS])

        def resid_rho(p: np.ndarray) -> np.ndarray:
            o = _replace(out, rho={**rho, t: float(np.tanh(p[0]))})
            ylat = M.outcome_latents(model, o, P, v)
            d = (o.observe(ylat[t]) - o.observe(ylat[model.baseline])) * o.direction()
            d = np.where(alive[t], d, np.nan)
            return np.array([(wstats(d, w[g])[1] - ts[i]) / np.mean(ts) for i, g in enumerate(GROUPS)])

        sol = optimize.least_squares(resid_rho, np.array([0.5]), diff_step=1e-3, bounds=(-2.5, 2.5))
        rho[t] = float(np.tanh(sol.x[0]))
    return _replace(out, rho=rho)


def calibrate(study: Study, settings: Mapping[str, Any], n: int | None = None, seed: int | None = None) -> M.CohortModel:
    """Solve every parameter of the cohort model against the study (slow: use `calibrated`)."""
    n = int(n or settings.get("calibration_n", 200_000))
    seed = int(seed if seed is not None else settings.get("calibration_seed", 0))
    model = skeleton(study, settings)
    lat = M.draw_latents(model, n, np.random.default_rng(seed))

    model = _core_fit(study, model, lat, treatment_terms(study, settings)[2])
    _, L = M.core_latent(model, lat)
    cols, _ = M.covariates(model, lat)
    w = group_weights(_true_ps(model, cols))
    others = tuple(_nominal_fit(study, c, L, w) if c.kind == "nominal"
                   else _replace(c, loading=_loading_fit(study, model, c, L, lat.others[:, j], w))
                   for j, c in enumerate(model.others))
    model = _replace(model, others=others)
    cols, L = M.covariates(model, lat)
    w = group_weights(_true_ps(model, cols))
    model = _prognosis_constants(model, cols)
    P = M.prognosis(model, cols)
    model = _replace(model, survival=_survival_fit(study, model, lat, L, w))
    death, _ = M.death_and_followup(model.survival, L, lat.death, lat.cens_u)
    alive = {model.baseline: np.ones(n, bool), **{t: death > model.visit_days[t] for t in model.follow_up}}
    outcomes = tuple(_outcome_fit(study, model, o, P, lat.outcome[:, i, :], alive, w)
                     for i, o in enumerate(model.outcomes))
    return _replace(model, outcomes=outcomes)


# ------------------------------------------------------------------ caching
_MEMO: dict[str, M.CohortModel] = {}
MODEL_KEYS = ("prognosis", "refine", "outcome_partial_corr_m1_m6", "visit_days", "omitted_confounders",
              "calibration_n", "calibration_seed")


def cache_key(study: Study, settings: Mapping[str, Any]) -> str:
    relevant = {k: settings.get(k) for k in MODEL_KEYS}
    blob = json.dumps([CALIBRATION_VERSION, study.raw, relevant], sort_keys=True, default=str)
    src = Path(__file__).parent
    files = [src / f for f in ("calibrate.py", "skeleton.py", "model.py", "scales.py")] + [src.parent / "numerics.py"]
    code = "".join(f.read_text() for f in files)
    return hashlib.sha256((blob + code).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("SIM_CACHE_DIR", Path.cwd() / "outputs" / ".cache"))


def calibrated(study: Study, settings: Mapping[str, Any]) -> M.CohortModel:
    """The calibrated model for (study, settings), from memory, the disk cache, or solved anew."""
    key = cache_key(study, settings)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_dir() / f"cohort-model-{study.name}-{key}.pkl"
    model = None
    if path.is_file():
        try:
            with path.open("rb") as fh:
                model = pickle.load(fh)
        except Exception:  # a corrupt cache entry is recomputed, never trusted
            model = None
    if model is None:
        model = calibrate(study, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, pickle.dumps(model))
    _MEMO[key] = model
    return model

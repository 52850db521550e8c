"""Calibration: solve the cohort model's parameters so that, at confounding = 1, it reproduces
the study's published marginals (Table 1 by group, Fig. 1, Table 2 SDs, deaths and survival).

Every step uses one large reference sample of latent normals (common random numbers), and
group-wise statistics are weighted by the true propensity (treated weight ps, control weight
1 - ps): the expected group composition, without the noise of drawing treatment.
Steps, each a small least-squares problem: core latent correlations -> loadings of the other
covariates on L -> prognostic score constants -> survival -> outcome location/scale/loading ->
baseline/follow-up correlations. Results are cached on disk, keyed by the study, the settings,
this module's version and the code of the model (this module, skeleton, model, mechanism, scales,
attrition, checks, sim.numerics); the default study's model also ships with the package (SNAPSHOTS).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import optimize

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort import model_json
from sim.cohort.mechanism import Latents, other_latent
from sim.engine.atomic import atomic_write_bytes
from sim.cohort.skeleton import skeleton, treatment_terms
from sim.numerics import INTERCEPT_BRACKET, expit, fit_logit_fractional, intercept_for_share
from sim.cohort.checks import MEAN_TOL_SD as MEAN_TOL, PROP_TOL, SD_TOL_REL as SD_TOL
from sim.cohort.study import GROUPS, Study

CALIBRATION_VERSION = "2"


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
    eta = model.linear_predictor(cols, 1.0)
    a = intercept_for_share(eta, model.treated_share, bracket=INTERCEPT_BRACKET, xtol=1e-10)
    return expit(a + eta)


def _core_targets(study: Study, model: M.CohortModel) -> list[np.ndarray]:
    return [np.concatenate([study.proportions(c.name, g) for g in GROUPS]) for c in model.core]


def _core_fit(study: Study, model: M.CohortModel, lat: Latents, free: list[str]) -> M.CohortModel:
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
        cols, _ = m.covariates(lat, only=needed)
        ps = _true_ps(m, cols)
        w = group_weights(ps)
        got = []
        for c in m.core:
            ncat = 2 if c.kind == "binary" else len(c.categories)
            for g in GROUPS:
                pr = wprops(cols[c.name].astype(np.int64), w[g], ncat)
                got.append(pr[1:] if c.kind == "binary" else pr)
        X = np.column_stack([m.numeric_column(cols, t) for t in m.ps_covariates])
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
            x = cov.values(other_latent(a, L, e))
            return np.array([wstats(x, w[g])[0] for g in GROUPS]) - targets
    else:
        ncat = 2 if cov.kind == "binary" else len(cov.categories)
        targets = np.concatenate([study.proportions(cov.name, g)[-1:] if cov.kind == "binary"
                                  else study.proportions(cov.name, g) for g in GROUPS])
        tol = 0.03

        def errors(a: float) -> np.ndarray:
            x = cov.values(other_latent(a, L, e)).astype(np.int64)
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
            x = model.numeric_column(cols, name)
        except KeyError:
            raise ValueError(f"cohort.prognosis: unknown covariate column {name!r}; "
                             f"allowed: {sorted(cols) + [c + '_code' for c in cols]}") from None
        center[name] = float(x.mean())
        scale[name] = float(x.std()) or 1.0
    m = _replace(model, prognosis_center=center, prognosis_scale=scale, prognosis_sd=1.0)
    sd = float(m.prognosis(cols).std())
    return _replace(m, prognosis_sd=sd or 1.0)


def completers_baseline(study: Study, model: M.CohortModel) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(outcome, visit, group) -> (mean baseline of the patients with a change at the visit, the
    change's SD): Fig. 1 at the visit minus the Table 2 change (improvement direction)."""
    out = {}
    for o in model.outcomes:
        fig1, tab2 = study.outcomes[o.name]["fig1"], study.outcomes[o.name]["table2"]
        for t in model.follow_up:
            for g in GROUPS:
                change, sd = tab2[g][t]
                out[(o.name, t, g)] = (fig1[g][t][0] - o.direction() * change, sd)
    return out


def _attrition_fit(study: Study, model: M.CohortModel, lat: Latents, L: np.ndarray, H: np.ndarray,
                   pre: Mapping[str, np.ndarray], w: dict[str, np.ndarray]) -> M.CohortModel:
    """Death (location, scale, loadings on L and H, censoring) and the missed visits' loading on H,
    together, so that deaths and survival days by group (Table 1) and the baselines of the
    patients seen at each visit (Fig. 1 minus Table 2) are reproduced. Residuals are in units of
    their acceptance tolerance; the probability of being seen is smooth in the parameters."""
    days = study.raw["survival"]["survival_days"]
    t_died = np.array([study.proportions("died", g)[0] for g in GROUPS])
    t_mean = np.array([days[g]["mean"] for g in GROUPS])
    t_sd = np.array([days[g]["sd"] for g in GROUPS])
    last_visit = model.visit_days[model.follow_up[-1]]
    targets = completers_baseline(study, model)
    am0 = _replace(model.attrition, corr_lh=float(np.corrcoef(L, H)[0, 1]))

    def unpack(p: np.ndarray) -> tuple[M.SurvivalModel, A.AttritionModel]:
        lo = last_visit + abs(p[3])  # administrative censoring only after the last visit
        sm = M.SurvivalModel(p[0], abs(p[1]), float(np.clip(p[2], -0.95, 0.95)), lo, lo + abs(p[4]), float(p[5]))
        am = _replace(am0, missed_health=float(p[6]),
                      missed_intercept=A.solve_intercepts(am0.missed_share, float(p[6]), H))
        return sm, am

    def resid(p: np.ndarray) -> np.ndarray:
        sm, am = unpack(p)
        death, _ = A.death_days(sm, am, L, H, lat.death)
        fu = sm.followup_days(lat.cens_u)
        d = (death <= fu).astype(float)
        obs = np.minimum(death, fu)
        out = []
        for i, g in enumerate(GROUPS):
            mean, sd = wstats(obs, w[g])
            out += [(wstats(d, w[g])[0] - t_died[i]) / PROP_TOL, (mean - t_mean[i]) / (MEAN_TOL * t_sd[i]),
                    (sd / t_sd[i] - 1) / SD_TOL]
        for t in model.follow_up:
            seen = A.p_alive(sm, am, L, H, model.visit_days[t]) * (1 - A.p_missed(am, H, t))
            for o in model.outcomes:
                for g in GROUPS:
                    target, sd = targets[(o.name, t, g)]
                    got = np.sum(w[g] * seen * pre[o.name]) / np.sum(w[g] * seen)
                    out.append((got - target) / (MEAN_TOL * sd))
        return np.array(out)

    x0 = np.array([np.log(500.0), 1.0, 0.0, 50.0, 500.0, 0.3, -0.5])
    sol = optimize.least_squares(resid, x0, diff_step=1e-3, x_scale=[1, 1, 0.3, 100, 300, 0.3, 0.3],
                                 bounds=([-np.inf, -np.inf, -0.95, -np.inf, -np.inf, -3.0, -4.0],
                                         [np.inf, np.inf, 0.95, np.inf, np.inf, 3.0, 4.0]))
    sm, am = unpack(sol.x)
    return _replace(model, survival=sm, attrition=am)


def _visit_fit(out: M.OutcomeModel, P: np.ndarray, v: np.ndarray, w: dict[str, np.ndarray],
               fig1: Mapping[str, tuple[float, float]], change: Mapping[str, tuple[float, float]] | None = None,
               base: np.ndarray | None = None, u: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """Location, scale and loading on P of the latent outcome at one visit (and, at a follow-up,
    its correlation with the baseline latent), so that the visit's values (Fig. 1) and, at a
    follow-up, the changes from baseline (Table 2) of the patients seen have their published means
    and SDs by group. `v` is the latent noise at the baseline; at a follow-up the visit's noise is
    rho v + sqrt(1 - rho^2) u and `base` the observed baseline values. Residuals in tolerance units."""
    tm = np.array([fig1[g][0] for g in GROUPS])
    ts = np.array([fig1[g][1] for g in GROUPS])
    pooled_sd = float(np.mean(ts))

    def values(p: np.ndarray) -> np.ndarray:
        lam = np.tanh(p[2])
        noise = v if change is None else np.tanh(p[3]) * v + np.sqrt(1 - np.tanh(p[3]) ** 2) * u
        return out.observe(p[0] + abs(p[1]) * (lam * P + np.sqrt(1 - lam**2) * noise))

    def resid(p: np.ndarray) -> np.ndarray:
        y = values(p)
        r = []
        for i, g in enumerate(GROUPS):
            m, s = wstats(y, w[g])
            r += [(m - tm[i]) / (MEAN_TOL * ts[i]), (s / ts[i] - 1) / SD_TOL]
            if change is not None:
                cm, cs = wstats((y - base) * out.direction(), w[g])
                r += [(cm - change[g][0]) / (MEAN_TOL * change[g][1]), (cs / change[g][1] - 1) / SD_TOL]
        r = np.array(r)
        return r * np.abs(r)  # the sum of 4th powers: close to the worst error, as acceptance is judged

    # lambda = 0 is a stationary point of the spread; start on both sides, keep the better
    extra = [] if change is None else [0.5]
    sols = [optimize.least_squares(resid, np.array([float(np.mean(tm)), pooled_sd, s0, *extra]), diff_step=1e-3,
                                   x_scale=[pooled_sd, pooled_sd, 0.3, *([0.3] * len(extra))]) for s0 in (-0.3, 0.3)]
    x = min(sols, key=lambda s: s.cost).x
    return float(x[0]), float(abs(x[1])), float(np.tanh(x[2])), (float(np.tanh(x[3])) if change is not None else 0.0)


def calibrate(study: Study, settings: Mapping[str, Any], n: int | None = None, seed: int | None = None) -> M.CohortModel:
    """Solve every parameter of the cohort model against the study (slow: use `calibrated`)."""
    n = int(n or settings.get("calibration_n", 200_000))
    seed = int(seed if seed is not None else settings.get("calibration_seed", 0))
    model = skeleton(study, settings)
    lat = model.draw(n, np.random.default_rng(seed))

    model = _core_fit(study, model, lat, treatment_terms(study, settings)[2])
    _, L = model.core_latent(lat)
    cols, _ = model.covariates(lat)
    w = group_weights(_true_ps(model, cols))
    others = tuple(_nominal_fit(study, c, L, w) if c.kind == "nominal"
                   else _replace(c, loading=_loading_fit(study, model, c, L, lat.others[:, j], w))
                   for j, c in enumerate(model.others))
    model = _replace(model, others=others)
    cols, L = model.covariates(lat)
    w = group_weights(_true_ps(model, cols))
    model = _prognosis_constants(model, cols)
    P = model.prognosis(cols)
    v = lat.outcome
    outcomes = []
    for k, o in enumerate(model.outcomes):  # baselines: everyone is seen
        fig1 = study.outcomes[o.name]["fig1"]
        loc, scale, lam, _ = _visit_fit(o, P, v[:, k, 0], w, {g: fig1[g][model.baseline] for g in GROUPS})
        outcomes.append(_replace(o, loc={**o.loc, model.baseline: loc}, scale={**o.scale, model.baseline: scale},
                                 loading={**o.loading, model.baseline: lam}))
    model = _replace(model, outcomes=tuple(outcomes))
    H = model.health(P, lat)
    pre = {o.name: o.observe(model.outcome_latents(o, P, v[:, k, :])[model.baseline])
           for k, o in enumerate(model.outcomes)}
    model = _attrition_fit(study, model, lat, L, H, pre, w)
    death, _ = model.death_days(L, H, lat)
    outcomes = []
    for k, o in enumerate(model.outcomes):  # follow-ups: the patients seen at the visit
        fig1, tab2 = study.outcomes[o.name]["fig1"], study.outcomes[o.name]["table2"]
        u = model.innovations(v[:, k, :])
        for j, t in enumerate(model.follow_up):
            seen = (death > model.visit_days[t]) & ~(lat.missed_u[:, j] < A.p_missed(model.attrition, H, t))
            loc, scale, lam, rho = _visit_fit(
                o, P[seen], v[seen, k, 0], {g: w[g][seen] for g in GROUPS}, {g: fig1[g][t] for g in GROUPS},
                change={g: tab2[g][t] for g in GROUPS}, base=pre[o.name][seen], u=u[t][seen])
            o = _replace(o, loc={**o.loc, t: loc}, scale={**o.scale, t: scale}, loading={**o.loading, t: lam},
                         rho={**o.rho, t: rho})
        outcomes.append(o)
    return _replace(model, outcomes=tuple(outcomes))


# ------------------------------------------------------------------ caching
_MEMO: dict[str, M.CohortModel] = {}
DESIGN_ONLY_ATTRITION_KEYS = ("health_scale",)  # applied when a design is made, not calibrated
MODEL_KEYS = ("prognosis", "refine", "outcome_partial_corr", "visit_days", "omitted_confounders",
              "calibration_n", "calibration_seed")


def cache_key(study: Study, settings: Mapping[str, Any]) -> str:
    relevant = {k: settings.get(k) for k in MODEL_KEYS}
    relevant["attrition"] = {k: v for k, v in dict(settings.get("attrition") or {}).items()
                             if k not in DESIGN_ONLY_ATTRITION_KEYS}
    blob = json.dumps([CALIBRATION_VERSION, study.raw, relevant], sort_keys=True, default=str)
    src = Path(__file__).parent
    files = [src / f for f in ("calibrate.py", "skeleton.py", "model.py", "mechanism.py", "scales.py", "attrition.py",
                               "checks.py")] + [src.parent / "numerics" / "__init__.py"]
    code = "".join(f.read_text() for f in files)
    return hashlib.sha256((blob + code).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("SIM_CACHE_DIR", Path.cwd() / "outputs" / ".cache"))


#: calibrated models shipped with the package, as data (JSON: sim.cohort.model_json; `python -m
#: sim.cohort.snapshot` writes the default study's): a first run on a new machine loads the model
#: instead of solving it (about a minute), and every machine uses the same model to the bit. A snapshot is used only under the
#: key of the current code, study and settings, so a change to any of them recalibrates.
SNAPSHOTS = Path(__file__).with_name("snapshots")


def model_filename(study: Study, settings: Mapping[str, Any]) -> str:
    return f"cohort-model-{study.name}-{cache_key(study, settings)}{model_json.SUFFIX}"


def _load(path: Path) -> M.CohortModel | None:
    if not path.is_file():
        return None
    try:
        return model_json.loads(path.read_text())  # data (JSON), never unpickled
    except Exception:  # a corrupt or incompatible file is recomputed, never trusted
        return None


def calibrated(study: Study, settings: Mapping[str, Any]) -> M.CohortModel:
    """The calibrated model for (study, settings): from memory, the disk cache, the shipped
    snapshot, or solved anew (and cached)."""
    key = cache_key(study, settings)
    if key in _MEMO:
        return _MEMO[key]
    name = model_filename(study, settings)
    model = _load(cache_dir() / name) or _load(SNAPSHOTS / name)
    if model is None:
        model = calibrate(study, settings)
        path = cache_dir() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, model_json.dumps(model).encode())
    _MEMO[key] = model
    return model

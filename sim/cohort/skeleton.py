"""The cohort model's skeleton before calibration: which covariates form the core of the treatment
model, which load on its index, their margins, the treatment terms (published and omitted) and
the outcome and surgery models with neutral parameters. sim.cohort.calibrate then solves the
parameters."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from sim.cohort import attrition as A
from sim.cohort import model as M
from sim.cohort.scales import Continuous, binary_threshold, fit_continuous, fit_ordinal
from sim.cohort.study import Study


def _continuous_spec(var: Mapping[str, Any], group: str = "total") -> Continuous:
    sc = var.get("scale", {})
    g = var[group]
    lo = sc.get("lower", g["mean"] - 8 * g["sd"])
    hi = sc.get("upper", g["mean"] + 8 * g["sd"])
    return fit_continuous(g["mean"], g["sd"], lo, hi, sc.get("step", 1e-9), sc.get("type") == "lognormal")


def _ratio_order(study: Study, name: str, key: np.ndarray | None = None) -> np.ndarray:
    """Categories from the least to the most 'treated-like' (ratio of group shares), optionally
    after a primary key (the category's contribution to the treatment model)."""
    pt = study.proportions(name, "treated")
    pc = study.proportions(name, "control")
    ratio = np.log((pt + 1e-3) / (pc + 1e-3))
    if key is None:
        return np.argsort(ratio, kind="stable")
    return np.lexsort((ratio, key))


def _term_contribution(study: Study, derived: Mapping[str, tuple], term: str, b: float) -> tuple[str, np.ndarray]:
    """The source variable of a treatment-model term and its log-odds contribution per category
    (binary: [no, yes]). Terms: a variable, a derived indicator, or `<variable>_<category>`."""
    if term in derived:
        source, members = derived[term]
        cats = study.variable(source)["categories"]
        return source, np.array([b * (c in members) for c in cats], dtype=float)
    try:
        var = study.variable(term)
    except KeyError:
        var = None
    if var is not None:
        if var["kind"] == "binary":
            return term, np.array([0.0, b])
        if var["kind"] == "categorical":
            return term, b * np.asarray(var["categories"], dtype=float)
        raise ValueError(f"cohort.omitted_confounders.{term}: {term} is continuous, and continuous covariates "
                         "cannot drive treatment in this model (allowed: binary, categorical, derived indicators, "
                         "<variable>_<category>)")  # the published terms are checked on load (study_schema)
    for name, v in study.covariates.items():
        if v["kind"] == "categorical" and term.startswith(name + "_"):
            cats = [str(c) for c in v["categories"]]
            if term[len(name) + 1:] in cats:
                return name, b * (np.asarray(cats) == term[len(name) + 1:]).astype(float)
    raise ValueError(f"cohort.omitted_confounders: unknown term {term!r}; use a binary or categorical "
                     f"covariate, a derived indicator {sorted(derived)} or <variable>_<category>")


def treatment_terms(study: Study, settings: Mapping[str, Any]) -> tuple[dict, dict, list[str]]:
    """Published log-ORs, omitted-confounder log-ORs, and the omitted terms to calibrate."""
    omitted, free = {}, []
    for term, v in (settings.get("omitted_confounders") or {}).items():
        if v == "calibrate":
            omitted[str(term)] = 0.0
            free.append(str(term))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            omitted[str(term)] = float(v)
        else:
            raise ValueError(f"cohort.omitted_confounders.{term}: must be a log odds ratio or 'calibrate', got {v!r}")
    return study.log_odds_ratios(), omitted, free


def _core_and_others(study: Study, settings: Mapping[str, Any], omitted: Mapping[str, float]):
    pm = study.raw["propensity_model"]
    derived = {k: (v["from"], tuple(v["in"])) for k, v in (pm.get("derived") or {}).items()}
    log_or = study.log_odds_ratios()
    core_names: list[str] = []
    contributions: dict[str, np.ndarray] = {}
    for term, b in {**log_or, **omitted}.items():
        if b == 0.0 and term not in omitted:
            continue
        source, c = _term_contribution(study, derived, term, b if b != 0.0 else 1.0)
        contributions[source] = contributions.get(source, 0.0) + c
        if source not in core_names:
            core_names.append(source)

    core, weights = [], []
    for name in core_names:
        var = study.variable(name)
        p = study.proportions(name, "total")
        c = contributions[name]
        if var["kind"] == "binary":
            core.append(M.CovariateModel(name, "binary", threshold=binary_threshold(p[0])))
            weights.append(c[1] * np.sqrt(p[0] * (1 - p[0])))
        else:
            order = _ratio_order(study, name)
            core.append(M.CovariateModel(name, "categorical", ordinal=fit_ordinal(p, order),
                                         categories=tuple(var["categories"])))
            rank = np.argsort(order)  # latent rank of each category
            mean_c, mean_r = np.sum(p * c), np.sum(p * rank)
            cov = np.sum(p * (c - mean_c) * (rank - mean_r))
            weights.append(np.sign(cov or 1.0) * np.sqrt(np.sum(p * (c - mean_c) ** 2)))

    refine = settings.get("refine") or {}
    others = []
    for name, var in study.covariates.items():
        if name in core_names:
            continue
        if var["kind"] == "binary":
            others.append(M.CovariateModel(name, "binary", threshold=binary_threshold(study.proportions(name, "total")[0])))
        elif var["kind"] == "categorical":
            p = study.proportions(name, "total")
            k = len(p)
            others.append(M.CovariateModel(name, "nominal", categories=tuple(var["categories"]),
                                           alpha=tuple(np.log(p / p[0])), theta=(0.0,) * k))
        else:
            others.append(M.CovariateModel(name, "continuous", continuous=_continuous_spec(var)))
    refinements = []
    for source, r in refine.items():
        if source not in study.covariates or study.covariates[source]["kind"] != "binary":
            raise ValueError(f"cohort.refine.{source}: must name a binary covariate of the study")
        p = study.proportions(source, "total")[0]
        shares_no = np.asarray(r["shares_no"], float)
        shares_yes = np.asarray(r["shares_yes"], float)
        for key, sh in (("shares_no", shares_no), ("shares_yes", shares_yes)):
            if np.any(sh < 0) or abs(sh.sum() - 1) > 1e-6:
                raise ValueError(f"cohort.refine.{source}.{key}: shares must be >= 0 and sum to 1, got {list(sh)}")
        probs = np.concatenate([(1 - p) * shares_no / shares_no.sum(), p * shares_yes / shares_yes.sum()])
        refinements.append(M.Refinement(source, r["column"], fit_ordinal(probs),
                                        tuple(r["values_no"]) + tuple(r["values_yes"]), tuple(r["values_yes"])))
    return derived, log_or, core, np.asarray(weights, float), others, refinements


def visit_days(study: Study, settings: Mapping[str, Any]) -> dict[str, float]:
    """Day of each follow-up visit: the study's schedule (`visits.days`), or `cohort.visit_days`
    when set (a sensitivity setting: same visits, other days). ValueError naming the key."""
    override = settings.get("visit_days")
    if override is None:
        return study.visit_days
    key = "cohort.visit_days"
    if not isinstance(override, Mapping):
        raise ValueError(f"{key}: must be null (the study's visits.days) or map each follow-up visit "
                         f"{list(study.follow_up)} to its day, got {override!r}")
    if set(override) != set(study.follow_up):
        wrong = sorted(str(k) for k in set(override) ^ set(study.follow_up))[0]
        raise ValueError(f"{key}.{wrong}: the follow-up visits of study {study.name!r} are "
                         f"{list(study.follow_up)}; give a day for each, no other")
    days, previous = {}, 0.0
    for t in study.follow_up:
        d = override[t]
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not np.isfinite(d) or d <= previous:
            raise ValueError(f"{key}.{t}: must be a number of days > {previous:g} (after the visit before), got {d!r}")
        days[t] = previous = float(d)
    return days


def skeleton(study: Study, settings: Mapping[str, Any]) -> M.CohortModel:
    _, omitted, _ = treatment_terms(study, settings)
    derived, log_or, core, weights, others, refinements = _core_and_others(study, settings, omitted)
    outcomes = []
    for name, o in study.outcomes.items():
        sc = o["scale"]
        zero = {t: 0.0 for t in study.times}
        outcomes.append(M.OutcomeModel(name, sc["lower"], sc["upper"], sc["step"], o["higher_is_better"],
                                       loc=dict(zero), scale={t: 1.0 for t in study.times}, loading=dict(zero),
                                       rho={t: 0.5 for t in study.follow_up}))
    surg_cont, surg_bin = {}, {}
    for name, var in (study.raw.get("surgery") or {}).items():
        if var["kind"] == "continuous":
            surg_cont[name] = (_continuous_spec(var, "control"), _continuous_spec(var, "treated"))
        else:
            surg_bin[name] = (float(study.proportions(name, "control")[0]), float(study.proportions(name, "treated")[0]))
    prognosis_w = {str(k): float(v) for k, v in (settings.get("prognosis") or {}).items()}
    return M.CohortModel(
        study_name=study.name,
        treated_share=study.treated_share,
        core=tuple(core),
        core_corr=np.eye(len(core)),
        core_weights=weights,
        others=tuple(others),
        refinements=tuple(refinements),
        derived=derived,
        ps_covariates=tuple(study.raw["propensity_model"]["covariates"]),
        log_or=log_or,
        omitted_log_or=omitted,
        prognosis_weights=prognosis_w,
        prognosis_center={k: 0.0 for k in prognosis_w},
        prognosis_scale={k: 1.0 for k in prognosis_w},
        prognosis_sd=1.0,
        outcomes=tuple(outcomes),
        partial_corr_m1_m6=float(settings.get("outcome_partial_corr", 0.5)),
        baseline=study.baseline,
        follow_up=study.follow_up,
        visit_days=visit_days(study, settings),
        survival=M.SurvivalModel(np.log(400.0), 1.0, 0.0, 200.0, 800.0),
        surgery=M.SurgeryModel(surg_cont, surg_bin),
        attrition=attrition_skeleton(study, settings),
        mcid={k: float(o["mcid"]["value"]) for k, o in study.outcomes.items()},
    )


def attrition_skeleton(study: Study, settings: Mapping[str, Any]) -> A.AttritionModel:
    """The attrition settings (`cohort.attrition`; default: H = the first outcome's baseline, no
    missed visits), with the parameters calibration solves set to zero."""
    outcomes = tuple(study.outcomes)
    raw = settings.get("attrition") or {"health": {outcomes[0]: 1.0}}
    weights, missed = A.settings(raw, outcomes, study.follow_up)
    return A.AttritionModel(weights, missed, {t: 0.0 for t in study.follow_up})

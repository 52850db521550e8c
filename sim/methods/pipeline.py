"""The paper's analysis of one cohort, end to end: PS model -> matching -> balance -> outcome
tests on the change from baseline. Returns tidy rows (one per outcome x time x analysis) with the
true effects beside the estimates, so performance can be measured against a named estimand.

Estimands (per outcome and time), each on the population the matched comparison targets: the
matched treated (each matched treated unit once, as the estimator weights them), from both potential
outcomes. An individual effect exists for a patient alive at the visit under both arms:
  truth_matched       mean individual effect among the matched treated alive under both arms (a
                      survivor average causal effect): what a matched treated-minus-control comparison
                      estimates. It differs from the ATT when treated go unmatched (189 treated vs 74
                      controls: at most 74 can be) and the effect varies (floors and ceilings make it vary);
  truth_while_alive   among the matched treated: mean change of those alive under decompression minus
                      that of those alive without it (each arm's potential changes and potential
                      deaths): what a complete-case matched comparison estimates when no one alive is
                      missed; it equals truth_matched when decompression does not change who survives;
  truth_always_seen   mean individual effect among the matched treated seen at the visit under both
                      arms: what trimming bounds (lee_bounds) bound;
  truth_att, truth_ate  the survivor effect among all treated, and in the whole cohort;
  truth_while_alive_cohort, truth_always_seen_cohort  the while-alive and always-seen contrasts over the
                      whole cohort (a randomised trial's targets), named so: they are not what the
                      matched comparison estimates.
The analyses see only the data: the change where the patient was seen at the visit, NaN where they
had died or missed it.
How each analysis' rows are reported (an estimate or only a p-value, the null its direction is
judged against, its scale) is declared by the analysis: sim.methods.outcomes.Tags. With ratio k or replacement the unit of analysis is the matched set: each
matched treated unit against the mean of its controls (alive at the visit), so that a treated unit
is not counted once per control; a control reused by several sets still appears in each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from sim.cohort.unmeasured import guard_ps_covariates
from sim.methods import outcomes as O
from sim.methods.balance import smd
from sim.methods.estimators import ESTIMATORS, CohortView
from sim.methods.formula import formula_columns, ps_design
from sim.methods.matching import MatchResult, match
from sim.methods.propensity import PropensityFit, fit_propensity
from sim.methods.sensitivity import SENSITIVITY_ANALYSES, sensitivity_fields
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES, truncation_fields

#: estimand name -> per-replicate truth column (bias, MSE and coverage are measured against one)
ESTIMANDS = {"att": "truth_att", "ate": "truth_ate", "matched": "truth_matched",
             "while_alive": "truth_while_alive", "always_seen": "truth_always_seen",
             "while_alive_cohort": "truth_while_alive_cohort", "always_seen_cohort": "truth_always_seen_cohort",
             "ato": "truth_ato"}
#: the per-replicate truth columns, in the order the rows carry them
TRUTH_NAMES = ("truth_ate", "truth_att", "truth_matched", "truth_while_alive", "truth_always_seen",
               "truth_while_alive_cohort", "truth_always_seen_cohort", "truth_ato")
CRUDE_ANALYSES = {"crude_diff_means": O.diff_means, "crude_wilcoxon": O.wilcoxon_ranksum}


@dataclass(frozen=True)
class MethodSpec:
    """The analysis settings of one condition, as plain values (picklable, hashable)."""

    ps_covariates: tuple[str, ...]
    algorithm: str = "greedy"
    caliper: float | None = 0.2
    caliper_scale: str = "logit"
    caliper_sd: str = "pooled"
    order: str = "largest"
    ratio: int = 1
    replace: bool = False
    exact: tuple[str, ...] = ()
    balance_covariates: tuple[str, ...] = ()
    balance_denominator: str = "pooled"
    outcomes: tuple[str, ...] = ()  # empty: every outcome of the study (see for_model)
    times: tuple[str, ...] = ()  # empty: every follow-up visit of the study
    analyses: tuple[str, ...] = ("wilcoxon", "signed_rank", "paired_t", "diff_means")
    crude: bool = False
    alpha: float = 0.05
    mcid: tuple[tuple[str, float], ...] = ()  # per outcome: the margin of the sensitivity analyses
    baseline: str = "pre"  # the study's baseline visit (the estimators adjust for the outcome there)
    ps_formula: str | None = None  # method.propensity.formula; None: main effects of ps_covariates

    @property
    def ps_columns(self) -> tuple[str, ...]:
        """The cohort columns the PS model reads (what the generator must produce)."""
        return formula_columns(self.ps_formula) if self.ps_formula else self.ps_covariates

    @classmethod
    def from_config(cls, method: Mapping[str, Any]) -> "MethodSpec":
        m = method["matching"]
        out = method["outcomes"]
        bal = method.get("balance", {})
        return cls(
            ps_covariates=tuple(method["propensity"]["covariates"]),
            algorithm=m["algorithm"], caliper=None if m["caliper"] is None else float(m["caliper"]),
            caliper_scale=m["caliper_scale"], caliper_sd=m["caliper_sd"], order=m["order"],
            ratio=int(m["ratio"]), replace=bool(m["replace"]), exact=tuple(m.get("exact") or ()),
            balance_covariates=tuple(bal.get("covariates") or method["propensity"]["covariates"]),
            balance_denominator=bal.get("denominator", "pooled"),
            outcomes=tuple(out.get("names") or ()), times=tuple(out.get("times") or ()),
            analyses=tuple(out["analyses"]),
            crude=bool(out.get("crude", False)), alpha=float(out.get("alpha", 0.05)),
            ps_formula=method["propensity"].get("formula"),
        )

    def for_model(self, model: Any) -> "MethodSpec":
        """The spec completed from the study's cohort model: outcomes and visits left empty become
        all of the study's, and each outcome's MCID is the margin of the sensitivity analyses."""
        return replace(self, outcomes=self.outcomes or tuple(o.name for o in model.outcomes),
                       times=self.times or tuple(model.follow_up), baseline=model.baseline,
                       mcid=tuple((o.name, float(model.mcid.get(o.name, float("nan")))) for o in model.outcomes))

    def check_columns(self, columns: Mapping[str, np.ndarray],
                      potential: Mapping[tuple[str, str], Any]) -> None:
        """Every name the analysis uses exists in a cohort: ValueError naming the config key."""
        allowed = sorted(k for k in columns if not k.endswith(("_y0", "_y1")))
        ps_key = "method.propensity.formula" if self.ps_formula else "method.propensity.covariates"
        guard_ps_covariates(self.ps_columns, ps_key)
        guard_ps_covariates(self.exact, "method.matching.exact")
        for key, names in ((ps_key, self.ps_columns),
                           ("method.balance.covariates", self.balance_covariates),
                           ("method.matching.exact", self.exact)):
            bad = [c for c in names if c not in columns]
            if bad:
                raise ValueError(f"{key}: unknown column {bad[0]!r}; allowed: {allowed}")
        ps_matrix(columns, self)  # the formula's transforms on a cohort (ValueError naming the key)
        outcomes = sorted({o for o, _ in potential})
        times = sorted({t for _, t in potential})
        for key, names, ok in (("method.outcomes.names", self.outcomes, outcomes),
                               ("method.outcomes.times", self.times, times)):
            bad = [c for c in names if c not in ok]
            if bad:
                raise ValueError(f"{key}: unknown {bad[0]!r}; allowed: {ok}")


def _matrix(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    missing = [c for c in names if c not in columns]
    if missing:
        raise ValueError(f"covariates {missing} are not cohort columns; available: {sorted(columns)}")
    return np.column_stack([np.asarray(columns[c], dtype=float) for c in names])


def ps_matrix(columns: Mapping[str, np.ndarray], spec: MethodSpec) -> np.ndarray:
    """The PS model's design without its intercept: the formula's (patsy, sim.methods.formula) or,
    without one, the covariates' columns as they are."""
    if spec.ps_formula is None:
        return _matrix(columns, spec.ps_covariates)
    return ps_design(columns, spec.ps_formula, key="method.propensity.formula").X


def ps_matrices(columns: Mapping[str, np.ndarray], spec: MethodSpec) -> tuple[np.ndarray, list[int]]:
    """ps_matrix of B replicates ((B, N) columns), one at a time, as (B, N, p), with the replicates
    whose design fails (zeros there; the per-replicate analysis then says why). Main effects: the
    columns stacked, no patsy."""
    if spec.ps_formula is None:
        return np.stack([np.asarray(columns[c], dtype=float) for c in spec.ps_covariates], axis=-1), []
    designs, bad = [], []
    for b in range(np.asarray(columns["treated"]).shape[0]):
        try:
            designs.append(ps_matrix({c: columns[c][b] for c in spec.ps_columns}, spec))
        except ValueError:
            bad.append(b)
            designs.append(None)
    shape = next((x.shape for x in designs if x is not None), (np.asarray(columns["treated"]).shape[1], 1))
    return np.stack([np.zeros(shape) if x is None else x for x in designs]), bad


def _exact_codes(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    if not names:
        return None
    keys = _matrix(columns, names)
    _, codes = np.unique(keys, axis=0, return_inverse=True)
    return codes.ravel()


def fit_and_match(columns: Mapping[str, np.ndarray], spec: MethodSpec,
                  rng: np.random.Generator) -> tuple[PropensityFit, MatchResult]:
    """The PS model and the matching of one cohort, as the spec sets them (covariates, algorithm,
    caliper, order, ratio, replacement, exact). Raises ValueError with a single treatment group."""
    treated = np.asarray(columns["treated"]).astype(bool)
    if treated.all() or not treated.any():
        raise ValueError("cohort has a single treatment group: nothing to compare")
    fit = fit_propensity(ps_matrix(columns, spec), treated.astype(np.int8))
    res = match(fit.ps, treated, algorithm=spec.algorithm, caliper=spec.caliper, caliper_scale=spec.caliper_scale,
                caliper_sd=spec.caliper_sd, order=spec.order, ratio=spec.ratio, replace=spec.replace,
                exact=_exact_codes(columns, spec.exact), rng=rng if spec.order == "random" else None)
    return fit, res


def analyse(columns: Mapping[str, np.ndarray], potential: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
            spec: MethodSpec, rng: np.random.Generator,
            seen: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[dict]:
    """Rows of estimates for one cohort; `seen` (per visit: seen under each arm) for the
    always-seen estimand. Raises ValueError when no analysis is possible."""
    fit, res = fit_and_match(columns, spec, rng)
    treated = np.asarray(columns["treated"]).astype(bool)
    ti, ci = res.treated_idx, res.control_idx
    Xb = _matrix(columns, spec.balance_covariates)
    X_ps = ps_matrix(columns, spec) if any(a in ESTIMATORS for a in spec.analyses) else None
    w = res.weights
    smd_after = smd(Xb, treated, weights=w, denominator=spec.balance_denominator) if res.n_pairs else np.full(Xb.shape[1], np.nan)
    abs_after = np.abs(smd_after)
    common = {
        "n_pairs": res.n_pairs,
        "share_treated_matched": res.n_treated_matched / max(res.n_treated, 1),
        "max_abs_smd": float(np.max(abs_after)) if res.n_pairs else np.nan,
        "mean_abs_smd": float(np.mean(abs_after)) if res.n_pairs else np.nan,
        "ps_separation": bool(fit.separation),
    }
    by_sets = spec.ratio > 1 or spec.replace
    rows = []
    for name in spec.outcomes or tuple(dict.fromkeys(o for o, _ in potential)):
        for t in spec.times or tuple(dict.fromkeys(t for _, t in potential)):
            d0, d1 = potential[(name, t)]
            observed = np.asarray(columns.get(f"{name}_delta_{t}", np.where(treated, d1, d0)), dtype=float)
            indiv = d1 - d0
            if by_sets:
                pop, y_t, y_c = matched_sets(ti, ci, observed)
            else:
                pop, y_t, y_c = ti, observed[ti], observed[ci]
            both_seen = seen[t][0] & seen[t][1] if seen is not None else np.ones(indiv.shape, bool)
            truths = {
                "truth_ate": _nanmean(indiv),
                "truth_att": _nanmean(indiv[treated]),
                "truth_matched": _nanmean(indiv[pop]),
                "truth_while_alive": _nanmean(d1[pop]) - _nanmean(d0[pop]),
                "truth_always_seen": _nanmean(indiv[pop][both_seen[pop]]),
                "truth_while_alive_cohort": _nanmean(d1) - _nanmean(d0),
                "truth_always_seen_cohort": _nanmean(indiv[both_seen]),
                "truth_ato": _overlap_mean(indiv, columns.get("ps_true")),
            }
            base = {"outcome": name, "timepoint": t, **common, **truths}
            if res.n_pairs:
                results = O.analyse_deltas(y_t, y_c, [a for a in spec.analyses if a in O.ANALYSES])
                for a in spec.analyses:
                    if a in ESTIMATORS:
                        view = CohortView(X_ps, treated, observed, np.asarray(columns[f"{name}_{spec.baseline}"], float),
                                          fit.ps, res.pair_id, w)
                        fields = estimator_fields(a, view, spec.alpha)
                    elif a in SENSITIVITY_ANALYSES:
                        fields = sensitivity_fields(a, y_t, y_c, dict(spec.mcid)[name], spec.alpha)
                    elif a in TRUNCATION_ANALYSES and by_sets:
                        fields = result_row_fields(O.TestResult(a, reason="needs 1:1 pairs"), a)
                    elif a in TRUNCATION_ANALYSES:
                        dead = _death_days(columns, t)
                        fields = truncation_fields(a, y_t, dead[ti], y_c, dead[ci], spec.alpha)
                    else:
                        fields = result_row_fields(results[a], a)
                    rows.append({**base, "analysis": a, **fields})
            else:
                for a in spec.analyses:
                    rows.append({**base, "analysis": a, **result_row_fields(O.TestResult(a, reason="no matched pairs"), a)})
            if spec.crude:
                for a, fn in CRUDE_ANALYSES.items():
                    r = fn(observed[treated], observed[~treated])
                    rows.append({**base, "analysis": a, **result_row_fields(r, a)})
    return rows


def estimator_fields(name: str, view: CohortView, alpha: float) -> dict:
    """The row fields of an estimator beyond matched pairs (its Estimate; favours = its sign)."""
    r = ESTIMATORS[name](view, alpha)
    return {"estimate": r.estimate, "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value,
            "favours": float(np.sign(r.estimate)) if np.isfinite(r.estimate) else float("nan"),
            "n_used_treated": r.n_treated, "n_used_control": r.n_control, "note": r.reason}


def _death_days(columns: Mapping[str, np.ndarray], t: str) -> np.ndarray:
    """Day of death of the patients dead at visit t, inf for the living (the composite's order)."""
    dead = np.asarray(columns[f"dead_{t}"]).astype(bool)
    return np.where(dead, np.asarray(columns["survival_days"], dtype=float), np.inf)


def matched_sets(ti: np.ndarray, ci: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per matched set (one treated unit): the treated index, its outcome, and the mean outcome of
    its controls (NaN when none of them has one)."""
    sets, inv = np.unique(ti, return_inverse=True)
    yc = y[ci]
    ok = ~np.isnan(yc)
    total = np.bincount(inv, weights=np.where(ok, yc, 0.0), minlength=len(sets))
    count = np.bincount(inv, weights=ok.astype(float), minlength=len(sets))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sets, y[sets], np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _overlap_mean(indiv: np.ndarray, ps_true) -> float:
    """The ATO's truth: the individual effects weighted by e(1 - e) of the true PS, over the patients
    alive under both arms (Li, Morgan & Zaslavsky 2018)."""
    if ps_true is None:
        return float("nan")
    w = np.asarray(ps_true, dtype=float) * (1 - np.asarray(ps_true, dtype=float))
    ok = ~np.isnan(indiv)
    return float(np.sum(w[ok] * indiv[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def result_row_fields(r: O.TestResult, analysis: str) -> dict:
    tags, nan = O.tags_of(analysis), float("nan")
    favours = float(np.sign(r.estimate - tags.null)) if np.isfinite(r.estimate) else nan
    plain = not tags.estimate
    return {
        "estimate": nan if plain else r.estimate,
        "se": nan if plain else r.se,
        "ci_low": nan if plain else r.ci_low,
        "ci_high": nan if plain else r.ci_high,
        "p_value": r.p_value,
        "favours": favours,
        "n_used_treated": r.n_treated,
        "n_used_control": r.n_control,
        "note": r.reason,
    }

"""Propensity-score weighting of a user's own DataFrame (`sim.weight_data`, `python -m sim.weight`):
the PS model (main effects or any patsy formula), ATT / ATE / ATO weights, cobalt-style balance, Kish
effective sample sizes and, with an outcome, the weighted difference with an SE that accounts for
the estimated PS.

Why it reuses the simulation's estimators: the weights and the M-estimation sandwich of
sim.methods.estimators.weighting are the ones the Monte Carlo grids measure, so the real data get
the estimator whose coverage the simulations check. The weights are normalised within each arm to
sum to its number of units (mean 1 per arm): the weighted means are Hajek's, ATT treated weights
stay 1, and the Kish ESS reads against the arm's n. Bad input raises ValueError with one line naming
the column or argument and the allowed values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.methods.balance_table import DENOMINATORS, default_denominator, kish_ess, weighted_balance
from sim.methods.estimators.base import CohortView
from sim.methods.estimators.weighting import _WEIGHTS, WEIGHT_SHARE_FACTOR, WEIGHT_SHARE_MAX, ipw_ate, ipw_att, overlap
from sim.methods.formula import formula_columns, ps_design, split_formula
from sim.methods.propensity import fit_propensity, odds_ratio_table

__all__ = ["ESTIMANDS", "ESS_MIN_SHARE", "PS_EDGE", "WeightedData", "balancing_weights", "weight_data"]

ESTIMANDS = {"att": ipw_att, "ate": ipw_ate, "ato": overlap}
#: warn when an arm's Kish ESS falls below this share of its n (WEIGHT_SHARE_MAX: one unit's share)
ESS_MIN_SHARE = 0.10
#: a PS this close to 0 or 1 counts as 0 or 1 (the fitter clips at 1e-10)
PS_EDGE = 1e-8
SE_METHOD = ("M-estimation sandwich, PS estimated (logistic score equations stacked with the weighted "
             "means; Lunceford & Davidian 2004, Reifeis & Hudgens 2022), normal reference")


@dataclass(frozen=True)
class WeightedData:
    """`data`: every input row + ps, logit_ps, weight; `weights` that column; `balance` cobalt-style
    before/after table; `ess` Kish ESS per arm; `estimate` one row (None without an outcome);
    `ps_coefficients` the PS model's terms; `warnings` one line each; `settings` the roles."""

    data: pd.DataFrame
    balance: pd.DataFrame
    ess: pd.DataFrame
    estimate: pd.DataFrame | None
    ps_coefficients: pd.DataFrame
    settings: dict
    converged: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def weights(self) -> pd.Series:
        return self.data["weight"]


def balancing_weights(ps, treated, estimand: str) -> np.ndarray:
    """ATT (1, e/(1-e)), ATE (1/e, 1/(1-e)) or ATO (1-e, e) weights, normalised per arm to sum to
    the arm's number of units."""
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand: must be one of {list(ESTIMANDS)}, got {estimand!r}")
    e = np.asarray(ps, dtype=float)
    t = np.asarray(treated).astype(bool)
    w1, w0, _, _ = _WEIGHTS[estimand](e)
    w = np.where(t, w1, w0).astype(float)
    for arm in (t, ~t):
        w[arm] *= arm.sum() / w[arm].sum()
    return w


def _check(df: pd.DataFrame, treatment: str, covariates, formula, estimand: str, outcome, key: str) -> list[str]:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df: must be a pandas DataFrame, got {type(df).__name__}")
    if estimand not in ESTIMANDS:
        raise ValueError(f"estimand: must be one of {list(ESTIMANDS)}, got {estimand!r}")
    if (covariates is None) == (formula is None):
        raise ValueError("give either covariates (main effects) or formula (e.g. 'age + I(age**2) + married'), "
                         "not both and not neither")
    if formula is not None:
        try:
            lhs, _ = split_formula(formula)
            used = list(formula_columns(formula))
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        if lhs is not None and lhs != treatment:
            raise ValueError(f"{key}: its left side {lhs!r} is not the treatment column {treatment!r}")
    else:
        used = list(dict.fromkeys(covariates))
        if not used:
            raise ValueError("covariates: give at least one column")
    if treatment not in df.columns:
        raise ValueError(f"treatment: column {treatment!r} not found; columns: {list(df.columns)}")
    if treatment in used or (outcome is not None and outcome in used):
        raise ValueError(f"covariates: the treatment {treatment!r} and the outcome cannot be covariates")
    if outcome is not None and outcome == treatment:
        raise ValueError(f"outcome: {outcome!r} is the treatment column")
    for arg, cols in ((key if formula is not None else "covariates", used), ("outcome", [outcome])):
        missing = [c for c in cols if c is not None and c not in df.columns]
        if missing:
            raise ValueError(f"{arg}: column(s) not found: {', '.join(map(str, missing))}; "
                             f"columns: {list(df.columns)}")
    for c in [treatment, *used, *([outcome] if outcome is not None else [])]:
        k = int(df[c].isna().sum())
        if k:
            raise ValueError(f"column {c!r} has {k} missing value(s); drop or impute those rows first")
    t = df[treatment]
    try:
        values = sorted(pd.unique(t).tolist())
    except TypeError:  # mixed types
        values = sorted(pd.unique(t).tolist(), key=str)
    if not pd.api.types.is_numeric_dtype(t) or not t.isin([0, 1]).all():
        raise ValueError(f"treatment column {treatment!r} must be 0/1; found values {values[:10]}"
                         + (" ..." if len(values) > 10 else ""))
    n1 = int((t == 1).sum())
    if n1 < 2 or len(t) - n1 < 2:
        raise ValueError(f"treatment column {treatment!r} needs at least 2 treated (1) and 2 control (0) rows; "
                         f"got {n1} treated and {len(t) - n1} control")
    if covariates is not None:
        for c in used:
            if not pd.api.types.is_numeric_dtype(df[c]):
                raise ValueError(f"covariate {c!r} is not numeric (use a formula with C({c}) for a categorical one)")
            if not np.isfinite(df[c].to_numpy(dtype=float)).all():
                raise ValueError(f"covariate {c!r} has non-finite values")
            if df[c].nunique() < 2:
                raise ValueError(f"covariate {c!r} is constant")
    if outcome is not None:
        if not pd.api.types.is_numeric_dtype(df[outcome]) or not np.isfinite(df[outcome].to_numpy(float)).all():
            raise ValueError(f"outcome column {outcome!r} must be numeric and finite")
    return used


def _balance_columns(df: pd.DataFrame, used: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """The covariates balance is checked on: each numeric column read, each level of a non-numeric one
    as a 0/1 indicator (a formula's transforms are not separate rows, as in cobalt)."""
    cols, names, types = [], [], []
    for c in used:
        x = df[c]
        if pd.api.types.is_numeric_dtype(x):
            v = x.to_numpy(dtype=float)
            cols.append(v)
            names.append(c)
            types.append("binary" if np.isin(v, (0.0, 1.0)).all() else "continuous")
        else:
            for level in sorted(pd.unique(x).tolist(), key=str):
                cols.append((x == level).to_numpy(dtype=float))
                names.append(f"{c}={level}")
                types.append("binary")
    return np.column_stack(cols), names, types


def _weight_warnings(w: np.ndarray, t: np.ndarray) -> list[str]:
    out = []
    for arm, rows in (("treated", t), ("control", ~t)):
        a = w[rows]
        share, ess = float(a.max() / a.sum()), kish_ess(a)
        # as the simulations' estimators flag it: a small arm is not flagged for being small
        if (share > WEIGHT_SHARE_MAX and share > WEIGHT_SHARE_FACTOR / a.size) or ess < ESS_MIN_SHARE * a.size:
            out.append(f"extreme weights: max weight share {share:.1%} of the {arm} arm's total weight "
                       f"(threshold {WEIGHT_SHARE_MAX:.0%} and {WEIGHT_SHARE_FACTOR:g}x an equal share); "
                       f"Kish ESS {ess:.1f} of {a.size} (threshold {ESS_MIN_SHARE:.0%} of n)")
    return out


def _edge_check(fit, t: np.ndarray, estimand: str) -> tuple[list[str], list[str]]:
    """A PS of 0 or 1 (within PS_EDGE): an error where the estimand's weight divides by it or the fit
    diverged (complete separation), a warning where no unit of the other arm resembles the unit
    (positivity fails for the estimand), a note where the unit only drops out (e.g. ATT controls at 0)."""
    e = fit.ps
    low, high = e <= PS_EDGE, e >= 1 - PS_EDGE
    none = np.zeros_like(t)
    k = int((low | high).sum())
    hint = "use fewer or coarser terms in the PS model"
    if fit.separation and not fit.converged:
        raise ValueError(f"PS of 0 or 1 (separation): the PS model predicts the arm of {k} unit(s) with certainty "
                         f"and its fit did not converge; {hint}")
    infinite = {"att": ~t & high, "ate": (t & low) | (~t & high), "ato": none}[estimand]
    if infinite.any():
        raise ValueError(f"PS of 0 or 1 (separation): {int((t & infinite).sum())} treated and "
                         f"{int((~t & infinite).sum())} control unit(s) have a PS within {PS_EDGE:g} of the other "
                         f"arm's certainty, so their {estimand.upper()} weights are infinite; {hint}, or --estimand ato")
    unsupported = {"att": t & high, "ate": (t & high) | (~t & low), "ato": none}[estimand]
    warnings = [f"PS of 0 or 1 (separation): {int((t & unsupported).sum())} treated and "
                f"{int((~t & unsupported).sum())} control unit(s) have a PS within {PS_EDGE:g} of their own arm's "
                f"certainty, so no unit of the other arm resembles them and the {estimand.upper()} extrapolates "
                f"there; {hint}, or --estimand ato"] if unsupported.any() else []
    rest = int(((low | high) & ~unsupported).sum())
    notes = [f"{rest} unit(s) have a PS within {PS_EDGE:g} of 0 or 1, each where the {estimand.upper()} "
             "needs no counterpart: they carry almost no weight"] if rest else []
    return warnings, notes


def weight_data(df: pd.DataFrame, treatment: str, covariates=None, formula: str | None = None, *,
                estimand: str = "att", outcome: str | None = None, binary: str = "std",
                denominator: str | None = None, alpha: float = 0.05, key: str = "formula") -> WeightedData:
    """Weight `df` by its estimated PS for `estimand` ("att", "ate", "ato"); see WeightedData."""
    covariates = None if covariates is None else ([covariates] if isinstance(covariates, str) else list(covariates))
    used = _check(df, treatment, covariates, formula, estimand, outcome, key)
    denominator = default_denominator(estimand) if denominator is None else denominator
    if denominator not in DENOMINATORS:
        raise ValueError(f"denominator: must be one of {list(DENOMINATORS)}, got {denominator!r}")
    if formula is not None:
        design = ps_design(df, formula, key=key)
        X, terms = design.X, list(design.names)
    else:
        X, terms = df[covariates].to_numpy(dtype=float), list(covariates)
    t = df[treatment].to_numpy().astype(int).astype(bool)
    fit = fit_propensity(X, t.astype(np.int8))
    edge_warnings, notes = _edge_check(fit, t, estimand)
    warnings = ([] if fit.converged else [f"propensity model: {fit.message}"]) + edge_warnings
    w = balancing_weights(fit.ps, t, estimand)
    warnings += _weight_warnings(w, t)
    out = df.copy()
    out["ps"], out["logit_ps"], out["weight"] = fit.ps, fit.logit_ps, w
    B, names, types = _balance_columns(df, used)
    bal = weighted_balance(B, t, names, w, denominator=denominator, binary=binary, types=types)
    coefs = odds_ratio_table(fit, terms, include_intercept=True).rename(columns={"covariate": "term"})
    coefs["term"] = coefs["term"].replace({"(intercept)": "Intercept"})
    ess = pd.DataFrame([{"arm": arm, "n": int(rows.sum()), "ess_before": float(rows.sum()),
                         "ess_after": kish_ess(w[rows]), "ess_share_after": kish_ess(w[rows]) / rows.sum()}
                        for arm, rows in (("treated", t), ("control", ~t))])
    est = None
    if outcome is not None:
        y = df[outcome].to_numpy(dtype=float)
        view = CohortView(X=X, treated=t, y=y, baseline=np.zeros(t.size), ps=fit.ps,
                          pair_id=np.full(t.size, -1), match_weights=np.zeros(t.size))
        r = ESTIMANDS[estimand](view, alpha)
        if not np.isfinite(r.estimate):
            raise ValueError(f"outcome {outcome!r}: the weighted difference failed: {r.reason}")
        est = pd.DataFrame([{"estimand": estimand.upper(), "outcome": outcome, "estimate": r.estimate, "se": r.se,
                             "ci_low": r.ci_low, "ci_high": r.ci_high, "ci_level": 1 - alpha, "p_value": r.p_value,
                             "se_method": SE_METHOD, "se_weights_known": _wls_hc0(y, t, w),
                             "n_treated": r.n_treated, "n_control": r.n_control,
                             "mean_treated": float(np.average(y[t], weights=w[t])),
                             "mean_control": float(np.average(y[~t], weights=w[~t]))}])
    settings = {"treatment": treatment, "covariates": covariates, "formula": formula, "ps_terms": terms,
                "balance_covariates": names, "estimand": estimand, "outcome": outcome, "binary": binary,
                "denominator": denominator, "denominator_label": DENOMINATORS[denominator],
                "weight_normalisation": "per arm, to sum to the arm's number of units (Hajek)",
                "extreme_weight_share": WEIGHT_SHARE_MAX, "ess_min_share": ESS_MIN_SHARE, "alpha": alpha,
                "n_treated": int(t.sum()), "n_control": int((~t).sum())}
    return WeightedData(out, bal, ess, est, coefs, settings, bool(fit.converged), warnings, notes)


def _wls_hc0(y: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    """The SE of the weighted difference if the weights were known: WLS of y on [1, T] with the
    heteroskedasticity-robust HC0 sandwich (statsmodels), shown beside the one that is not naive."""
    import statsmodels.api as sm

    fit = sm.WLS(y, sm.add_constant(t.astype(float)), weights=w).fit(cov_type="HC0")
    return float(np.asarray(fit.bse)[1])

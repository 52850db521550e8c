"""A PS model, a matching (pairs, 1:k, full matching or subclasses) and the weighted balance, on
arrays: the one implementation behind `python -m sim.match` and :func:`sim.api.match_data`.

Why arrays and no pandas: the command's fast path never imports pandas (its import alone costs
more than the whole rest of a 20,000-row run), and the API wraps these arrays in DataFrames.

Every method reports its groups the same way: ``set_id`` (-1 = not used) and MatchIt's weights.
``structure`` says what the groups are, which decides the sensitivity analysis that fits them:
  pairs         1:1 without replacement (signed-rank bounds)
  matched_sets  1:k without replacement, or full matching: one treated unit with >= 1 controls or
                one control with >= 1 treated units (m-statistic bounds, sensitivitymv::senm)
  overlapping   with replacement: a control may sit in several sets (its smallest set id shown)
  subclasses    subclassification: every unit, several of each arm per subclass (no Rosenbaum
                bounds: those need one treated unit or one control per set)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.methods.balance import smd, variance_ratio
from sim.methods.propensity import PropensityFit, fit_propensity

__all__ = ["METHODS", "ESTIMANDS", "PAIR_HOLDS", "WEIGHTS", "PSMatched", "ps_match", "balance_columns"]

METHODS = ("greedy", "optimal", "full", "subclass")
ESTIMANDS = ("att", "ate")
#: full matching builds the dense treated x control distance matrix (sim.methods.matching.full)
FULL_MAX_CELLS = 25_000_000
BALANCE_COLUMNS = ("covariate", "smd_before", "smd_after", "vr_before", "vr_after")
#: what the pair column holds, per structure (written to matched.json)
PAIR_HOLDS = {"pairs": "pair id (1 treated, 1 control)", "overlapping": "smallest matched-set id of the unit "
              "(controls reused: sets overlap)", "matched_sets": "matched-set id (1 treated with >= 1 controls, or "
              "1 control with >= 1 treated)", "subclasses": "subclass 0.. in increasing PS"}
WEIGHTS = {"matching": "treated 1 when matched; a control the sum of 1/k over its sets (k: the controls of the "
                       "set's treated unit); 0 unused",
           "att": "MatchIt's ATT weights: treated 1; a control n_treated/n_control of its set or subclass, "
                  "scaled so that the controls' weights sum to the number of controls used",
           "ate": "MatchIt's ATE weights: n/n_treated (treated) and n/n_control (controls) of its set or subclass, "
                  "each arm scaled so that its weights sum to its number of units used"}


@dataclass(frozen=True)
class PSMatched:
    """The fit, the groups and the balance. ``set_id``: pair / matched set / subclass (-1 unused);
    ``weights``: MatchIt's (0 unused); ``balance``: BALANCE_COLUMNS as arrays; ``result``: the
    matcher's own result (MatchResult, FullMatchResult or SubclassResult)."""

    fit: PropensityFit
    set_id: np.ndarray
    weights: np.ndarray
    balance: dict
    result: object
    method: str
    estimand: str
    structure: str
    n_sets: int
    n_treated: int
    n_control: int
    n_treated_used: int
    n_control_used: int
    caliper_width: float | None
    notes: tuple

    @property
    def converged(self) -> bool:
        return bool(self.fit.converged and not self.fit.separation)


def balance_columns(B, treated, names, weights) -> dict:
    """Before (all units, unweighted) and after (``weights``; 0 = left out) SMDs (pooled) and
    variance ratios: the columns of sim.methods.balance.balance_table, as arrays."""
    B = np.asarray(B, dtype=float).reshape(len(treated), -1)
    return {"covariate": list(names), "smd_before": smd(B, treated), "smd_after": smd(B, treated, weights),
            "vr_before": variance_ratio(B, treated), "vr_after": variance_ratio(B, treated, weights)}


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def ps_match(X, treated, B, names, *, method: str = "greedy", caliper: float | None = 0.2,
             caliper_scale: str = "logit", caliper_sd: str = "pooled", order: str = "largest", ratio: int = 1,
             replace: bool = False, exact=None, rng=None, n_subclasses: int = 5, estimand: str = "att",
             warn=None) -> PSMatched:
    """Fit logit P(treated | X) (X: the PS design, without intercept), group the units by
    ``method`` and weigh them for ``estimand`` (greedy/optimal: ATT only), then the balance of the
    columns of ``B`` (named ``names``). Full matching takes ``caliper``/``caliper_scale``/
    ``caliper_sd``; subclassification ``n_subclasses``. ``exact``: stratum codes (greedy/optimal).
    ``warn(message)`` hears of a PS fit that separated or did not converge. Bad input: ValueError."""
    _choice("method", method, METHODS)
    _choice("estimand", estimand, ESTIMANDS)
    t = np.asarray(treated)
    if not np.isin(t, [0, 1]).all():
        raise ValueError("treatment must be 0/1")
    t = t.astype(np.int8)
    fit = fit_propensity(X, t)
    if warn is not None and not (fit.converged and not fit.separation):
        warn(str(fit.message))
    tb = t.astype(bool)
    n_t, n_c = int(tb.sum()), int((~tb).sum())
    width = None
    if method in ("greedy", "optimal"):
        if estimand != "att":
            raise ValueError(f"{method} matching gives ATT weights only; estimand 'ate' needs method full or subclass")
        from sim.methods.matching import match

        res = match(fit.ps, t, algorithm=method, caliper=caliper, caliper_scale=caliper_scale,
                    caliper_sd=caliper_sd, order=order, ratio=ratio, replace=replace, exact=exact, rng=rng)
        set_id, w, width = res.pair_id, res.weights, res.caliper_width
        structure = "overlapping" if replace else "pairs" if ratio == 1 else "matched_sets"
        n_sets, notes = res.n_treated_matched, res.notes
    elif method == "full":
        if exact is not None:
            raise ValueError("exact matching is not available with full matching")
        if n_t * n_c > FULL_MAX_CELLS:
            raise ValueError(f"full matching of {n_t} treated x {n_c} controls needs a distance matrix of "
                             f"{n_t * n_c:,} cells (limit {FULL_MAX_CELLS:,}): use greedy or optimal matching, "
                             "or subclassification")
        from sim.methods.matching.full import full_match
        from sim.methods.matching.subclass import subclass_weights

        res = full_match(fit.ps, t, scale=caliper_scale, caliper=caliper, caliper_sd=caliper_sd)
        set_id, w, width, structure = res.set_id, res.weights, res.caliper_width, "matched_sets"
        if estimand == "ate":  # MatchIt: full matching's sets weighted as subclasses
            used = set_id >= 0
            w = np.zeros(t.size)
            w[used] = subclass_weights(set_id[used], tb[used], "ate")
        n_sets, notes = res.n_sets, res.notes
    else:
        if exact is not None:
            raise ValueError("exact matching is not available with subclassification")
        from sim.methods.matching.subclass import subclassify

        res = subclassify(fit.ps, t, n_subclasses, estimand)
        set_id, w, structure = res.subclass, res.weights, "subclasses"
        n_sets, notes = res.n_subclasses, res.notes
    used = np.asarray(w) > 0
    return PSMatched(fit, np.asarray(set_id, np.int64), np.asarray(w, float), balance_columns(B, t, names, w),
                     res, method, estimand, structure, int(n_sets), n_t, n_c, int((used & tb).sum()),
                     int((used & ~tb).sum()), width, tuple(notes))

"""Subclassification on the propensity score (Rosenbaum & Rubin 1984; MatchIt ``method = "subclass"``).

Cut points: quantiles (R's type 7, numpy's default "linear") of the score among the treated units
for the ATT, among all units for the ATE, at 0, 1/k, ..., 1 (k = ``n_subclasses``, default 5 as
Rosenbaum & Rubin; MatchIt's default is 6). A unit goes to subclass s when q_s <= score < q_{s+1}
(the lowest and highest subclasses take everything below and above: R's ``findInterval(...,
all.inside = TRUE)``), so a score equal to a cut point goes up. Equal cut points (a discrete score)
leave fewer subclasses.

A subclass without a treated unit or without a control is merged into its neighbour towards the
middle of the score range (the upper neighbour in the lower half, the lower one in the upper half),
repeatedly, until every subclass has both arms. MatchIt instead moves single units in from nearby
subclasses ("scooting", min.n = 1); merging keeps the subclasses intervals of the score and never
moves a unit across a cut point, and it is what the stratified estimator needs among the seen units
too (:func:`merge_empty`).

Weights as MatchIt with ``normalize = TRUE`` (n1_s, n0_s, n_s: treated, controls and all units of
subclass s): ATT: treated 1, controls n1_s / n0_s; ATE: treated n_s / n1_s, controls n_s / n0_s;
then each arm's weights rescaled to average 1 (to sum to the arm's count). The weighted
difference in means is the stratified estimator sum_s (n1_s / N1) (mean1_s - mean0_s) for the
ATT and sum_s (n_s / N) (mean1_s - mean0_s) for the ATE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SubclassResult", "subclassify", "merge_empty", "subclass_weights"]


@dataclass(frozen=True)
class SubclassResult:
    """``subclass`` (length n): 0 .. n_subclasses - 1 in increasing score; ``weights`` as the
    module docstring; ``cuts``: the quantile cut points (k + 1 of them, before merging)."""

    subclass: np.ndarray
    weights: np.ndarray
    cuts: np.ndarray
    n_subclasses: int
    estimand: str
    notes: tuple = ()


def merge_empty(sub: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Relabel subclass codes (any integers, ordered as the score) to 0..m-1 after merging every
    subclass that lacks an arm into its neighbour towards the middle. All one arm: one subclass."""
    sub = np.asarray(sub)
    t = np.asarray(treated).astype(bool)
    codes, sub = np.unique(sub, return_inverse=True)
    m = codes.size
    n1 = np.bincount(sub[t], minlength=m)
    n0 = np.bincount(sub[~t], minlength=m)
    groups = [[s] for s in range(m)]  # consecutive runs of original codes
    c1, c0 = list(n1), list(n0)
    while len(groups) > 1:
        bad = [g for g in range(len(groups)) if c1[g] == 0 or c0[g] == 0]
        if not bad:
            break
        g = bad[0]
        into = g + 1 if g < (len(groups) - 1) / 2 else g - 1
        lo, hi = min(g, into), max(g, into)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]
        c1[lo:hi + 1] = [c1[lo] + c1[hi]]
        c0[lo:hi + 1] = [c0[lo] + c0[hi]]
    label = np.empty(m, np.int64)
    for k, grp in enumerate(groups):
        label[grp] = k
    return label[sub]


def subclass_weights(sub: np.ndarray, treated: np.ndarray, estimand: str = "att") -> np.ndarray:
    """MatchIt's subclassification weights (module docstring); every subclass must hold both arms."""
    t = np.asarray(treated).astype(bool)
    m = int(sub.max()) + 1 if sub.size else 0
    n1 = np.bincount(sub[t], minlength=m).astype(float)
    n0 = np.bincount(sub[~t], minlength=m).astype(float)
    if np.any(n1 == 0) or np.any(n0 == 0):
        raise ValueError("every subclass needs a treated unit and a control (merge_empty first)")
    if estimand == "att":
        w = np.where(t, 1.0, n1[sub] / n0[sub])
    elif estimand == "ate":
        w = np.where(t, (n1 + n0)[sub] / n1[sub], (n1 + n0)[sub] / n0[sub])
    else:
        raise ValueError(f"estimand must be 'att' or 'ate'; got {estimand!r}")
    for arm in (t, ~t):
        if arm.any():
            w[arm] *= arm.sum() / w[arm].sum()
    return w


def subclassify(score, treated, n_subclasses: int = 5, estimand: str = "att") -> SubclassResult:
    """Subclasses of ``score`` (the PS, or any monotone transform: the subclasses are the same
    on the logit) at quantiles for ``estimand`` "att" (the treated units') or "ate" (all units'),
    with MatchIt's weights; see the module docstring."""
    score = np.asarray(score, dtype=float)
    t = np.asarray(treated).astype(bool)
    if score.ndim != 1 or t.shape != score.shape or not np.all(np.isfinite(score)):
        raise ValueError("score must be a finite 1-D array as long as treated")
    if isinstance(n_subclasses, bool) or int(n_subclasses) != n_subclasses or n_subclasses < 1:
        raise ValueError(f"n_subclasses must be a whole number >= 1; got {n_subclasses!r}")
    if estimand not in ("att", "ate"):
        raise ValueError(f"estimand must be 'att' or 'ate'; got {estimand!r}")
    if not t.any() or t.all():
        raise ValueError("subclassification needs treated units and controls")
    k = int(n_subclasses)
    base = score[t] if estimand == "att" else score
    cuts = np.quantile(base, np.linspace(0.0, 1.0, k + 1))
    raw = np.searchsorted(cuts[1:-1], score, side="right")
    sub = merge_empty(raw, t)
    m = int(sub.max()) + 1
    notes = []
    filled = np.unique(raw).size
    if filled < k:
        notes.append(f"{k - filled} of {k} subclasses empty (tied cut points)")
    if m < filled:
        notes.append(f"{filled - m} subclasses without both arms merged into a neighbour")
    return SubclassResult(sub, subclass_weights(sub, t, estimand), cuts, m, estimand, tuple(notes))

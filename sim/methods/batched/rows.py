"""The rows of a chunk's batched analysis (sim.methods.batched), built as pipeline.analyse builds
them: the per-pair analyses' fields for the whole chunk (`per_pair_fields`: rosenbaum, evalue,
tost by sim.methods.batched.sensitivity, lee_bounds and composite_rank by .truncation, where
`covers(spec)`), then the tidy frame column by column (`tidy_rows`); for what the batch does not
cover, one record per row with the per-pair analyses computed by the reference's own functions on
each replicate's pairs (`records`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special

from sim.methods.batched import outcome_tests as T
from sim.methods.batched import sensitivity as S
from sim.methods.batched import truncation as TR
from sim.methods import outcomes as O
from sim.methods.pipeline import TRUTH_NAMES, result_row_fields
from sim.methods.sensitivity import SENSITIVITY_ANALYSES, sensitivity_fields
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES, truncation_fields

#: the analyses run on each replicate's pairs (the reference: sensitivity_fields, truncation_fields)
PER_PAIR = (*SENSITIVITY_ANALYSES, *TRUNCATION_ANALYSES)
NAN = float("nan")


class PairSets:
    """The matched pairs' changes and death days of replicate b, outcome x time k, as the
    reference hands them to the per-pair analyses (pairs in increasing treated index)."""

    def __init__(self, obs, ti, ci, n_pairs, keys, dead):
        self.obs, self.ti, self.ci, self.n_pairs, self.keys, self.dead = obs, ti, ci, n_pairs, keys, dead

    def changes(self, b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.n_pairs[b]
        return self.obs[k, b, self.ti[b, :m]], self.obs[k, b, self.ci[b, :m]]

    def deaths(self, b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        m, days = self.n_pairs[b], self.dead[self.keys[k][1]]
        return days[b, self.ti[b, :m]], days[b, self.ci[b, :m]]


def covers(spec) -> bool:
    """Whether the batch computes `spec`'s per-pair analyses: rosenbaum, evalue, tost, lee_bounds,
    composite_rank, with 0 < alpha < 0.5 and, for the sensitivity analyses, every outcome's MCID a
    finite number > 0. Otherwise `records` runs the reference's functions (and raises their errors)."""
    names = [a for a in spec.analyses if a in PER_PAIR]
    if not all(a in S.COVERED or a in TR.COVERED for a in names) or not 0 < spec.alpha < 0.5:
        return False
    mcid = dict(spec.mcid)
    return not any(a in S.COVERED for a in names) or all(
        isinstance(mcid.get(o), (int, float, np.number)) and not isinstance(mcid[o], bool)
        and math.isfinite(mcid[o]) and mcid[o] > 0 for o in spec.outcomes)


def per_pair_fields(spec, keys, pairs: PairSets) -> dict[str, dict[str, np.ndarray]]:
    """{analysis: its row fields as (B, K) arrays, in the reference's order} of the per-pair
    analyses of `spec` on the chunk's pairs; Lee rows near a decision at 0 (truncation.FRAGILE)
    recomputed by the reference. Only where covers(spec)."""
    names = [a for a in spec.analyses if a in PER_PAIR]
    out = {}
    if any(a in S.COVERED for a in names):
        mcid = np.array([dict(spec.mcid)[o] for o, _ in keys], dtype=float)
        st = S.sensitivity_stats(pairs.obs, pairs.ti, pairs.ci, pairs.n_pairs, mcid)
        out.update({a: S.sensitivity_fields(a, st, mcid, spec.alpha) for a in names if a in S.COVERED})
    lee, composite = "lee_bounds" in names, "composite_rank" in names
    if lee or composite:
        times = list(dict.fromkeys(t for _, t in keys))
        days = (np.stack([np.asarray(pairs.dead[t], dtype=np.float64) for t in times]) if composite
                else np.full((1, 1, 1), np.inf))
        time_of = np.array([times.index(t) if composite else 0 for _, t in keys], dtype=np.int64)
        st_lee, st_comp = TR.truncation_stats(pairs.obs, days, time_of, pairs.ti, pairs.ci, pairs.n_pairs, lee,
                                               composite, 1 - spec.alpha, float(special.ndtri(1 - spec.alpha / 2)), 2.0)
    if lee:
        fields, fragile = _lee_fields(st_lee)
        for i, k in zip(*np.nonzero(fragile)):
            (yt, yc), (dt, dc) = pairs.changes(i, k), pairs.deaths(i, k)
            for name, value in truncation_fields("lee_bounds", yt, dt, yc, dc, spec.alpha).items():
                fields[name][i, k] = value
        out["lee_bounds"] = fields
    if composite:
        out["composite_rank"] = _composite_fields(st_comp)
    return out


def reference_fields(names, keys, pairs: PairSets) -> dict[str, dict[str, np.ndarray]]:
    """{analysis: its row fields as (B, K) arrays} of registered outcome analyses the batch has no
    kernel for (a user's own, fisher_exact, diff_means_paired), by their own functions on each
    replicate's pairs, as pipeline.analyse runs them: so a new analysis keeps the rest of the chunk
    on the batched path."""
    B, K = len(pairs.n_pairs), len(keys)
    cells = {a: [[None] * K for _ in range(B)] for a in names}
    for b in range(B):
        for k in range(K):
            results = O.analyse_deltas(*pairs.changes(b, k), names)
            for a in names:
                cells[a][b][k] = result_row_fields(results[a], a)
    out = {}
    for a in names:
        flat = [cells[a][b][k] for b in range(B) for k in range(K)]
        out[a] = {f: np.array([c[f] for c in flat], dtype=np.int64 if f.startswith("n_used") else
                              object if f == "note" else np.float64).reshape(B, K) for f in flat[0]}
    return out


def _lee_fields(st) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """truncation_fields("lee_bounds") from the kernel's numbers, and the rows to recompute."""
    lo, hi, c_lo, c_hi = st[..., TR.BL], st[..., TR.BH], st[..., TR.CL], st[..., TR.CH]
    with np.errstate(invalid="ignore"):
        favours = np.where(lo > 0, 1.0, np.where(hi < 0, -1.0, NAN))
        excludes = np.where(np.isnan(c_lo) | np.isnan(c_hi), NAN, ((c_lo > 0) | (c_hi < 0)).astype(float))
        near = lambda x: np.abs(x) <= TR.FRAGILE * st[..., TR.SCALE]  # noqa: E731  (NaN: False)
        fragile = near(c_lo) | near(c_hi) | ((st[..., TR.WHOLE] == 0) & (near(lo) | near(hi)))
    n = st[..., TR.N_ALL].astype(np.int64)
    return {"estimate": np.full(lo.shape, NAN), "se": np.full(lo.shape, NAN), "ci_low": c_lo, "ci_high": c_hi,
            "p_value": np.full(lo.shape, NAN), "favours": favours, "n_used_treated": n, "n_used_control": n.copy(),
            "note": np.where(st[..., TR.OK] > 0, "", TR.TOO_FEW).astype(object),
            "bound_low": lo, "bound_high": hi, "bound_width": hi - lo, "ci_width": c_hi - c_lo,
            "trim_share": st[..., TR.TRIM], "trimmed_treated": st[..., TR.TRIMMED_T], "ci_excludes_0": excludes}, fragile


def _composite_fields(st) -> dict[str, np.ndarray]:
    """truncation_fields("composite_rank") from the rank-sum statistics (n1, n2, U1, variance)."""
    w = T.wilcoxon(st)
    with np.errstate(invalid="ignore"):
        favours = np.where(np.isfinite(w["estimate"]), np.sign(w["estimate"] - 0.5), NAN)
    nan = np.full(favours.shape, NAN)
    return {"estimate": nan, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": w["p_value"], "favours": favours,
            "n_used_treated": st[..., 0].astype(np.int64), "n_used_control": st[..., 1].astype(np.int64),
            "note": w["note"].astype(object)}


def records(keep, keys, spec, batched_fields, pairs, n_pairs, n_treated, smd, truths) -> pd.DataFrame:
    """The rows as pipeline.analyse builds them (one dict per row, so that columns, their order and
    dtypes are the reference's), with the sensitivity and truncation analyses computed by the
    reference's functions on each replicate's pairs and the other analyses taken from the batch.

    The fallback for what the batched per-pair fields do not cover (`covers`: they cover rosenbaum,
    evalue, tost, lee_bounds and composite_rank with 0 < alpha < 0.5 and, for the sensitivity
    analyses, every outcome's MCID finite and > 0); ~2 ms a replicate."""
    names = ("estimate", "se", "ci_low", "ci_high", "p_value", "favours", "n_used_treated", "n_used_control", "note")
    as_int = ("n_used_treated", "n_used_control")
    cells = {a: {n: (np.asarray(f[n]).astype(np.int64) if n in as_int else np.asarray(f[n])).tolist() for n in names}
             for a, f in batched_fields.items()}
    mcid = dict(spec.mcid)
    crude = [a for a in batched_fields if a.startswith("crude_")]
    records, replicate = [], []
    for i, b in enumerate(keep.tolist()):
        common = {"n_pairs": int(n_pairs[i]), "share_treated_matched": float(n_pairs[i] / max(n_treated[i], 1)),
                  "max_abs_smd": float(smd[i, 0]), "mean_abs_smd": float(smd[i, 1]), "ps_separation": False}
        for k, (outcome, t) in enumerate(keys):
            base = {"outcome": outcome, "timepoint": t, **common,
                    **{name: float(truths[i, k, j]) for j, name in enumerate(TRUTH_NAMES)}}
            for a in (*spec.analyses, *crude):
                if a in SENSITIVITY_ANALYSES:
                    fields = sensitivity_fields(a, *pairs.changes(i, k), mcid[outcome], spec.alpha)
                elif a in TRUNCATION_ANALYSES:
                    (yt, yc), (dt, dc) = pairs.changes(i, k), pairs.deaths(i, k)
                    fields = truncation_fields(a, yt, dt, yc, dc, spec.alpha)
                else:
                    fields = {n: cells[a][n][i][k] for n in names}
                records.append({**base, "analysis": a, **fields})
                replicate.append(b)
    frame = pd.DataFrame(records)
    frame.insert(0, "replicate", np.asarray(replicate, dtype=np.int64))
    return frame


STANDARD = ("estimate", "se", "ci_low", "ci_high", "p_value", "favours", "n_used_treated", "n_used_control", "note")


def tidy_rows(keep, keys, per_analysis, n_pairs, n_treated, smd, truths) -> pd.DataFrame:
    """The tidy rows, replicate by replicate, outcome x time, then analysis (pipeline.analyse's order),
    built column by column: per_analysis = [(analysis, {field: (B, K) array})], each with the
    standard fields and its own after them (an analysis' own fields are NaN in the other rows).
    Columns, their order and dtypes are those pipeline.analyse's dicts give: the union of the
    fields in order of first appearance; floats, int64 counts, str notes."""
    B, K, A = keep.size, len(keys), len(per_analysis)
    each = lambda x: np.repeat(np.asarray(x), K * A)  # noqa: E731  per replicate
    per_key = lambda x: np.tile(np.repeat(np.asarray(x, dtype=object), A), B)  # noqa: E731
    out = {
        "replicate": each(keep),
        "outcome": per_key([o for o, _ in keys]), "timepoint": per_key([t for _, t in keys]),
        "n_pairs": each(n_pairs), "share_treated_matched": each(n_pairs / np.maximum(n_treated, 1)),
        "max_abs_smd": each(smd[:, 0]), "mean_abs_smd": each(smd[:, 1]), "ps_separation": each(np.zeros(B, bool)),
    }
    for j, name in enumerate(TRUTH_NAMES):
        out[name] = np.repeat(truths[:, :, j].reshape(-1), A)
    out["analysis"] = np.tile(np.array([a for a, _ in per_analysis], dtype=object), B * K)
    fields = [*STANDARD, *dict.fromkeys(name for _, f in per_analysis for name in f if name not in STANDARD)]
    for name in fields:
        if name in ("n_used_treated", "n_used_control"):
            cast = np.int64
        elif name == "note":
            cast = object
        else:
            cast = float
        cells = [np.asarray(f[name]).astype(cast) if name in f else np.full((B, K), np.nan) for _, f in per_analysis]
        out[name] = np.stack(cells, axis=-1).reshape(-1)
    return pd.DataFrame(out)

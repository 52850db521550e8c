"""The rows of a chunk's batched analysis (sim.methods.batched), built as pipeline.analyse builds
them: the tidy frame from the batched arrays, or one record per row when the sensitivity and
truncation analyses run, with the reference's own functions, on each replicate's pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.methods.pipeline import TRUTH_NAMES
from sim.methods.sensitivity import SENSITIVITY_ANALYSES, sensitivity_fields
from sim.methods.sensitivity.truncation import TRUNCATION_ANALYSES, truncation_fields


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


def records(keep, keys, spec, batched_fields, pairs, n_pairs, n_treated, smd, truths) -> pd.DataFrame:
    """The rows as pipeline.analyse builds them (one dict per row, so that columns, their order and
    dtypes are the reference's), with the sensitivity and truncation analyses computed by the
    reference's functions on each replicate's pairs and the other analyses taken from the batch."""
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


def tidy_rows(keep, keys, per_analysis, n_pairs, n_treated, smd, truths) -> pd.DataFrame:
    """The tidy rows, replicate by replicate, outcome x time, then analysis (pipeline.analyse's order)."""
    B, K, A = keep.size, len(keys), len(per_analysis)
    each = lambda x: np.repeat(np.asarray(x), K * A)  # noqa: E731  per replicate
    per_key = lambda x: np.tile(np.repeat(np.asarray(x, dtype=object), A), B)  # noqa: E731
    cell = lambda name: np.stack([f[name] for _, f in per_analysis], axis=-1).reshape(-1)  # noqa: E731
    out = {
        "replicate": each(keep),
        "outcome": per_key([o for o, _ in keys]), "timepoint": per_key([t for _, t in keys]),
        "n_pairs": each(n_pairs), "share_treated_matched": each(n_pairs / np.maximum(n_treated, 1)),
        "max_abs_smd": each(smd[:, 0]), "mean_abs_smd": each(smd[:, 1]), "ps_separation": each(np.zeros(B, bool)),
    }
    for j, name in enumerate(TRUTH_NAMES):
        out[name] = np.repeat(truths[:, :, j].reshape(-1), A)
    out["analysis"] = np.tile(np.array([a for a, _ in per_analysis], dtype=object), B * K)
    for name in ("estimate", "se", "ci_low", "ci_high", "p_value", "favours"):
        out[name] = cell(name).astype(float)
    for name in ("n_used_treated", "n_used_control"):
        out[name] = cell(name).astype(np.int64)
    out["note"] = cell("note").astype(object)
    return pd.DataFrame(out)

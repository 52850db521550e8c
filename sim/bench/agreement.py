"""`python -m sim.bench` counts speed only with the same answers: the batched rows against the
per-replicate rows on the replicates both paths ran, and the naive baseline's pair counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.engine import ChunkOutput


@dataclass
class Agreement:
    """The batched rows against the per-replicate rows on replicates 0..reps-1 (and the naive
    baseline's pair counts on the replicates it ran)."""

    reps: int
    same_failures: bool
    same_pairs: int  #: replicates with the same n_pairs (a failure on both sides counts as the same)
    same_layout: bool  #: same columns, dtypes and non-float values, NaN at the same places
    max_diff: dict[str, float]  #: max |batched - per-replicate| of estimate, p_value, any float column
    naive_reps: int
    naive_same_pairs: int


def _stack(outputs: list[tuple[int, ChunkOutput]], reps: int) -> tuple[pd.DataFrame, set[int]]:
    """Rows (replicate = absolute replicate number) and failed replicates below `reps`."""
    frames, failed = [], set()
    for first, out in outputs:
        if len(out.rows):
            frames.append(out.rows.assign(replicate=out.rows["replicate"] + first))
        failed |= {first + b for b in out.failures}
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"replicate": []})
    rows = rows[rows["replicate"] < reps].reset_index(drop=True)
    return rows, {r for r in failed if r < reps}


def _pairs(rows: pd.DataFrame, failed: set[int], reps: int) -> np.ndarray:
    """n_pairs of replicates 0..reps-1 (0 for a failed one)."""
    out = np.zeros(reps, dtype=np.int64)
    if "n_pairs" not in rows:  # every replicate failed
        return out
    first = rows.groupby("replicate", sort=True)["n_pairs"].first()
    out[first.index.to_numpy(dtype=np.int64)] = first.to_numpy()
    out[list(failed)] = 0
    return out


def agreement(ref: list[tuple[int, ChunkOutput]], fast: list[tuple[int, ChunkOutput]], reps: int,
              naive: dict[int, int | None]) -> Agreement:
    a, a_failed = _stack(fast, reps)
    b, b_failed = _stack(ref, reps)
    pairs_a, pairs_b = _pairs(a, a_failed, reps), _pairs(b, b_failed, reps)
    layout = list(a.columns) == list(b.columns) and len(a) == len(b)
    diff = {"estimate": math.nan, "p_value": math.nan, "any": math.nan}
    if layout:
        worst = 0.0
        for col in b.columns:
            x, y = a[col].to_numpy(), b[col].to_numpy()
            if a[col].dtype != b[col].dtype:
                layout = False
            elif b[col].dtype.kind == "f":
                nan = np.isnan(y)
                layout &= bool(np.array_equal(np.isnan(x), nan))
                d = float(np.max(np.abs(x[~nan] - y[~nan]), initial=0.0))
                worst = max(worst, d)
                if col in diff:
                    diff[col] = d
            else:
                layout &= bool((x == y).all())
        diff["any"] = worst
    naive_reps = [r for r in naive if r < reps]
    return Agreement(reps=reps, same_failures=a_failed == b_failed, same_pairs=int((pairs_a == pairs_b).sum()),
                     same_layout=layout, max_diff=diff, naive_reps=len(naive_reps),
                     naive_same_pairs=sum(int(naive[r] == pairs_b[r]) for r in naive_reps))


def per_pair_agreement(a: pd.DataFrame, b: pd.DataFrame, analyses) -> tuple[bool, float]:
    """The batched rows `a` against the per-replicate rows `b` of the same replicates: (same columns,
    dtypes, non-float values and NaN places; max |a - b| over the rows of `analyses` and their own
    float fields, the columns after `analysis`, equal infinities counting 0)."""
    same = list(a.columns) == list(b.columns) and len(a) == len(b)
    if not same:
        return False, math.nan
    rows = b["analysis"].isin(list(analyses)).to_numpy()
    fields = set(list(b.columns)[list(b.columns).index("analysis") + 1:])
    worst = 0.0
    for col in b.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if a[col].dtype != b[col].dtype:
            return False, math.nan
        if b[col].dtype.kind != "f":
            same &= bool((x == y).all())
            continue
        nan = np.isnan(y)
        same &= bool(np.array_equal(np.isnan(x), nan))
        if col in fields:
            ok = rows & ~nan & (x != y)
            worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]), initial=0.0)))
    return same, worst

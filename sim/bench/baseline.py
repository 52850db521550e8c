"""The naive yardstick of `python -m sim.bench`: the paper's analysis as a plain implementation
would write it (statsmodels Logit, an O(n_t * n_c) Python greedy loop, the same outcome tests, no
balance step), on the same cohorts as the per-replicate path. A lower bound on its time, never
part of the product."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from sim.cohort.generate import Design, generate
from sim.methods import outcomes as O
from sim.methods.pipeline import MethodSpec, _matrix


def baseline_ps(X: np.ndarray, treated: np.ndarray) -> np.ndarray:
    import statsmodels.api as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.Logit(treated.astype(float), sm.add_constant(X, has_constant="add")).fit(disp=0)
    return np.asarray(res.predict(), dtype=float)


def baseline_greedy(ps: np.ndarray, treated: np.ndarray, caliper: float | None) -> list[tuple[int, int]]:
    """Plain greedy 1:1 nearest neighbour on the logit PS, caliper x pooled SD (ddof=1), without
    replacement; treated in descending PS order; ties go to the lower control index."""
    ps = np.clip(ps, 1e-10, 1 - 1e-10)
    lp = np.log(ps / (1 - ps))
    t = treated.astype(bool)
    width = math.inf
    if caliper is not None:
        width = caliper * math.sqrt((np.var(lp[t], ddof=1) + np.var(lp[~t], ddof=1)) / 2)
    t_idx = [int(i) for i in np.flatnonzero(t)]
    t_idx.sort(key=lambda i: (-ps[i], i))
    controls = [int(j) for j in np.flatnonzero(~t)]
    score = lp.tolist()
    used = [False] * len(score)
    pairs = []
    for i in t_idx:
        x = score[i]
        best, best_d = -1, math.inf
        for j in controls:
            if used[j]:
                continue
            d = abs(score[j] - x)
            if d < best_d:
                best, best_d = j, d
        if best >= 0 and best_d <= width:
            used[best] = True
            pairs.append((i, best))
    return pairs


def baseline_replicate(plan: tuple[Design, MethodSpec], rng: np.random.Generator) -> pd.DataFrame:
    """Same cohort as psm_replicate with this rng; statsmodels PS + plain greedy; same tests."""
    design, spec = plan
    cohort = generate(design, rng)
    cols = cohort.columns
    treated = np.asarray(cols["treated"]).astype(bool)
    ps = baseline_ps(_matrix(cols, spec.ps_covariates), treated)
    pairs = baseline_greedy(ps, treated, spec.caliper)
    ti = np.array([p[0] for p in pairs], dtype=np.int64)
    ci = np.array([p[1] for p in pairs], dtype=np.int64)
    rows = []
    for name in spec.outcomes:
        for tp in spec.times:
            d0, d1 = cohort.potential_deltas[(name, tp)]
            observed = np.where(treated, d1, d0)
            for a, r in O.analyse_deltas(observed[ti], observed[ci], spec.analyses).items():
                rows.append({"outcome": name, "timepoint": tp, "analysis": a, "n_pairs": len(pairs),
                             "estimate": r.estimate, "p_value": r.p_value})
    return pd.DataFrame(rows)

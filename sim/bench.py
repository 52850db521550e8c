"""`python -m sim.bench [--reps N] [--seconds S]`: throughput of the caliper-sweep pipeline.

Measures replicates per second of `sim.jobs.psm.psm_replicate` on the caliper_sweep base condition
(the paper's analysis: generate a cohort, PS fit, greedy 1:1 matching on the logit PS with caliper
0.2 x pooled SD, balance, outcome tests) at N = 263 and N = 5,000, beside a plain per-replicate
baseline run on the *same* generated cohorts: the PS fitted with statsmodels Logit, matched with a
plain Python greedy nearest-neighbour loop (O(n_t * n_c): each treated unit, in descending PS order,
scans every control for the nearest unused one within the caliper), then the same outcome tests.
The baseline skips the balance step, so its time is a lower bound and the ratio is conservative.
Then the engine's throughput for the pipeline at N = 263 (sim.engine.run_chunks into a temp
dir), single process and n_jobs=2, including chunk writing and result collection.

Last, the matcher alone at scale, on true propensity scores of Austin's (2011) design (10 N(0, 1)
confounders, his odds ratios, 25 % treated; no PS fit): greedy 1:1 nearest-neighbour caliper
matching (the paper's: logit PS, caliper 0.2 x pooled SD, largest PS first, without replacement) of
1,000,000 rows, and optimal 1:1 matching with the same caliper of 10,000 rows; beside each, match()
with the reference cores it replaced (the plain-Python greedy loop, the dense linear_sum_assignment),
and the one-off cost of numba's compilation of the greedy cores.

Designs come from the Hydra config (conf/, experiment=caliper_sweep) through sim.jobs.conditions and
sim.jobs.psm, so no setting is duplicated here (the matching sections' data: AUSTIN_OR). Timing:
time.perf_counter after a warm-up, over a fixed number of reps (--reps) or for a fixed time per
measurement (--seconds, default 8; the whole bench then takes about 2 minutes, plus the one-off
calibration on a new machine). The matching sections take the median of MATCH_RUNS calls after a
warm-up call, so numba's compilation (or its loading from numba's on-disk cache) is left out; it is
timed on its own, in fresh processes. The baseline and the reference cores are yardsticks, not
part of the product.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from sim.cohort.generate import Design, generate
from sim.engine import replicate_rng, run_chunks
from sim.jobs.conditions import Condition, conditions
from sim.jobs.psm import PsmJob, psm_replicate
from sim.methods import outcomes as O
from sim.methods.pipeline import MethodSpec, _matrix

SIZES = (263, 5000)
SEED = 20250729  # bench seed (any value; results are not reported, only timings)


# ----------------------------------------------------------------------------- config -> plans

def compose(overrides: list[str]):
    """The composed config, as `python -m sim experiment=caliper_sweep ...` would see it."""
    from sim.api import compose as api_compose

    return api_compose("caliper_sweep", overrides)


def base_condition(cfg) -> Condition:
    """The caliper_sweep grid point equal to the base config (the paper's caliper, the null)."""
    conds = conditions(cfg)
    base = {key: _select(cfg, key) for key in conds[0].factors}
    for c in conds:
        if all(_same(c.factors[k], v) for k, v in base.items()):
            return c
    raise SystemExit(f"error: no caliper_sweep grid point equals the base config {base}")


def _select(cfg, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return float(a) == float(b)


def plan(n: int) -> tuple[dict, tuple[Design, MethodSpec]]:
    """(factors, plan) of the base condition with cohort.n = n."""
    cfg = compose([f"cohort.n={n}"])
    cond = base_condition(cfg)
    return cond.factors, PsmJob(cfg).plan(cond)


# ----------------------------------------------------------------------------- the baseline

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


# ----------------------------------------------------------------------------- timing

def rate(fn: Callable[[int], Any], reps: int | None, seconds: float, warmup: int = 1) -> tuple[float, int]:
    """(reps per second, reps timed): fn(r) for r = 0.. after `warmup` untimed calls."""
    for r in range(warmup):
        fn(10_000_000 + r)
    done = 0
    start = time.perf_counter()
    while True:
        fn(done)
        done += 1
        elapsed = time.perf_counter() - start
        if (reps is not None and done >= reps) or (reps is None and elapsed >= seconds):
            return done / elapsed, done


def engine_rate(plan, factors: Mapping[str, Any], reps: int, n_jobs: int) -> float:
    """Replicates per second of the engine running the psm job (fresh temp dir: nothing resumed)."""
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        start = time.perf_counter()
        run_chunks(PsmJob.simulate, [plan], [dict(factors)], reps=reps, seed=SEED, out_dir=Path(tmp),
                   n_jobs=n_jobs, chunk_size=None, progress=False)
        return reps / (time.perf_counter() - start)


def agreement(plan, reps: int) -> tuple[int, int]:
    """On `reps` cohorts: how often the baseline finds as many pairs as the pipeline (a check that
    both do the same work; PS fits differ in the last digits, so near-ties can rarely differ)."""
    same = 0
    for r in range(reps):
        a = psm_replicate(plan, replicate_rng(SEED, 1, r))
        b = baseline_replicate(plan, replicate_rng(SEED, 1, r))
        same += int(a["n_pairs"].iloc[0] == b["n_pairs"].iloc[0])
    return same, reps


# ----------------------------------------------------------------------------- matching at scale

GREEDY_N, OPTIMAL_N = 1_000_000, 10_000
MATCH_RUNS = 5  #: timed calls per matching measurement (median), after one warm-up call
REFERENCE_RUNS = {"greedy": 3, "optimal": 1}  #: the reference cores are slow: fewer calls


#: the matching sections' data: 10 independent N(0, 1) confounders with the treatment odds ratios
#: of Austin (Pharm Stat 2011), the design of experiment=austin2011, 25 % treated
AUSTIN_OR = (1.1, 1.1, 1.1, 1.25, 1.25, 1.25, 1.5, 1.5, 1.5, 2.0)
AUSTIN_SHARE = 0.25


def austin_scores(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(true PS, treated) of n units: logit PS = a + sum log(OR_k) x_k, a solved on the sample so that
    the mean PS is AUSTIN_SHARE. The true PS, not a fitted one: only the matcher is timed."""
    from scipy.optimize import brentq
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    lp = rng.standard_normal((n, len(AUSTIN_OR))) @ np.log(AUSTIN_OR)
    a = brentq(lambda a: float(expit(a + lp).mean()) - AUSTIN_SHARE, -20.0, 20.0)
    ps = expit(a + lp)
    return ps, (rng.random(n) < ps).astype(np.int8)


class reference_cores:
    """Context: sim.methods.matching.match runs the cores the fast ones replaced (kept as references)."""

    def __enter__(self):
        import sim.methods.matching as MM
        import sim.methods.matching_cores as MC

        self.saved = MM._greedy_ordered, MM._greedy_closest, MM._optimal
        MM._greedy_ordered, MM._greedy_closest, MM._optimal = (MC._greedy_ordered_py, MC._greedy_closest_py,
                                                               MC._optimal_dense)
        return self

    def __exit__(self, *exc):
        import sim.methods.matching as MM

        MM._greedy_ordered, MM._greedy_closest, MM._optimal = self.saved


def median_seconds(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """(median wall time of `runs` calls, last result)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


JIT_PROBE = """
import time
import numpy as np
import sim.methods.matching_cores as MC
from sim.methods.matching import match
MC.COMPILED_MIN_UNITS = 0  # the compiled kernels even for this tiny input
t0 = time.perf_counter()
for order in ("largest", "closest"):
    match(np.array([0.2, 0.3, 0.4]), np.array([1, 0, 0]), order=order)
print(time.perf_counter() - t0)
"""


def jit_seconds(cold: bool) -> float:
    """First greedy matches (ordered and closest) in a fresh process: numba's import plus the
    compilation of the kernels (cold: an empty numba cache) or their loading from the cache."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="sim-bench-numba-") as tmp:
        env = dict(os.environ)
        if cold:
            env["NUMBA_CACHE_DIR"] = tmp
        out = subprocess.run([sys.executable, "-c", JIT_PROBE], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def matching_rows() -> list[tuple]:
    """(name, rows, fast s, reference s, agreement) for the two matching-at-scale sections."""
    from sim.methods.matching import match

    rows = []
    for name, n, kw in (("greedy 1:1 caliper matching", GREEDY_N, dict()),
                        ("optimal 1:1 with caliper", OPTIMAL_N, dict(algorithm="optimal"))):
        ps, z = austin_scores(n)
        d = np.log(ps) - np.log1p(-ps)
        match(ps, z, **kw)  # warm-up: numba compile / cache load, scipy import
        fast, res = median_seconds(lambda: match(ps, z, **kw), MATCH_RUNS)
        with reference_cores():
            ref, ref_res = median_seconds(lambda: match(ps, z, **kw), REFERENCE_RUNS[kw.get("algorithm", "greedy")])
        if "algorithm" not in kw:
            same = "identical" if (np.array_equal(res.treated_idx, ref_res.treated_idx)
                                   and np.array_equal(res.control_idx, ref_res.control_idx)) else "DIFFERENT"
        else:
            tot, ref_tot = (float(np.abs(d[r.treated_idx] - d[r.control_idx]).sum()) for r in (res, ref_res))
            same = ("same total" if res.n_pairs == ref_res.n_pairs and math.isclose(tot, ref_tot, rel_tol=1e-9)
                    else "DIFFERENT")
        rows.append((name, n, int(z.sum()), res.n_pairs, fast, ref, same))
        print(f"  {name}, N={n}: {fast:.3f} s (reference cores {ref:.2f} s), {same}", file=sys.stderr, flush=True)
    return rows


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="time a fixed number of reps per measurement")
    ap.add_argument("--seconds", type=float, default=8.0,
                    help="time each measurement for this long (ignored with --reps; default 8)")
    args = ap.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        print(f"error: --reps: must be a whole number >= 1, got {args.reps}", file=sys.stderr)
        return 2
    if not args.seconds > 0:
        print(f"error: --seconds: must be > 0, got {args.seconds}", file=sys.stderr)
        return 2
    how = f"{args.reps} reps" if args.reps is not None else f"{args.seconds:g} s"
    print(f"sim.bench: caliper_sweep base condition, {how} per measurement after a warm-up", flush=True)

    t0 = time.perf_counter()
    load0 = _load()
    rows = []
    plan_263 = None
    for n in SIZES:
        factors, p = plan(n)
        if n == SIZES[0]:
            plan_263 = (factors, p)
        p_rate, p_n = rate(lambda r: psm_replicate(p, replicate_rng(SEED, 0, r)), args.reps, args.seconds)
        b_rate, b_n = rate(lambda r: baseline_replicate(p, replicate_rng(SEED, 0, r)), args.reps, args.seconds)
        same, checked = agreement(p, 3)
        rows.append((n, p_rate, p_n, b_rate, b_n, same, checked))
        print(f"  N={n}: pipeline {p_rate:.1f} reps/s ({p_n} reps), baseline {b_rate:.2f} reps/s ({b_n} reps)",
              file=sys.stderr, flush=True)

    factors, p = plan_263
    p263 = rows[0][1]
    e_reps = args.reps if args.reps is not None else max(20, int(p263 * args.seconds))
    warm = max(4, e_reps // 20)
    engine = {}
    for n_jobs in (1, 2):
        engine_rate(p, factors, warm, n_jobs)  # warm-up (for n_jobs=2: starts the worker pool)
        engine[n_jobs] = engine_rate(p, factors, e_reps, n_jobs)

    match_rows = matching_rows()
    jit_cold, jit_warm = jit_seconds(cold=True), jit_seconds(cold=False)

    print()
    print("per-replicate throughput (generate + analyse), single process")
    print(f"{'N':>6}  {'pipeline reps/s':>15}  {'baseline reps/s':>15}  {'ratio':>7}  {'same pairs':>10}")
    for n, p, _, b, _, same, checked in rows:
        print(f"{n:>6}  {p:>15.1f}  {b:>15.2f}  {p / b:>6.1f}x  {same:>6}/{checked}")
    print()
    print(f"engine (sim.engine.run_chunks), pipeline at N={SIZES[0]}, {e_reps} reps into a temp dir")
    print(f"{'n_jobs':>6}  {'reps/s':>8}  {'speed-up':>8}")
    for n_jobs, r in engine.items():
        print(f"{n_jobs:>6}  {r:>8.1f}  {r / engine[1]:>7.2f}x")
    print()
    print(f"matching at scale (Austin's design, true PS, caliper 0.2 x pooled SD of the logit PS), "
          f"median of {MATCH_RUNS} calls after a warm-up")
    print(f"{'':<28}  {'N':>9}  {'treated':>7}  {'links':>7}  {'seconds':>8}  {'reference s':>11}  {'ratio':>7}"
          "  result")
    for name, n, n_t, links, fast, ref, same in match_rows:
        print(f"{name:<28}  {n:>9}  {n_t:>7}  {links:>7}  {fast:>8.3f}  {ref:>11.2f}  {ref / fast:>6.1f}x  {same}")
    print(f"numba (greedy cores), first calls in a fresh process incl. importing numba: {jit_cold:.2f} s with an "
          f"empty cache (compilation), {jit_warm:.2f} s from numba's cache")
    print("reference = match() with the cores these replaced (plain-Python greedy loop; dense "
          "linear_sum_assignment), median of "
          + ", ".join(f"{k} {v}" for k, v in REFERENCE_RUNS.items()) + " call(s)")
    print()
    print(f"baseline = statsmodels Logit + plain O(n_t*n_c) Python greedy loop + the same outcome tests "
          f"(no balance step); bench took {time.perf_counter() - t0:.0f} s")
    print(f"load average (1 min) at start {load0:.2f}, at end {_load():.2f} on {os.cpu_count()} CPUs "
          "(other processes distort the numbers, the n_jobs=2 speed-up most)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

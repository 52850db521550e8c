"""The matching-at-scale sections of `python -m sim.bench`: the matcher alone on Austin's (2011)
design at 10^6 (greedy) and 10^4 (optimal) rows, beside the reference cores it replaced, and the
one-off cost of numba's compilation measured in fresh processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

SEED = 20250729  #: the data's seed (any value: only timings and agreement are reported)

GREEDY_N, OPTIMAL_N = 1_000_000, 10_000
QUICK_GREEDY_N, QUICK_OPTIMAL_N = 20_000, 2_000  #: --quick
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
        import sim.methods.matching.cores as MC
        from sim.methods.matching.optimal import _optimal_dense

        self.saved = MM._greedy_ordered, MM._greedy_closest, MM._optimal
        MM._greedy_ordered, MM._greedy_closest, MM._optimal = (MC._greedy_ordered_py, MC._greedy_closest_py,
                                                               _optimal_dense)
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
import sim.methods.matching.compiled as MC
from sim.methods.matching import match
MC.COMPILED_MIN_UNITS = 0  # the compiled kernels even for this tiny input
t0 = time.perf_counter()
for order in ("largest", "closest"):
    match(np.array([0.2, 0.3, 0.4]), np.array([1, 0, 0]), order=order)
print(time.perf_counter() - t0)
"""


def jit_seconds(cold: bool, probe: str = JIT_PROBE) -> float:
    """A probe's one-off cost in a fresh process (by default the first greedy matches, ordered and
    closest: numba's import plus the compilation of the kernels (cold: an empty numba cache) or
    their loading from the cache)."""

    with tempfile.TemporaryDirectory(prefix="sim-bench-numba-") as tmp:
        env = dict(os.environ)
        if cold:
            env["NUMBA_CACHE_DIR"] = tmp
        out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def matching_rows(greedy_n: int = GREEDY_N, optimal_n: int = OPTIMAL_N) -> list[tuple]:
    """(name, rows, treated, links, fast s, reference s, agreement) for the two matching sections."""
    from sim.methods.matching import match

    rows = []
    for name, n, kw in (("greedy 1:1 caliper matching", greedy_n, dict()),
                        ("optimal 1:1 with caliper", optimal_n, dict(algorithm="optimal"))):
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

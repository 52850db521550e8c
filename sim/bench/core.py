"""`python -m sim.bench [--reps N | --seconds S] [--cold] [--quick]`: what a study costs, and why.

A Monte Carlo study is many replicates of one small analysis, so its cost is replicates per second.
The bench answers the questions that decide how a study is run:

* Does batching pay? The per-replicate path (psm_replicate through per_replicate: one cohort, one
  analysis, one DataFrame) against the batched path the engine runs (psm_chunk: a chunk's B cohorts
  generated in one pass, PS fits, matching and tests in compiled loops), on the same replicate
  seeds, at the paper's N = 263 and at N = 5,000; beside them a naive yardstick (statsmodels Logit,
  a plain O(n_t * n_c) Python greedy loop, the same outcome tests, no balance step: a lower bound on
  its time). Speed counts only with the same answers, so the replicates both paths ran are compared.
* Does a second process pay? The engine (run_chunks, chunks written to disk) at n_jobs 1 and 2.
* Does memory grow with reps? The peak RSS of a fresh process running the engine for 1,000 and
  10,000 replicates (n_jobs=1: driver and worker in one process) as experiments run it: the rows
  left in the chunk files (keep_rows=False), read back a condition at a time by whoever needs them.
* What does a user wait for? The main job's wall time, caches warm and (--cold) empty, as after
  an install.
* Does the matcher scale? Greedy matching of 1,000,000 rows and optimal matching of 10,000 (Austin's
  2011 design, true PS) beside the reference cores they replaced, and numba's one-off compilation.

Designs come from the Hydra config (experiment=caliper_sweep, its base condition: the paper's
caliper, the null); only the matching sections' data (AUSTIN_OR) is defined here. Every rate is
timed (time.perf_counter) after an untimed warm-up call, so numba's compilation or cache loading is
left out (it is timed on its own, in fresh processes); over --reps replicates per measurement (the
batched path: whole chunks) or --seconds each (default 8: about 3-4 minutes on 2 CPUs; --cold adds
up to 2, the most when it calibrates). --quick is a smoke test: tiny measurements, small matching
inputs, no subprocess sections. The naive baseline and the reference cores are yardsticks, not part
of the product.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from sim.cohort.generate import Design
from sim.engine import ChunkOutput, default_chunk_size, per_replicate, replicate_rng, run_chunks
from sim.engine.blas import one_blas_thread
from sim.jobs.conditions import Condition, conditions
from sim.jobs.psm import PsmJob, psm_chunk, psm_replicate
from sim.methods.pipeline import MethodSpec
from sim.bench.agreement import Agreement, agreement, per_pair_agreement
from sim.bench.baseline import baseline_replicate
from sim.bench.matching import (GREEDY_N, MATCH_RUNS, OPTIMAL_N, QUICK_GREEDY_N, QUICK_OPTIMAL_N,  # noqa: F401
                                REFERENCE_RUNS, jit_seconds, matching_rows)
from sim.bench.process import (BATCHED_JIT_PROBE, COMMAND_N, MEMORY_N, command_rows, main_job, main_job_size,
                               memory_rows)

SIZES = (263, 5000)
CHUNK = {263: 250, 5000: 50}  #: replicates per batched chunk (250: the engine's largest default chunk)
QUICK_CHUNK = {263: 25, 5000: 5}
SEED = 20250729  # bench seed (any value; results are not reported, only timings and agreement)
STREAM = 0  # the replicates' stream: replicate r of a measurement is replicate_rng(SEED, STREAM, r)
WARMUP_FIRST = 10_000_000  # warm-up calls draw replicates from here on, never timed ones
ENGINE_MIN_REPS = 1000
#: 6.: a condition of each experiment with per-pair analyses (U: odds ratio 5, -1 SD; HR 0.7 on death,
#: attrition doubled), the chunk size and its share of --seconds
PER_PAIR = (("unmeasured_confounding", 39), ("truncation_by_death", 5))
PER_PAIR_CHUNK, QUICK_PER_PAIR_CHUNK = 50, 10


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


def rngs(first: int, count: int) -> list[np.random.Generator]:
    return [replicate_rng(SEED, STREAM, r) for r in range(first, first + count)]


# ----------------------------------------------------------------------------- timing

def rate(fn: Callable[[int], Any], reps: int | None, seconds: float, step: int = 1) -> tuple[float, int, float]:
    """(reps per second, reps timed, seconds of the warm-up call): fn(first) computes the `step`
    replicates first..first+step-1; one untimed warm-up call on replicates WARMUP_FIRST.., then
    calls on 0.., step.., ... until `reps` replicates (whole calls) or `seconds` have passed."""
    start = time.perf_counter()
    fn(WARMUP_FIRST)
    warm = time.perf_counter() - start
    done = 0
    start = time.perf_counter()
    while True:
        fn(done)
        done += step
        elapsed = time.perf_counter() - start
        if (reps is not None and done >= reps) or (reps is None and elapsed >= seconds):
            return done / elapsed, done, warm


@dataclass
class PathRow:
    n: int
    chunk: int
    per_rep: float
    per_rep_n: int
    batched: float
    batched_n: int
    warm: float  #: seconds of the batched warm-up chunk (numba import, cache load or compilation)
    naive: float
    naive_n: int
    agree: Agreement


def paths(n: int, chunk: int, reps: int | None, seconds: float) -> tuple[PathRow, dict, tuple]:
    """The per-replicate path, the batched path and the naive baseline at cohort size n, each timed
    on replicates 0.. of the same stream, and their agreement on the replicates both paths ran."""
    factors, p = plan(n)
    one = per_replicate(psm_replicate)
    ref: list[tuple[int, ChunkOutput]] = []
    fast: list[tuple[int, ChunkOutput]] = []
    naive: dict[int, int | None] = {}

    def per_rep(r: int) -> None:
        out = one(p, rngs(r, 1))
        if r < WARMUP_FIRST:
            ref.append((r, out))

    def batched(first: int) -> None:
        out = psm_chunk(p, rngs(first, chunk))
        if first < WARMUP_FIRST and first < len(ref):
            fast.append((first, out))

    def baseline(r: int) -> None:
        try:
            out = baseline_replicate(p, rngs(r, 1)[0])
            naive[r] = int(out["n_pairs"].iloc[0])
        except Exception:  # noqa: BLE001 - a replicate the naive baseline cannot analyse
            naive[r] = None

    p_rate, p_n, _ = rate(per_rep, reps, seconds)
    b_rate, b_n, warm = rate(batched, reps, seconds, step=chunk)
    naive_rate, naive_n, _ = rate(baseline, reps, seconds)
    naive.pop(WARMUP_FIRST, None)
    agree = agreement(ref, fast, min(p_n, b_n), naive)
    print(f"  N={n}: per-replicate {p_rate:.1f} reps/s ({p_n}), batched {b_rate:.1f} reps/s ({b_n}, B={chunk}), "
          f"naive {naive_rate:.2f} reps/s ({naive_n})", file=sys.stderr, flush=True)
    return PathRow(n, chunk, p_rate, p_n, b_rate, b_n, warm, naive_rate, naive_n, agree), factors, p


def engine_rate(plan, factors: Mapping[str, Any], reps: int, n_jobs: int) -> float:
    """Replicates per second of the engine running the psm job as experiments run it (fresh temp
    dir: nothing resumed; the rows left in the chunk files)."""
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        start = time.perf_counter()
        run_chunks(PsmJob.simulate, [plan], [dict(factors)], reps=reps, seed=SEED, out_dir=Path(tmp),
                   n_jobs=n_jobs, chunk_size=None, progress=False, keep_rows=False)
        return reps / (time.perf_counter() - start)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def _e(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1e}"


def _x(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.1f}x"


def _table(header: list[str], rows: list[list[str]]) -> None:
    """Right-aligned columns, two spaces apart."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    for line in (header, *rows):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(line, widths)).rstrip())


def print_paths(rows: list[PathRow]) -> None:
    print("1. per-replicate vs batched path (generate + analyse), single process, on replicates 0.. of one "
          "seed stream")
    _table(["N", "B", "per-replicate", "(reps)", "batched", "(reps)", "batched/per-rep", "naive", "(reps)",
            "batched/naive"],
           [[str(r.n), str(r.chunk), f"{r.per_rep:.1f} reps/s", f"({r.per_rep_n})", f"{r.batched:.1f} reps/s",
             f"({r.batched_n})", _x(r.batched / r.per_rep), f"{r.naive:.2f} reps/s", f"({r.naive_n})",
             _x(r.batched / r.naive)] for r in rows])
    print(f"  B = replicates per batched chunk, timed over whole chunks; the first chunk in this process "
          f"(numba import, cache load) took {rows[0].warm:.2f} s, untimed")
    print("  agreement on the replicates both paths ran: batched rows vs per-replicate rows; the naive "
          "baseline's pair counts vs the per-replicate ones (its statsmodels PS differs in the last digits, so a "
          "near-tie can change a pair)")
    _table(["N", "reps", "same failures", "same n_pairs", "same other values", "max |diff| estimate", "p-value",
            "any float", "naive same n_pairs"],
           [[str(r.n), str(r.agree.reps), "yes" if r.agree.same_failures else "NO",
             f"{r.agree.same_pairs}/{r.agree.reps}", "yes" if r.agree.same_layout else "NO",
             _e(r.agree.max_diff["estimate"]), _e(r.agree.max_diff["p_value"]), _e(r.agree.max_diff["any"]),
             f"{r.agree.naive_same_pairs}/{r.agree.naive_reps}"] for r in rows])


def per_pair_rows(chunk: int, reps: int | None, seconds: float) -> list[list[str]]:
    """6.: per condition of PER_PAIR, reps/s of a chunk's analysis (its cohorts generated once) with the
    per-pair analyses by the reference's functions (rows.records) and batched, of the whole chunk
    (psm_chunk) and of psm_replicate, and the batched rows against psm_replicate's."""
    from sim.api import compose as compose_experiment
    from sim.cohort.generate import generate_batch
    from sim.methods import batched  # numba: as the workers import it
    from sim.methods.batched.rows import PER_PAIR as PER_PAIR_ANALYSES

    out = []
    for name, index in PER_PAIR:
        cfg = compose_experiment(name, [])
        design, spec = p = PsmJob(cfg).plan(conditions(cfg)[index])
        B, n = chunk, design.n
        cohort = generate_batch(design, rngs(0, B), only=(*spec.ps_columns, *spec.balance_covariates, *spec.exact))
        args = ({k: v.reshape(B, n) for k, v in cohort.columns.items()},
                {k: (v0.reshape(B, n), v1.reshape(B, n)) for k, (v0, v1) in cohort.potential_deltas.items()},
                {t: (s0.reshape(B, n), s1.reshape(B, n)) for t, (s0, s1) in cohort.seen.items()}, spec)
        ref, *_ = rate(lambda _: batched.analyse_batch(*args, reference_per_pair=True), reps, seconds, step=B)
        fast, *_ = rate(lambda _: batched.analyse_batch(*args), reps, seconds, step=B)
        whole, *_ = rate(lambda first: psm_chunk(p, rngs(first, B)), reps, seconds, step=B)
        start = time.perf_counter()
        slow = per_replicate(psm_replicate)(p, rngs(0, B))
        one = B / (time.perf_counter() - start)
        rows = psm_chunk(p, rngs(0, B))
        same, diff = per_pair_agreement(rows.rows, slow.rows, PER_PAIR_ANALYSES)
        analyses = ",".join(a for a in spec.analyses if a in PER_PAIR_ANALYSES)
        out.append([name, str(index), analyses, f"{ref:.0f}", f"{fast:.0f}", _x(fast / ref), f"{whole:.0f}", f"{one:.0f}",
                    "yes" if same and rows.failures == slow.failures else "NO", _e(diff)])
        print(f"  {name}: analysis {ref:.0f} -> {fast:.0f} reps/s, chunk {whole:.0f} reps/s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="time a fixed number of reps per measurement")
    ap.add_argument("--seconds", type=float, default=None,
                    help="time each measurement for this long (ignored with --reps; default 8, --quick 0.25)")
    ap.add_argument("--cold", action="store_true",
                    help="also time the main job from empty calibration and numba caches (about 1.5 min more)")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke test: tiny measurements, small matching inputs, no subprocess sections")
    args = ap.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        print(f"error: --reps: must be a whole number >= 1, got {args.reps}", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else (0.25 if args.quick else 8.0)
    if not seconds > 0:
        print(f"error: --seconds: must be > 0, got {seconds}", file=sys.stderr)
        return 2
    if args.quick and args.cold:
        print("error: --cold: the main job is not run with --quick", file=sys.stderr)
        return 2
    one_blas_thread()  # as in every process the engine computes chunks in (sim.engine.blas)
    chunks = QUICK_CHUNK if args.quick else CHUNK
    how = f"{args.reps} reps" if args.reps is not None else f"{seconds:g} s"
    t0 = time.perf_counter()
    load0 = _load()
    print(f"sim.bench{' --quick' if args.quick else ''}: caliper_sweep base condition (the paper's analysis, "
          f"the null), {how} per measurement after a warm-up; {os.cpu_count()} CPUs", flush=True)

    rows, plan_263 = [], None
    for n in SIZES:
        row, factors, p = paths(n, chunks[n], args.reps, seconds)
        rows.append(row)
        if n == SIZES[0]:
            plan_263 = (factors, p)

    factors, p = plan_263
    unit = 2 * chunks[SIZES[0]]  # whole chunks for each of 2 workers
    e_min = 4 * unit if args.quick else ENGINE_MIN_REPS
    e_reps = args.reps if args.reps is not None else max(e_min, unit * math.ceil(rows[0].batched * seconds / unit))
    engine = {}
    for n_jobs in (1, 2):
        engine_rate(p, factors, max(4, e_reps // 20), n_jobs)  # warm-up (n_jobs=2: starts the workers)
        engine[n_jobs] = engine_rate(p, factors, e_reps, n_jobs)
        print(f"  engine, n_jobs={n_jobs}: {engine[n_jobs]:.1f} reps/s", file=sys.stderr, flush=True)

    memory, job = None, None
    if not args.quick:
        memory = memory_rows()
        job = main_job_size(), main_job(cold=False), (main_job(cold=True) if args.cold else None)
    match_rows = matching_rows(*((QUICK_GREEDY_N, QUICK_OPTIMAL_N) if args.quick else (GREEDY_N, OPTIMAL_N)))
    p_chunk = QUICK_PER_PAIR_CHUNK if args.quick else PER_PAIR_CHUNK
    pairs = per_pair_rows(p_chunk, args.reps, seconds / 2)
    jit = None if args.quick else (jit_seconds(cold=True), jit_seconds(cold=False),
                                   jit_seconds(cold=True, probe=BATCHED_JIT_PROBE),
                                   jit_seconds(cold=False, probe=BATCHED_JIT_PROBE))
    commands = None if args.quick else command_rows()

    print()
    print_paths(rows)
    print()
    print(f"2. engine (sim.engine.run_chunks, PsmJob.simulate = the batched path), N={SIZES[0]}, {e_reps} reps into "
          f"a temp dir (rows left in the chunk files, as experiments run), progress off, chunks of {default_chunk_size(e_reps, 1)} (n_jobs=1) / "
          f"{default_chunk_size(e_reps, 2)} (n_jobs=2); the batched path alone (1.): {rows[0].batched:.1f} reps/s")
    _table(["n_jobs", "reps/s", "speed-up"],
           [[str(n_jobs), f"{r:.1f}", f"{r / engine[1]:.2f}x"] for n_jobs, r in engine.items()])
    print()
    if memory is None:
        print("3. peak memory: skipped (--quick)")
    else:
        print(f"3. peak memory: the engine at N={MEMORY_N} in a fresh process each, n_jobs=1 (driver and worker are "
              "one process), the rows left in the chunk files as experiments do; peak RSS of that process after it "
              "exits")
        _table(["reps", "peak RSS MB", "before the engine", "engine s", "chunk files", "failed reps"],
               [[str(reps), f"{peak:.0f}", f"{before:.0f}", f"{secs:.1f}", str(n_files), str(n_failed)]
                for reps, before, peak, secs, n_files, n_failed in memory])
        (r0, _, m0, *_), (r1, _, m1, *_) = memory[0], memory[-1]
        print(f"  {(m1 - m0) / (r1 - r0) * 1000:+.1f} MB per 1,000 more reps; before the engine = after importing and "
              "composing the config and loading the calibrated cohort model")
    print()
    if job is None:
        print("4. main job: skipped (--quick)")
    else:
        (reps, n_cond, n_jobs, workers), warm, cold = job
        print(f"4. main job: python -m sim experiment=caliper_sweep ({reps} reps x {n_cond} conditions = "
              f"{reps * n_cond:,} replicates, n_jobs={n_jobs}: {workers} workers; summary, figures, report included)")
        print(f"  calibration and numba caches warm:   {warm[0]:6.1f} s, peak RSS {warm[1]:.0f} MB "
              "(its largest process)")
        if cold is None:
            print("  empty calibration and numba caches:  not run (--cold; up to 2 min more)")
        else:
            how = ("the cohort model calibrated anew" if cold[2]
                   else "the cohort model loaded from the snapshot shipped with the package")
            print(f"  empty calibration and numba caches:  {cold[0]:6.1f} s, peak RSS {cold[1]:.0f} MB "
                  f"(numba compiles; {how})")
    print()
    print(f"5. matching at scale (Austin's design, true PS, caliper 0.2 x pooled SD of the logit PS), "
          f"median of {MATCH_RUNS} calls after a warm-up")
    print(f"{'':<28}  {'N':>9}  {'treated':>7}  {'links':>7}  {'seconds':>8}  {'reference s':>11}  {'ratio':>7}"
          "  result")
    for name, n, n_t, links, fast, ref, same in match_rows:
        print(f"{name:<28}  {n:>9}  {n_t:>7}  {links:>7}  {fast:>8.3f}  {ref:>11.2f}  {ref / fast:>6.1f}x  {same}")
    print("reference = match() with the cores these replaced (plain-Python greedy loop; dense "
          "linear_sum_assignment), median of "
          + ", ".join(f"{k} {v}" for k, v in REFERENCE_RUNS.items()) + " call(s)")
    if jit is None:
        print("numba compilation: skipped (--quick)")
    else:
        print(f"numba (greedy cores), first calls in a fresh process incl. importing numba: {jit[0]:.2f} s with an "
              f"empty cache (compilation), {jit[1]:.2f} s from numba's cache")
        print(f"numba (batched path), first chunk in a fresh process less the second: {jit[2]:.2f} s with an "
              f"empty cache (compilation), {jit[3]:.2f} s from numba's cache")
    for name, cpu, cpu_min, wall in commands or []:
        print(f"python -m {name} as a whole process, {COMMAND_N:,} rows (plain CSV, greedy 1:1, paper's caliper): "
              f"CPU {cpu:.2f} s median (min {cpu_min:.2f}), wall {wall:.2f} s")
    print()
    print(f"6. sensitivity and truncation analyses (on each replicate's pairs), a chunk of B={p_chunk} replicates of a "
          "condition, N=263, reps/s: the chunk's analysis (cohorts generated once) with the per-pair analyses by the "
          "reference's functions on the batched pairs (rows.records) and batched (rows.per_pair_fields); the whole "
          "chunk (psm_chunk, batched); psm_replicate; the batched rows against psm_replicate's on the chunk")
    _table(["experiment", "condition", "per-pair analyses", "reference fns", "batched", "batched/reference",
            "psm_chunk", "psm_replicate", "same rows", "max |diff| per-pair fields"], pairs)
    print()
    print(f"naive = statsmodels Logit + plain O(n_t*n_c) Python greedy loop + the same outcome tests "
          f"(no balance step); bench took {time.perf_counter() - t0:.0f} s")
    print(f"load average (1 min) at start {load0:.2f}, at end {_load():.2f} on {os.cpu_count()} CPUs "
          "(other processes distort the numbers, the n_jobs=2 speed-up most)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

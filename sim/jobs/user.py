"""A user's own simulation on sim's engine (SimDesign's runSimulation): `sim.simulate`.

Why: the engine's guarantees (a SeedSequence stream per condition and replicate, keyed by the
condition's values; chunks written atomically and resumed; results identical for any n_jobs or
chunk size; failed replicates recorded with their reason, never dropped) and the performance
measures with their Monte Carlo SEs (sim.jobs.performance, Morris et al. 2019 Table 6) are not
about propensity scores, so a methods study of anything else can use them through three plain
functions:

    generate(condition: dict, rng: numpy.random.Generator) -> data
    analyse(condition: dict, data) -> {name: estimate} | {name: {estimate, se, ci_low, ci_high,
                                        p_value, ...}} | DataFrame (columns analysis, estimate, ...)
    truth(condition: dict) -> number | {name: number}        (optional: bias, MSE, coverage)

The summary is tidy (one column per grid factor, then analysis, measure, value, mcse, n): bias,
empse, mse against the truth; modelse and relerr_modelse with an `se`; coverage with a CI;
rejection (p_value < alpha) with a p-value; the mean of any other numeric column; n_failed.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.engine.atomic import atomic_writer
from sim.engine import ChunkOutput, RunLock, RunResult, conditions_frame, expand_grid, failure_reason, run_chunks
from sim.jobs.performance import summarise

if TYPE_CHECKING:  # imported where used: the workers that unpickle user_chunk need only this module
    from sim.jobs.contract import ExperimentResult

FIELDS = ("estimate", "se", "ci_low", "ci_high", "p_value", "truth")
RESERVED = {"condition", "rep", "replicate", "analysis", "measure", "value", "mcse", "n", "reason", *FIELDS}
USAGE = ("analyse must return {name: estimate}, {name: {'estimate': .., 'se': .., 'ci_low': .., 'ci_high': .., "
         "'p_value': ..}} or a DataFrame with columns analysis, estimate (and any of se, ci_low, ci_high, p_value)")


@dataclass(frozen=True)
class UserFunctions:
    """What a worker needs: the user's generate and analyse (pickled to the workers as they are)."""

    generate: Callable[[dict, np.random.Generator], Any]
    analyse: Callable[[dict, Any], Any]


def _number(value: Any, where: str) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where} must be a number, got {type(value).__name__} {value!r:.60}") from None


def _fields(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        fields = dict(value)
        if "ci" in fields:
            ci = fields.pop("ci")
            try:
                fields["ci_low"], fields["ci_high"] = ci
            except (TypeError, ValueError):
                raise TypeError(f"analyse: {name}['ci'] must be a (low, high) pair, got {ci!r:.60}") from None
    else:
        fields = {"estimate": value}
    clash = sorted(set(fields) & (RESERVED - set(FIELDS)))
    if clash:
        raise TypeError(f"analyse: {name} uses reserved name(s) {clash}; {USAGE}")
    return {k: _number(v, f"analyse: {name}[{k!r}]") for k, v in fields.items()}


def estimate_records(out: Any) -> list[dict[str, Any]]:
    """analyse()'s return value as records: one per named estimate, `analysis` first."""
    if isinstance(out, pd.DataFrame):
        if "analysis" not in out.columns:
            if len(out) != 1:
                raise TypeError(f"analyse returned a DataFrame of {len(out)} rows without an 'analysis' column; {USAGE}")
            out = out.assign(analysis="estimate")
        clash = sorted(set(out.columns) & (RESERVED - set(FIELDS) - {"analysis"}))
        if clash:
            raise TypeError(f"analyse returned reserved column(s) {clash}; {USAGE}")
        return [{"analysis": str(r.pop("analysis")), **r} for r in out.to_dict("records")]
    if isinstance(out, pd.Series):
        out = out.to_dict()
    if isinstance(out, Mapping):
        if not out:
            raise TypeError(f"analyse returned an empty dict; {USAGE}")
        if "all" in out:
            raise TypeError(f"analyse: 'all' is reserved (the summary's n_failed rows); {USAGE}")
        return [{"analysis": str(k), **_fields(str(k), v)} for k, v in out.items()]
    if isinstance(out, (numbers.Real, np.number)) and not isinstance(out, (bool, np.bool_)):
        return [{"analysis": "estimate", "estimate": float(out)}]
    raise TypeError(f"analyse returned {type(out).__name__}; {USAGE}")


def user_chunk(plan: tuple[UserFunctions, dict], rngs: Sequence[np.random.Generator]) -> ChunkOutput:
    """A chunk of replicates: generate, then analyse, on copies of the condition (a function that
    edits its condition cannot leak into the next replicate); one table per chunk, not per
    replicate (a DataFrame per replicate would cost more than a small analysis). A replicate that
    raises is recorded with its reason, as sim.engine.per_replicate does."""
    fns, cond = plan
    records: list[dict[str, Any]] = []
    failures: dict[int, str] = {}
    for i, rng in enumerate(rngs):
        try:
            rows = estimate_records(fns.analyse(dict(cond), fns.generate(dict(cond), rng)))
        except Exception as exc:  # noqa: BLE001 - a failed replicate is data, not a crash
            failures[i] = failure_reason(exc)
            continue
        records += [{"replicate": i, **r} for r in rows]
    if not records:
        return ChunkOutput(pd.DataFrame({"replicate": pd.Series([], dtype="int64")}), failures)
    return ChunkOutput(pd.DataFrame.from_records(records), failures)


# ------------------------------------------------------------------------------- checks

def _callable(fn: Any, name: str, signature: str) -> None:
    if not callable(fn):
        raise ValueError(f"{name}: must be a function {signature}, got {type(fn).__name__} {fn!r:.60}")


def _integer(value: Any, name: str, minimum: int, what: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}{what}, got {value!r}")
    return int(value)


SCALARS = (str, bool, numbers.Number, np.generic, type(None))


def check_grid(grid: Any) -> dict[str, list]:
    """{factor: non-empty list of values}: names that are not result columns, values that are plain
    scalars (so a condition's seed stream, its digest, is stable across sessions)."""
    if grid is None:
        return {}
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid: must be a dict of factor name -> non-empty list of values, e.g. "
                         f"{{'n': [50, 100], 'effect': [0.0, 0.5]}}, got {type(grid).__name__}")
    out = {}
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"grid: factor names must be non-empty strings, got {key!r}")
        if key in RESERVED:
            raise ValueError(f"grid[{key!r}]: {key!r} is a column of the results; rename the factor (e.g. "
                             f"{key + '_' + 'obs' if key == 'n' else key + '_'!r}); reserved: {sorted(RESERVED)}")
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ValueError(f"grid[{key!r}]: must be a non-empty list of values, got {values!r:.60}"
                             + (f"; wrap a single value as [{values!r}]" if isinstance(values, (str, int, float)) else ""))
        values = list(values)
        bad = [v for v in values if not isinstance(v, SCALARS)]
        if bad:
            raise ValueError(f"grid[{key!r}]: values must be numbers, strings, booleans or None (name a setting and "
                             f"look it up in generate), got {type(bad[0]).__name__} {bad[0]!r:.60}")
        out[key] = [v.item() if isinstance(v, np.generic) else v for v in values]
    return out


def truths_of(truth: Callable | None, conds: list[dict]) -> list[dict[str, float] | float | None]:
    """truth(condition) per condition, checked once before any replicate runs."""
    if truth is None:
        return [None] * len(conds)
    out: list[dict[str, float] | float | None] = []
    for cond in conds:
        t = truth(dict(cond))
        if isinstance(t, Mapping):
            out.append({str(k): _check_truth(v, cond, k) for k, v in t.items()})
        else:
            out.append(_check_truth(t, cond, None))
    return out


def _check_truth(v: Any, cond: dict, key: Any) -> float:
    where = f"truth({cond})" + (f"[{key!r}]" if key is not None else "")
    try:
        return _number(v, where)
    except TypeError as e:
        raise ValueError(f"{e}: truth must return a number or a dict {{analysis: number}}") from None


def _code_digest(*fns: Callable | None) -> str:
    """The functions' code (source where available), defaults and closure values: a changed
    function never reuses the chunks of the old one (globals they read are not seen)."""
    h = hashlib.sha256()
    for fn in fns:
        if fn is None:
            h.update(b"none")
            continue
        try:
            h.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            h.update(repr((code.co_code, code.co_consts) if code else type(fn).__qualname__).encode())
        h.update(repr(getattr(fn, "__defaults__", None)).encode())
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                h.update(repr(cell.cell_contents).encode())
            except ValueError:  # an empty cell
                pass
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------- run

def simulate(generate: Callable, analyse: Callable, grid: Mapping[str, list] | None = None, *, reps: int = 1000,
             seed: int = 0, n_jobs: int = 1, truth: Callable | None = None, alpha: float = 0.05,
             out_dir: str | Path | None = None, chunk_size: int | None = None,
             progress: bool | None = None) -> ExperimentResult:
    """See sim.api.simulate (the public entry point and its documentation)."""
    _callable(generate, "generate", "generate(condition: dict, rng) -> data")
    _callable(analyse, "analyse", "analyse(condition: dict, data) -> dict of named estimates or a DataFrame")
    if truth is not None:
        _callable(truth, "truth", "truth(condition: dict) -> number or {analysis: number}")
    factors = check_grid(grid)
    reps = _integer(reps, "reps", 1)
    seed = _integer(seed, "seed", 0)
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs: must be a non-zero integer (1 = in this process, -1 = all cores), got {n_jobs!r}")
    if chunk_size is not None:
        chunk_size = _integer(chunk_size, "chunk_size", 1, " or None (automatic)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha: must be a number in (0, 1), got {alpha!r}")
    if progress not in (None, True, False):
        raise ValueError(f"progress: must be None (only on a terminal), True or False, got {progress!r}")
    conds = expand_grid(factors)
    truths = truths_of(truth, conds)
    fns = UserFunctions(generate, analyse)
    run = dict(simulate=user_chunk, plans=[(fns, c) for c in conds], conditions=conds, reps=reps,
               seed=seed, n_jobs=int(n_jobs), chunk_size=chunk_size, progress=progress,
               fingerprint=_code_digest(generate, analyse),
               name=f"sim.jobs.user.simulate:{getattr(generate, '__qualname__', '?')},"
                    f"{getattr(analyse, '__qualname__', '?')}")
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="sim-simulate-") as tmp:
            rr = _run_chunks(out_dir=Path(tmp), keep_rows=True, **run)
        return _result(rr, conds, list(factors), truths, alpha, reps, None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        rr = _run_chunks(out_dir=out, keep_rows=False, **run)
        result = _result(rr, conds, list(factors), truths, alpha, reps, out)
        _write(result, out)
    return result


def _run_chunks(**kw: Any) -> RunResult:
    """run_chunks without its warning that every replicate failed: _result raises that as an error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"all \d+ replicates failed", category=RuntimeWarning)
        return run_chunks(**kw)


def _with_truth(rows: pd.DataFrame, truth: dict[str, float] | float | None) -> pd.DataFrame:
    """The truth column: a replicate's own (from analyse), else truth(condition)'s."""
    if truth is None:
        return rows
    given = rows["analysis"].map(truth) if isinstance(truth, dict) else pd.Series(truth, index=rows.index)
    given = pd.to_numeric(given, errors="coerce")
    return rows.assign(truth=rows["truth"].fillna(given) if "truth" in rows else given)


def summary_of(rr: RunResult, conds: list[dict], factors: list[str], truths: list, alpha: float,
               reps: int) -> pd.DataFrame:
    """Tidy performance table, a condition at a time (the memory of one condition's rows)."""
    parts = []
    for rows in rr.condition_replicates():
        c = int(rows["condition"].iloc[0])
        rows = _with_truth(rows, truths[c])
        extras = [col for col in rows.columns if col not in RESERVED and pd.api.types.is_numeric_dtype(rows[col])]
        parts.append(summarise(rows, ["condition", "analysis"], alpha=alpha, extra_means=extras))
    counts = rr.failures.groupby("condition").size() if len(rr.failures) else pd.Series(dtype=float)
    failed = pd.DataFrame({"condition": range(len(conds)), "analysis": "all", "measure": "n_failed"})
    failed = failed.assign(value=failed["condition"].map(counts).fillna(0).astype(float), mcse=np.nan, n=reps)
    table = pd.concat([*parts, failed], ignore_index=True).sort_values("condition", kind="stable")
    grid = conditions_frame(conds)
    out = grid.merge(table, on="condition", how="right")
    return out[["condition", *factors, "analysis", "measure", "value", "mcse", "n"]].reset_index(drop=True)


def wide(summary: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per condition and analysis, a column per measure and one per its MCSE (as
    SimDesign's summary), for reading; the tidy summary is what the rest of sim reads."""
    d = summary[summary["analysis"] != "all"]
    if d.empty:
        return pd.DataFrame()
    keys = ["condition", "analysis"]
    v = d.pivot(index=keys, columns="measure", values="value")
    m = d.pivot(index=keys, columns="measure", values="mcse").add_suffix("_mcse")
    order = list(dict.fromkeys(d["measure"]))
    cols = [c for name in order for c in (name, f"{name}_mcse") if c in v.columns or c in m.columns]
    table = pd.concat([v, m], axis=1)[cols].reset_index()
    grid = summary[["condition", *factors]].drop_duplicates("condition")
    return grid.merge(table, on="condition", how="right")


def _result(rr: RunResult, conds: list[dict], factors: list[str], truths: list, alpha: float, reps: int,
            out_dir: Path | None) -> ExperimentResult:
    from sim.jobs.conditions import Condition
    from sim.jobs.contract import ExperimentResult

    if len(rr.failures) == len(conds) * reps:
        first = rr.failures.iloc[0]
        raise RuntimeError(f"every replicate failed; the first (condition {conds[int(first['condition'])]}, "
                           f"replicate {int(first['rep'])}): {first['reason']}")
    summary = summary_of(rr, conds, factors, truths, alpha, reps)
    performance = wide(summary, factors)
    grid = conditions_frame(conds)
    return ExperimentResult(
        name="simulate", summary=summary.drop(columns="condition"), run=rr, grid=grid,
        failures=grid.merge(rr.failures, on="condition", how="right"),
        conditions=[Condition(i, dict(c), dict(c)) for i, c in enumerate(conds)], factors=factors,
        tables={"performance": performance.drop(columns="condition", errors="ignore")}, out_dir=out_dir, n_computed_chunks=rr.n_computed_chunks,
        n_resumed_chunks=rr.n_resumed_chunks, reps=reps)


def _write(result: ExperimentResult, out_dir: Path) -> None:
    for name, table in (("summary.csv", result.summary), ("performance.csv", result.tables["performance"]),
                        ("failures.csv", result.failures)):
        with atomic_writer(out_dir / name) as fh:
            table.to_csv(fh, index=False)

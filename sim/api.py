"""The Python API: what a notebook needs, returning DataFrames and small result objects. The
command-line tools are thin wrappers around these functions.

    import sim
    cfg = sim.compose("caliper_sweep", ["reps=50", "cohort.n=500"])
    model = sim.cohort_model(cfg)                 # calibrated once, then cached
    df = sim.draw_cohort(cfg, seed=1)             # one synthetic cohort as a DataFrame
    m = sim.match_data(df, "treated", ["age", "male", "escc", "frankel_abc", "emergency"])
    m.balance, m.matched                          # balance table, matched rows with pair ids
    res = sim.run("caliper_sweep", ["reps=50"])   # ExperimentResult: summary, replicates, failures
    sim.rosenbaum(m.matched, "barthel_m6_delta", gamma=[1, 2], mcid=9.25)   # Rosenbaum bounds
    sim.simulate(generate, analyse, {"n": [20, 50]}, reps=500)  # your own simulation, same engine
    w = sim.weight_data(df, "treated", formula="age + I(age**2) + male", estimand="ato", outcome="y")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim.methods.paper import paper_method

if TYPE_CHECKING:  # imported lazily: `python -m sim.match` should start quickly
    from sim.cohort.model import CohortModel
    from sim.jobs.contract import ExperimentResult
    from sim.methods.matching import MatchResult
    from sim.methods.sensitivity.equivalence import TostResult
    from sim.methods.weighted import WeightedData

__all__ = ["compose", "cohort_model", "draw_cohort", "match_data", "MatchedData", "run", "paper_method",
           "compatibility", "simulate", "rosenbaum", "evalue", "tost", "weight_data"]


def compose(experiment: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config of an experiment (as `python -m sim experiment=NAME OVERRIDES...`)."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    args = ([f"experiment={experiment}"] if experiment else []) + list(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="sim.conf", version_base=None):
        return hydra_compose(config_name="config", overrides=args)


def _plain(cfg: DictConfig | None) -> dict[str, Any]:
    return OmegaConf.to_container(cfg if cfg is not None else compose(), resolve=True)


def cohort_model(cfg: DictConfig | None = None) -> CohortModel:
    """The cohort model calibrated to the config's study and cohort settings (cached on disk)."""
    from sim.cohort.calibrate import calibrated
    from sim.jobs.config import check_cohort
    from sim.cohort.study import load_study

    c = _plain(cfg)
    check_cohort(c["cohort"])
    return calibrated(load_study(c["study"]), c["cohort"])


def draw_cohort(cfg: DictConfig | None = None, *, seed: int = 0, n: int | None = None) -> pd.DataFrame:
    """One synthetic cohort (cfg's cohort settings; `n` overrides cohort.n) as a DataFrame, with
    both potential outcomes (`<outcome>_<time>_y0/_y1`) beside the observed ones."""
    from sim.cohort.generate import generate
    from sim.jobs.conditions import design_of
    from sim.cohort.study import load_study

    c = _plain(cfg)
    if n is not None:
        c["cohort"]["n"] = n
    from sim.jobs.config import check_cohort

    check_cohort(c["cohort"])
    design = design_of(load_study(c["study"]), c["cohort"])
    return generate(design, np.random.default_rng(seed)).to_frame(design.model)


@dataclass(frozen=True)
class MatchedData:
    """A matched data set: `data` is every input row plus ps, logit_ps, pair (the pair, matched set or
    subclass; NA if unused) and weight (MatchIt's); `matched` the rows used; `balance` SMDs and
    variance ratios before/after (weighted); `coefficients` the PS model's terms with odds ratios."""

    data: pd.DataFrame
    balance: pd.DataFrame
    result: MatchResult
    converged: bool
    message: str
    coefficients: pd.DataFrame | None = None
    structure: str = "pairs"

    @property
    def matched(self) -> pd.DataFrame:
        return self.data[self.data["weight"] > 0]


def match_data(df: pd.DataFrame, treatment: str, covariates: Sequence[str] | None = None, *,
               algorithm: str | None = None, caliper: float | None | str = "paper", caliper_scale: str | None = None,
               caliper_sd: str | None = None, order: str | None = None, ratio: int | None = None,
               replace: bool | None = None, exact: Sequence[str] | None = None, seed: int | None = 0,
               formula: str | None = None, n_subclasses: int = 5, estimand: str = "att",
               warn: Any = None) -> MatchedData:
    """The paper's PS model (logistic on `covariates`, or on the terms of a patsy `formula` such as
    "age + I(age**2) + bs(re74, df=4)", balance then on the formula's data columns) and matching on a
    user's DataFrame. `algorithm`: greedy | optimal (pairs, 1:k) | full (optimal full matching) |
    subclass (`n_subclasses` quantile subclasses); `estimand` att | ate picks full/subclass weights.
    Every setting left out (or None, except `caliper`) takes the paper's value
    (conf/method/paper.yaml); caliper=None: no caliper (full matching: no caliper unless given).
    `seed` seeds order="random" (None: fresh entropy). `warn`, a function of one str, gets the PS
    model's message when the fit separated or did not converge. Bad input raises ValueError.
    `python -m sim.match` is this computation (sim.methods.psmatch) behind its own input checks."""
    from sim.methods.propensity import odds_ratios
    from sim.methods.psmatch import ps_match

    paper = paper_method()["matching"]
    algorithm = algorithm or paper["algorithm"]
    if (covariates is None) == (formula is None):
        raise ValueError("give the PS model as covariates or as a formula (one of them)")
    if formula is not None:
        from sim.methods.formula import formula_columns, ps_design

        design = ps_design(df, formula, key="formula")
        X, terms = design.X, list(design.names)
        covariates = [c for c in formula_columns(formula) if pd.api.types.is_numeric_dtype(df[c])]
    else:
        covariates = list(covariates)
        missing = [c for c in covariates if c not in df.columns]
        if missing:
            raise ValueError(f"column(s) not found: {missing}; columns: {list(df.columns)}")
        X, terms = df[covariates].to_numpy(dtype=float), covariates
    if exact is None:
        exact = [] if algorithm in ("full", "subclass") else paper["exact"]
    exact = list(exact)
    missing = [c for c in [treatment, *exact] if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) not found: {missing}; columns: {list(df.columns)}")
    if caliper == "paper":
        caliper = None if algorithm == "full" else paper["caliper"]
    codes = df.groupby(exact, sort=True).ngroup().to_numpy().astype(np.int64) if exact else None
    m = ps_match(X, df[treatment].to_numpy(), df[covariates].to_numpy(dtype=float), covariates, method=algorithm,
                 caliper=caliper, caliper_scale=caliper_scale or paper["caliper_scale"],
                 caliper_sd=caliper_sd or paper["caliper_sd"], order=order or paper["order"],
                 ratio=paper["ratio"] if ratio is None else ratio, exact=codes, rng=np.random.default_rng(seed),
                 replace=paper["replace"] if replace is None else replace, n_subclasses=n_subclasses,
                 estimand=estimand, warn=warn)
    out = df.copy()
    out["ps"] = m.fit.ps
    out["logit_ps"] = m.fit.logit_ps
    out["pair"] = pd.array(np.where(m.set_id >= 0, m.set_id, 0), dtype="Int64")
    out.loc[m.set_id < 0, "pair"] = pd.NA
    out["weight"] = m.weights
    coefficients = pd.DataFrame(odds_ratios(m.fit, terms, include_intercept=True)).rename(columns={"covariate": "term"})
    return MatchedData(out, pd.DataFrame(m.balance), m.result, m.converged, str(m.fit.message), coefficients,
                       m.structure)


def run(experiment: str | DictConfig, overrides: Sequence[str] = (), out_dir: str | Path | None = None) -> ExperimentResult:
    """Run an experiment and return its tables; with `out_dir` also write its files there (and
    resume from it), leaving the directory as `python -m sim` does: the replicate rows in its
    replicates.parquet, read from there when asked (keep the directory while using them), or, with
    keep_replicates=false or a job that writes none (rct_planning), no rows and no chunk files: its
    summaries only. Bad settings raise sim.jobs.config.ConfigError before any replicate runs."""
    from sim.jobs import contract as E
    from sim.cli.app import finish, validate

    cfg = compose(experiment, overrides) if isinstance(experiment, str) else experiment
    validate(cfg, list(overrides))
    if out_dir is None:
        return E.run(cfg, None)
    from sim.engine import RunLock

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        result = E.run(cfg, out)
        finish(result, bool(cfg.get("keep_replicates", True)))
    return result


def read_replicates(path: str | Path) -> pd.DataFrame:
    """The replicate rows of a run's replicates.parquet (`path`: the file, or the run directory that
    holds it): one row per replicate and analysis, the grid factors in front, value for value what
    the run computed (its result's `replicates`). The file is packed (sim.engine.columnar: a value
    repeated on a replicate's rows stored once, confidence intervals as half-widths, rows in
    another order): pd.read_parquet reads it as stored, this reads it as it was."""
    from sim.engine.columnar import read_frames

    path = Path(path)
    return read_frames(path / "replicates.parquet" if path.is_dir() else path)


def compatibility(published: Any = None, overrides: Sequence[str] = (), out_dir: str | Path | None = None) -> ExperimentResult:
    """Which true effects remain compatible with published estimates, given the design that produced
    them: experiment published_compatibility. `published`: {outcome: {visit: {"treated": [mean, sd, n],
    "control": [mean, sd, n]}}} (mean change, its SD and the number analysed per arm; None: the
    study's Table 5 and its numbers analysed); anything else (study, grid of θ and U, priors, reps) as
    `overrides`. result.tables["compatibility"] holds the intervals (MCID and outcome units, with their
    MCSE, beside the naive t-interval), result.tables["bias_adjusted"] the bias analysis."""
    cfg = compose("published_compatibility", overrides)
    if published is not None:
        OmegaConf.update(cfg, "experiment.published", published, merge=False)
    return run(cfg, list(overrides), out_dir)


def simulate(generate: Callable, analyse: Callable, grid: Mapping[str, Sequence] | None = None, *,
             reps: int = 1000, seed: int = 0, n_jobs: int = 1, truth: Callable | None = None, alpha: float = 0.05,
             out_dir: str | Path | None = None, chunk_size: int | None = None,
             progress: bool | None = None) -> ExperimentResult:
    """Your own simulation on sim's engine, as SimDesign's runSimulation: every condition of `grid`
    ({factor: [levels]}, crossed; None: one condition {}) x `reps` replicates of

        data = generate(condition, rng)        # condition: a dict of one level per factor
        est = analyse(condition, data)         # {name: estimate} or {name: {"estimate", "se",
                                               #  "ci_low", "ci_high" (or "ci"), "p_value", ...}}
                                               #  or a DataFrame (analysis, estimate, se, ...)

    and optional `truth(condition)` (a number, or {name: number}; an analysis's own `truth`
    column wins) for bias, MSE and coverage. Why use it: each replicate draws only from `rng`,
    seeded from SeedSequence(seed, condition's values, replicate), so results do not depend on
    n_jobs, chunk_size or a resume; failed replicates are recorded with their reason (.failures);
    with `out_dir` finished chunks are kept and the same call resumes (a changed function is
    refused there, never mixed in). Returns an ExperimentResult whose `summary` is tidy (grid
    factors, analysis, measure, value, mcse, n: bias, empse, mse, modelse, relerr_modelse,
    coverage, rejection at `alpha`, means of other numeric fields, n_failed; MCSEs as Morris et
    al. 2019) and `tables["performance"]` the same wide. n_jobs > 1 runs in processes: the
    functions are pickled (cloudpickle), so define them in the notebook or a module. Bad
    arguments raise ValueError naming the argument."""
    from sim.jobs.user import simulate as _simulate

    return _simulate(generate, analyse, grid, reps=reps, seed=seed, n_jobs=n_jobs, truth=truth, alpha=alpha,
                     out_dir=out_dir, chunk_size=chunk_size, progress=progress)


def rosenbaum(pairs: pd.DataFrame, outcome: str, *, gamma: float | Sequence[float] = (1.0, 1.25, 1.5, 2.0, 3.0),
              mcid: float | None = None, alternative: str = "two-sided", alpha: float = 0.05, pair: str = "pair",
              treatment: str = "treated", lower_is_better: bool = False, method: str = "auto",
              zero_method: str = "wilcox", binary: bool = False) -> pd.DataFrame:
    """Rosenbaum sensitivity analysis of 1:1 matched pairs: could hidden bias that multiplies the
    odds of treatment within a pair by Γ explain the result away, or hide a benefit of one `mcid`?
    `pairs` has one row per unit (as python -m sim.match's matched.csv, or match_data(...).matched):
    `pair` id (missing = unmatched), 0/1 `treatment`, `outcome` (higher = better unless
    lower_is_better); pairs with a missing outcome are dropped. The table of python -m
    sim.sensitivity, one row per Γ, every number at the sidedness `alternative` ("two-sided",
    "greater": treatment better, "less"): p_upper (the upper bound of the p-value); for a
    continuous outcome (Wilcoxon signed rank, `zero_method` "wilcox" or "pratt") the Hodges-Lehmann
    interval hl_low/hl_high and ci_low/ci_high at that Γ and, with `mcid`, p_upper_mcid and
    mcid_excluded; for a 0/1 outcome (detected; binary=True insists) McNemar's bound on the
    discordant pairs. table.attrs: n_pairs, n_complete, gamma_star (the largest Γ at which the
    result stays significant) and gamma_star_direction."""
    from sim.cli.common import InputError
    from sim.cli.sensitivity import (ALTERNATIVES, binary_table, is_binary, pair_differences, sided_gamma_star,
                                     sided_table)
    from sim.methods.sensitivity.rosenbaum import METHODS, ZERO_METHODS

    if not isinstance(pairs, pd.DataFrame):
        raise ValueError(f"pairs: must be a pandas DataFrame (one row per unit), got {type(pairs).__name__}")
    for arg, col in (("outcome", outcome), ("pair", pair), ("treatment", treatment)):
        if col not in pairs.columns:
            raise ValueError(f"{arg}: column {col!r} not found; columns: {list(pairs.columns)}")
    if len({outcome, pair, treatment}) < 3:
        raise ValueError(f"outcome, pair and treatment must be three different columns, got {outcome!r}, "
                         f"{pair!r}, {treatment!r}")
    gammas = [gamma] if isinstance(gamma, (int, float, np.number)) else list(gamma)
    if not gammas or not all(isinstance(g, (int, float, np.number)) and not isinstance(g, bool)
                             and np.isfinite(g) and g >= 1 for g in gammas):
        raise ValueError(f"gamma: must be a number >= 1 or a non-empty list of them, got {gamma!r}")
    for arg, value, allowed in (("alternative", alternative, ALTERNATIVES), ("method", method, METHODS),
                                ("zero_method", zero_method, ZERO_METHODS)):
        if value not in allowed:
            raise ValueError(f"{arg}: must be one of {list(allowed)}, got {value!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha: must be a number in (0, 0.5), got {alpha!r}")
    if mcid is not None:
        if isinstance(mcid, bool) or not isinstance(mcid, (int, float, np.number)) or not (np.isfinite(mcid) and mcid > 0):
            raise ValueError(f"mcid: must be a finite number > 0 or None, got {mcid!r}")
        if alternative == "greater":
            raise ValueError("mcid: needs alternative='two-sided' or 'less' (an upper confidence limit); "
                             "alternative='greater' gives none")
    gammas = sorted(set(float(g) for g in gammas))
    try:
        d, n_pairs = pair_differences(pairs, outcome, pair, treatment, lower_is_better)
        zero_one = is_binary(pairs.loc[pairs[pair].notna(), outcome])
        if binary and not zero_one:
            raise ValueError(f"binary: outcome {outcome!r} is not 0/1 in the matched rows")
        if zero_one and mcid is not None:
            raise ValueError(f"mcid: needs a continuous outcome; {outcome!r} is 0/1 (McNemar's bound on the "
                             "discordant pairs)")
        if zero_one:
            table = binary_table(d, gammas, alternative=alternative, alpha=alpha)
        else:
            table = sided_table(d, gammas, alternative=alternative, alpha=alpha,
                                mcid=None if mcid is None else float(mcid), method=method, zero_method=zero_method)
        g_star, side = sided_gamma_star(d, alternative, alpha, method, zero_method=zero_method, binary=zero_one)
    except InputError as e:
        raise ValueError(str(e)) from None
    table.attrs.update(n_pairs=int(n_pairs), n_complete=int(d.size), gamma_star=float(g_star),
                       gamma_star_direction=side)
    return table


def evalue(estimate: float, *, sd: float | None = None, se: float | None = None,
           ci: tuple[float, float] | None = None, true: float | None = None, scale: str = "difference") -> dict:
    """E-values (VanderWeele & Ding 2017): how strongly (risk-ratio scale) an unmeasured confounder
    would have to be associated with both treatment and outcome to move `estimate` to `true`.
    scale="difference": a difference in means in outcome units, standardised by the outcome's `sd`
    (required) and mapped to RR = exp(0.91 d) (as EValue::evalues.MD); true=mcid asks what would hide
    a benefit of one MCID. scale="smd": already standardised. scale="rr": a risk ratio (`ci` on
    that scale; `true` defaults to 1). `se` or `ci` adds the E-value of the confidence limit
    nearer `true` (1 if the CI contains it). Returns a dict: rr, rr_low, rr_high,
    evalue_estimate, evalue_ci (and d, se_d on the difference scales)."""
    import sim.methods.sensitivity.evalue as E

    if scale not in ("difference", "smd", "rr"):
        raise ValueError(f"scale: must be one of ['difference', 'smd', 'rr'], got {scale!r}")
    if scale == "rr":
        if se is not None:
            raise ValueError("se: not used with scale='rr'; give the CI of the risk ratio as ci=(low, high)")
        lo, hi = (None, None) if ci is None else _pair(ci)
        true_rr = 1.0 if true is None else true
        return {"rr": float(estimate), "rr_low": E.NAN if lo is None else float(lo),
                "rr_high": E.NAN if hi is None else float(hi),
                "evalue_estimate": E.evalue_rr(estimate, true_rr=true_rr),
                "evalue_ci": E.evalue_ci(estimate, lo, hi, true_rr) if ci is not None else E.NAN}
    if scale == "difference" and sd is None:
        raise ValueError("sd: required with scale='difference' (the outcome's SD, e.g. of the change from "
                         "baseline); or give a standardised estimate with scale='smd'")
    return E.evalue_diff_means(estimate, 1.0 if scale == "smd" else sd, se, None if ci is None else _pair(ci),
                               true=0.0 if true is None else true)


def _pair(ci: Any) -> tuple[Any, Any]:
    try:
        lo, hi = ci
    except (TypeError, ValueError):
        raise ValueError(f"ci: must be a (low, high) pair, got {ci!r}") from None
    return lo, hi


def tost(treated: Any, control: Any, *, margin: float, alpha: float = 0.05, paired: bool = False,
         usevar: str = "unequal", summary: bool = False) -> TostResult:
    """Equivalence test (two one-sided t-tests, Schuirmann 1987): is treated - control within
    ±margin (e.g. one MCID)? A non-significant difference is not evidence of no difference; this
    asks the question a "no difference" conclusion implies. `treated`, `control`: the values of
    each arm (NaNs dropped; paired=True: the two halves of the pairs, in pair order), or with
    summary=True published (mean, sd, n) of each arm. Returns a TostResult: estimate, the
    (1 - 2 alpha) CI ci_low/ci_high, p_value (the larger one-sided p), equivalent (p <= alpha).
    As statsmodels' ttost_ind / ttost_paired."""
    from sim.methods.sensitivity.equivalence import tost as _tost, tost_from_summary

    if summary:
        if paired:
            raise ValueError("paired: a paired TOST needs the pairs' values, not summaries (summary=True)")
        parts = []
        for arg, value in (("treated", treated), ("control", control)):
            try:
                m, s, n = value
            except (TypeError, ValueError):
                raise ValueError(f"{arg}: with summary=True must be (mean, sd, n), got {value!r}") from None
            parts += [m, s, n]
        return tost_from_summary(*parts, margin, alpha, usevar=usevar)
    return _tost(np.asarray(treated, dtype=float), np.asarray(control, dtype=float), margin, alpha=alpha,
                 paired=paired, usevar=usevar)


def weight_data(df: pd.DataFrame, treatment: str, covariates: Sequence[str] | None = None, formula: str | None = None,
                estimand: str = "att", outcome: str | None = None, *, binary: str = "std",
                denominator: str | None = None, alpha: float = 0.05) -> WeightedData:
    """Propensity-score weighting of a user's DataFrame, as `python -m sim.weight`: a logistic PS
    on `covariates` (main effects) or a patsy `formula` ("age + I(age**2) + bs(re74, df=3)"), ATT
    (treated 1, controls e/(1-e)), ATE (1/e, 1/(1-e)) or ATO (1-e, e) weights normalised per arm,
    and a result with `.weights`, `.balance` (cobalt-style: SMD by the unweighted `denominator`,
    default treated for the ATT and pooled otherwise; variance ratios; weighted eCDF mean/max),
    `.ess` (Kish, per arm), `.ps_coefficients` and, with `outcome`, `.estimate` (the weighted
    difference, its M-estimation sandwich SE with the PS estimated, CI and p). `.warnings` lists
    extreme weights and a PS model that did not converge. Bad input raises ValueError."""
    from sim.methods.weighted import weight_data as _weight_data

    return _weight_data(df, treatment, covariates, formula, estimand=estimand, outcome=outcome, binary=binary,
                        denominator=denominator, alpha=alpha)

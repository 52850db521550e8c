"""The Python API: what a notebook needs, returning DataFrames and small result objects. The
command-line tools are thin wrappers around these functions.

    import sim
    cfg = sim.compose("caliper_sweep", ["reps=50", "cohort.n=500"])
    model = sim.cohort_model(cfg)                 # calibrated once, then cached
    df = sim.draw_cohort(cfg, seed=1)             # one synthetic cohort as a DataFrame
    m = sim.match_data(df, "treated", ["age", "male", "escc", "frankel_abc", "emergency"])
    m.balance, m.matched                          # balance table, matched rows with pair ids
    res = sim.run("caliper_sweep", ["reps=50"])   # ExperimentResult: summary, replicates, failures
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # imported lazily: `python -m sim.match` should start quickly
    from sim.cohort.model import CohortModel
    from sim.jobs.contract import ExperimentResult
    from sim.methods.matching import MatchResult

__all__ = ["compose", "cohort_model", "draw_cohort", "match_data", "MatchedData", "run", "paper_method",
           "compatibility"]


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


def paper_method() -> dict[str, Any]:
    """The paper's analysis settings (conf/method/paper.yaml): the one source of their defaults."""
    text = resources.files("sim.conf").joinpath("method", "paper.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class MatchedData:
    """A matched data set: `data` is every input row plus ps, logit_ps, pair (NA if unmatched) and
    weight; `matched` the matched rows only; `balance` SMDs and variance ratios before/after."""

    data: pd.DataFrame
    balance: pd.DataFrame
    result: MatchResult
    converged: bool
    message: str

    @property
    def matched(self) -> pd.DataFrame:
        return self.data[self.data["weight"] > 0]


def match_data(df: pd.DataFrame, treatment: str, covariates: Sequence[str], *, algorithm: str | None = None,
               caliper: float | None | str = "paper", caliper_scale: str | None = None,
               caliper_sd: str | None = None, order: str | None = None, ratio: int | None = None,
               replace: bool | None = None, exact: Sequence[str] | None = None, seed: int | None = 0,
               warn: Any = None) -> MatchedData:
    """The paper's PS model (logistic on `covariates`) and matching on a user's DataFrame. Every
    setting left out (or None, except `caliper`) takes the paper's value (conf/method/paper.yaml);
    caliper=None: no caliper. `seed` seeds order="random" (None: fresh entropy). `warn`, a function
    of one str, if given, gets the PS model's message when the fit separated or did not converge
    (before matching). Bad input raises ValueError. `python -m sim.match` is this function behind
    its own input checks."""
    from sim.methods.balance import balance_table
    from sim.methods.matching import match
    from sim.methods.propensity import fit_propensity

    paper = paper_method()["matching"]
    covariates = list(covariates)
    exact = list(paper["exact"] if exact is None else exact)
    missing = [c for c in [treatment, *covariates, *exact] if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) not found: {missing}; columns: {list(df.columns)}")
    t = df[treatment].to_numpy()
    if not np.isin(t, [0, 1]).all():
        raise ValueError(f"treatment column {treatment!r} must be 0/1")
    t = t.astype(np.int8)
    X = df[covariates].to_numpy(dtype=float)
    fit = fit_propensity(X, t)
    converged = bool(fit.converged and not fit.separation)
    if warn is not None and not converged:
        warn(str(fit.message))
    codes = df.groupby(exact, sort=True).ngroup().to_numpy().astype(np.int64) if exact else None
    res = match(fit.ps, t, algorithm=algorithm or paper["algorithm"],
                caliper=paper["caliper"] if isinstance(caliper, str) and caliper == "paper" else caliper,
                caliper_scale=caliper_scale or paper["caliper_scale"], caliper_sd=caliper_sd or paper["caliper_sd"],
                order=order or paper["order"], ratio=paper["ratio"] if ratio is None else ratio,
                replace=paper["replace"] if replace is None else replace, exact=codes,
                rng=np.random.default_rng(seed))
    out = df.copy()
    out["ps"] = fit.ps
    out["logit_ps"] = fit.logit_ps
    out["pair"] = pd.array(np.where(res.pair_id >= 0, res.pair_id, 0), dtype="Int64")
    out.loc[res.pair_id < 0, "pair"] = pd.NA
    out["weight"] = res.weights
    bal = balance_table(X, t, covariates, res.weights)
    return MatchedData(out, bal, res, converged, str(fit.message))


def run(experiment: str | DictConfig, overrides: Sequence[str] = (), out_dir: str | Path | None = None) -> ExperimentResult:
    """Run an experiment and return its tables; with `out_dir` also write its files there (and
    resume from it), and leave the replicate rows in its chunk files: the result reads them from
    there when asked, so keep the directory while using it. Bad settings raise
    sim.jobs.config.ConfigError before any replicate runs."""
    from sim.jobs import contract as E
    from sim.cli.app import validate

    cfg = compose(experiment, overrides) if isinstance(experiment, str) else experiment
    validate(cfg, list(overrides))
    if out_dir is None:
        return E.run(cfg, None)
    from sim.engine import RunLock

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        return E.run(cfg, out)


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

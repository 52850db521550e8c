"""sim: simulation and sensitivity analysis for propensity-score-matched observational studies.

The public API (see sim.api): compose, cohort_model, draw_cohort, match_data, MatchedData, run,
compatibility, ExperimentResult. Imported on first use, so `python -m sim.match` stays quick to start."""

__version__ = "0.1.0"

__all__ = ["compose", "cohort_model", "draw_cohort", "match_data", "MatchedData", "run", "paper_method",
           "compatibility", "ExperimentResult", "ConfigError"]


def __getattr__(name: str):
    if name == "ExperimentResult":
        from sim.jobs.contract import ExperimentResult

        return ExperimentResult
    if name == "ConfigError":
        from sim.jobs.config import ConfigError

        return ConfigError
    if name in __all__:
        from sim import api

        return getattr(api, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

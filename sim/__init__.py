"""sim: simulation and sensitivity analysis for propensity-score-matched observational studies.

The public API (sim.api), each returning DataFrames or small result objects:
  compose, paper_method     the composed config of an experiment; the paper's analysis settings
  cohort_model, draw_cohort the calibrated cohort model; one synthetic cohort as a DataFrame
  match_data, MatchedData   the paper's PS model and matching on your own DataFrame
  run, compatibility        run an experiment (ExperimentResult); which true effects a published
                            result still allows
  simulate                  your own generate/analyse functions on the same engine (SimDesign's
                            runSimulation): seeds per condition and replicate, chunks, resume, MCSEs
  rosenbaum, evalue, tost   sensitivity analyses of your own matched data or published numbers
  read_replicates           a run's replicates.parquet read back as the rows the run computed
  ExperimentResult          what run/simulate return: summary, replicates, failures, tables
  ConfigError               a bad setting, raised before anything runs (naming the key)

They are imported on first use (`sim.run`, `from sim import run`), so `import sim` and
`python -m sim.match` stay quick to start; `dir(sim)` and `help(sim)` list them all."""

__version__ = "0.1.0"

__all__ = ["compose", "paper_method", "cohort_model", "draw_cohort", "match_data", "MatchedData", "run",
           "compatibility", "simulate", "rosenbaum", "evalue", "tost", "read_replicates", "ExperimentResult",
           "ConfigError"]


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


def __dir__() -> list[str]:
    """The module's own names and the lazily imported public API (so that tab completion and
    help(sim), which reads dir(), show them)."""
    return sorted(set(globals()) | set(__all__))

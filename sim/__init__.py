"""sim: simulation and sensitivity analysis for propensity-score-matched observational studies."""

__version__ = "0.1.0"

"""Estimators beyond the paper's matched pairs, each on the job contract's rows with its own
estimand (see base.py): weighting.py (IPW for the ATT and the ATE, overlap weights for the ATO,
augmented IPW), matched.py (regression after matching, full matching, subclassification)."""

from sim.methods.estimators.base import ESTIMANDS, ESTIMATORS, CohortView, Estimate, register

__all__ = ["ESTIMANDS", "ESTIMATORS", "CohortView", "Estimate", "register"]

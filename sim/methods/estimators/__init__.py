"""Estimators beyond the paper's matched pairs, each on the job contract's rows with its own
estimand (see base.py): weighting.py (IPW for the ATT and the ATE, overlap weights for the ATO,
augmented IPW), matched.py (regression after matching, full matching, subclassification)."""

from sim.methods.estimators.base import ESTIMAND_OF, ESTIMANDS, ESTIMATORS, CohortView, Estimate, register
from sim.methods.estimators import weighting  # noqa: F401
from sim.methods.estimators import matched  # noqa: F401

__all__ = ["ESTIMAND_OF", "ESTIMANDS", "ESTIMATORS", "CohortView", "Estimate", "register"]

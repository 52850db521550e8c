"""Statistical methods: propensity model, matching, balance diagnostics, outcome tests.

Names are imported lazily (PEP 562) so that e.g. the matching CLI does not pay
for importing scipy.stats; ``from sim.methods import match`` works as usual.
"""

from importlib import import_module

_EXPORTS = {
    "PropensityFit": "propensity",
    "fit_propensity": "propensity",
    "odds_ratio_table": "propensity",
    "MatchResult": "matching",
    "match": "matching",
    "caliper_width": "matching",
    "MAX_OPTIMAL_CELLS": "matching",
    "smd": "balance",
    "variance_ratio": "balance",
    "balance_table": "balance",
    "max_abs_smd": "balance",
    "TestResult": "outcomes",
    "wilcoxon_ranksum": "outcomes",
    "signed_rank": "outcomes",
    "paired_t": "outcomes",
    "diff_means": "outcomes",
    "fisher_exact": "outcomes",
    "analyse_deltas": "outcomes",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

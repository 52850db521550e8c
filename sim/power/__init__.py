"""Sample size and power of a two-arm parallel trial: one import for the closed forms, the
root-finding on simulated power and the planning tables, which live in modules by concern:

  sim.power.closed  closed forms (t-test and ANCOVA, normal and noncentral t; Noether's Wilcoxon
                    formula with ties; the death-ranks-worst composite; the Bonferroni factor)
  sim.power.solve   the n per arm at which a simulated power curve reaches a target (probit GLM
                    on sqrt n, Fieller interval)
  sim.power.plan    the closed forms' inputs from a reference cohort, the sample-size table, the
                    unrounded comparison of simulated and closed-form n, the standardised table
  sim.power.check   direct simulation of power at a closed-form n (the gaps' confirmation)

All sample sizes are PER ARM and two-sided at level ``alpha``.
"""

from __future__ import annotations

from sim.power.closed import (NAN, bonferroni_factor, composite_superiority, n_per_arm_ancova, n_per_arm_noether,
                              n_per_arm_ttest, power_ancova, power_ttest, superiority, z)
from sim.power.plan import (COMPARISON_COLUMNS, GAP_PAIRS, MODERATE_SD, POWER_MEASURE, closed_forms,
                            comparison_table, fit_curves, gaps, largest_gap, reference_quantities, sample_size_table,
                            standardised_n_table)
from sim.power.solve import PowerFit, crossing, fit_probit_curve, solve_simulated_n

__all__ = ["n_per_arm_ttest", "power_ttest", "n_per_arm_ancova", "power_ancova", "n_per_arm_noether",
           "superiority", "composite_superiority", "bonferroni_factor", "z", "crossing", "PowerFit",
           "fit_probit_curve", "solve_simulated_n", "reference_quantities", "closed_forms", "fit_curves",
           "sample_size_table", "comparison_table", "COMPARISON_COLUMNS", "GAP_PAIRS", "POWER_MEASURE", "gaps",
           "largest_gap", "MODERATE_SD", "standardised_n_table", "NAN"]

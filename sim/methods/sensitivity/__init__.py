"""Sensitivity analyses as analyses of the matched change from baseline, so that any experiment
can list them in `method.outcomes.analyses` and measure them over replicates:

  rosenbaum  Rosenbaum bounds for the 1:1 pair differences (signed-rank, normal approximation in
             the hot loop): gamma_star (largest Γ at which the two-sided level-alpha test still
             favours decompression), gamma_mcid (largest Γ at which a benefit of one MCID is still
             excluded, H0: τ = MCID against τ < MCID), mcid_excluded_at_<Γ> for Γ = 1, 1.5, 2.
  evalue     E-values of the difference in mean change (VanderWeele & Ding 2017, RR ≈ exp(0.91 d)):
             to explain the estimate / its CI away, and to move it to a true benefit of one MCID.
  tost       two one-sided tests against ±MCID: p_value = the TOST p (so the rejection rate is the
             probability of showing equivalence), equivalent, and the 90 % CI.
"""

from __future__ import annotations

import math

import numpy as np

from sim.methods.sensitivity.equivalence import tost_summary
from sim.methods.sensitivity.evalue import evalue_summary
from sim.methods.sensitivity.rosenbaum import rosenbaum_summary

NAN = float("nan")
GAMMAS = (1.0, 1.5, 2.0)
#: analysis name -> the per-replicate columns it adds (their means and quantiles are summarised)
SENSITIVITY_ANALYSES = {
    "rosenbaum": ("gamma_star", "gamma_mcid", *(f"mcid_excluded_at_{g:g}" for g in GAMMAS)),
    "evalue": ("evalue_estimate", "evalue_ci", "evalue_mcid"),
    "tost": (),  # its rejection rate is the probability of showing equivalence
}
#: analyses that need 1:1 pairs (ratio 1, no replacement)
PAIRED_ONLY = ("rosenbaum",)
QUANTILE_COLUMNS = ("gamma_star", "gamma_mcid")


def sensitivity_fields(name: str, y_treated: np.ndarray, y_control: np.ndarray, mcid: float,
                       alpha: float) -> dict[str, float]:
    """The row fields of one sensitivity analysis of pair-aligned changes (improvement scale): the
    rows' standard fields (a sensitivity analysis favours no arm: NaN; the pairs with both changes
    used) and its own."""
    both = int(np.sum(~np.isnan(np.asarray(y_treated, float)) & ~np.isnan(np.asarray(y_control, float))))
    row = {"estimate": NAN, "se": NAN, "ci_low": NAN, "ci_high": NAN, "p_value": NAN, "favours": NAN,
           "n_used_treated": both, "n_used_control": both, "note": "" if both else "no pair with both changes"}
    if name == "rosenbaum":
        r = rosenbaum_summary(y_treated, y_control, mcid=mcid, alpha=alpha, gammas=GAMMAS)
        r.pop("n_pairs_used")
        r.pop("p_upper_at_1")
        return {**row, **r}
    if name == "evalue":
        r = evalue_summary(y_treated, y_control, mcid=mcid)
        return {**row, **{k: r[k] for k in SENSITIVITY_ANALYSES["evalue"]}}
    if name == "tost":
        r = tost_summary(y_treated, y_control, mcid=mcid, alpha=alpha)
        return {**row, "p_value": r["tost_p"], "equivalent": r["equivalent"],
                "ci90_low": r["ci90_low"], "ci90_high": r["ci90_high"]}
    raise ValueError(f"unknown sensitivity analysis {name!r}; allowed: {list(SENSITIVITY_ANALYSES)}")


def quantile_with_mcse(x: np.ndarray, p: float, z: float = 1.96) -> tuple[float, float]:
    """The p-quantile of x and its Monte Carlo SE from the distribution-free order-statistic
    interval (1-based ranks n p ± z sqrt(n p (1 - p))): half its width over z."""
    x = np.sort(x[~np.isnan(x)])
    n = x.size
    if n == 0:
        return NAN, NAN
    q = float(np.quantile(x, p))
    half = z * math.sqrt(n * p * (1 - p))
    lo = min(max(int(math.floor(n * p - half)) - 1, 0), n - 1)  # 1-based rank -> 0-based index
    hi = min(max(int(math.ceil(n * p + half)) - 1, 0), n - 1)
    return q, float((x[hi] - x[lo]) / (2 * z))

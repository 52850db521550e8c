"""Amplification of a sensitivity parameter Γ into two (Rosenbaum & Silber 2009, JASA 104:1398).

Γ bounds the odds of treatment within a matched pair; the same Γ is produced by an unobserved
covariate U that raises the odds of treatment by Λ and the odds of a positive pair difference by Δ,
for every (Λ, Δ) with Γ = (ΛΔ + 1)/(Λ + Δ). ``sim.methods.sensitivity.rosenbaum`` re-exports these
functions under the same names.
"""

from __future__ import annotations

import numpy as np

__all__ = ["amplify", "amplification_gamma", "amplification_table", "DEFAULT_LAMBDA_FACTORS"]

#: Λ = Γ x these factors in ``amplification_table`` when no Λ is given
DEFAULT_LAMBDA_FACTORS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


def amplify(gamma, lam):
    """Δ such that (Λ, Δ) amplify Γ: Γ = (ΛΔ + 1)/(Λ + Δ) (Rosenbaum & Silber 2009); needs Λ > Γ.

    Λ: effect of U on the odds of treatment, Δ: on the odds of a positive pair difference.
    """
    g, lam_ = np.asarray(gamma, dtype=float), np.asarray(lam, dtype=float)
    if np.any(~np.isfinite(g)) or np.any(g < 1):
        raise ValueError(f"gamma must be finite and >= 1; got {gamma!r}")
    if np.any(~np.isfinite(lam_)) or np.any(lam_ <= g):
        raise ValueError(f"lam must be finite and > gamma; got lam={lam!r}, gamma={gamma!r}")
    out = (g * lam_ - 1.0) / (lam_ - g)
    return float(out) if out.ndim == 0 else out


def amplification_gamma(lam, delta):
    """Inverse of ``amplify``: Γ = (ΛΔ + 1)/(Λ + Δ) for Λ, Δ >= 1."""
    l_, d_ = np.asarray(lam, dtype=float), np.asarray(delta, dtype=float)
    for name, v, raw in (("lam", l_, lam), ("delta", d_, delta)):
        if np.any(~np.isfinite(v)) or np.any(v < 1):
            raise ValueError(f"{name} must be finite and >= 1; got {raw!r}")
    out = (l_ * d_ + 1.0) / (l_ + d_)
    return float(out) if out.ndim == 0 else out


def amplification_table(gamma, lams=None):
    """(Λ, Δ) pairs equivalent to one Γ; default Λ = Γ x (1.25, 1.5, 2, 3, 5, 10)."""
    import pandas as pd

    g = np.atleast_1d(np.asarray(gamma, dtype=float))
    if g.shape != (1,) or not np.isfinite(g[0]) or g[0] < 1:
        raise ValueError(f"gamma must be a finite number >= 1; got {gamma!r}")
    g = float(g[0])
    lam = np.asarray(lams if lams is not None else g * np.array(DEFAULT_LAMBDA_FACTORS), dtype=float)
    return pd.DataFrame({"gamma": g, "lam": lam, "delta": amplify(g, lam)})

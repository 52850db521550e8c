"""From a latent standard normal to a variable's real scale (the NORTA inverse step).

Every generated variable is a monotone function of one latent N(0, 1): a bounded, stepped normal or
lognormal for scores and measurements, cut-points for categories. Location and scale are solved so
that the variable's *observed* mean and SD (after bounding and rounding) hit the published ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

# A fixed quantile grid makes moment matching deterministic and smooth in the parameters.
_GRID = special.ndtri((np.arange(20_000) + 0.5) / 20_000)


def snap(x: np.ndarray, lower: float, upper: float, step: float) -> np.ndarray:
    """Bound to [lower, upper] and round to the scale's step, anchored at `lower`."""
    y = lower + np.round((np.clip(x, lower, upper) - lower) / step) * step
    # round off float error so that the bounds (e.g. EQ-5D full health = 1) are hit exactly
    return np.minimum(np.round(y, 10), upper)


@dataclass(frozen=True)
class Continuous:
    """x = snap(loc + scale*z) (normal) or snap(exp(loc + scale*z)) (lognormal)."""

    loc: float
    scale: float
    lower: float
    upper: float
    step: float
    lognormal: bool = False

    def __call__(self, z: np.ndarray) -> np.ndarray:
        raw = self.loc + self.scale * z
        if self.lognormal:
            raw = np.exp(np.minimum(raw, 50.0))
        return snap(raw, self.lower, self.upper, self.step)


def _moments(c: Continuous) -> tuple[float, float]:
    """Exact mean and SD of the bounded, stepped variable (bin probabilities from the normal CDF);
    a fine quantile grid when the step is too small to enumerate."""
    n_bins = (c.upper - c.lower) / c.step
    if n_bins > 5_000:
        x = c(_GRID)
        return float(x.mean()), float(x.std())
    values = snap(c.lower + c.step * np.arange(int(round(n_bins)) + 1), c.lower, c.upper, c.step)
    edges = (values[:-1] + values[1:]) / 2
    if c.lognormal:
        with np.errstate(divide="ignore"):
            z = (np.log(np.maximum(edges, 0)) - c.loc) / c.scale
    else:
        z = (edges - c.loc) / c.scale
    cdf = np.concatenate([[0.0], special.ndtr(z), [1.0]])
    p = np.diff(cdf)
    mean = float(np.sum(p * values))
    return mean, float(np.sqrt(max(np.sum(p * (values - mean) ** 2), 0.0)))


def fit_continuous(mean: float, sd: float, lower: float, upper: float, step: float,
                   lognormal: bool = False) -> Continuous:
    """Solve loc/scale so that the bounded, stepped variable has the target mean and SD."""
    if lognormal:
        s2 = np.log1p((sd / mean) ** 2)
        x0 = np.array([np.log(mean) - s2 / 2, np.sqrt(s2)])
    else:
        x0 = np.array([mean, sd])

    def make(p: np.ndarray) -> Continuous:
        return Continuous(float(p[0]), float(abs(p[1])), lower, upper, step, lognormal)

    def resid(p: np.ndarray) -> np.ndarray:
        m, s = _moments(make(p))
        return np.array([(m - mean) / sd, s / sd - 1.0])

    sol = optimize.least_squares(resid, x0, x_scale=np.abs(x0) + 1e-3, xtol=1e-12, ftol=1e-12)
    return make(sol.x)


@dataclass(frozen=True)
class Ordinal:
    """Category index from a latent: category k when cuts[k-1] < z <= cuts[k]; `order` maps the
    latent's rank to the category's position in the spec (so the latent can run in any order)."""

    cuts: tuple[float, ...]
    order: tuple[int, ...]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        rank = np.searchsorted(np.asarray(self.cuts), z)
        return np.asarray(self.order, dtype=np.int64)[rank]


def fit_ordinal(probs: np.ndarray, order: np.ndarray | None = None) -> Ordinal:
    """Cut-points giving category probabilities `probs` (spec order); `order` lists the spec
    indices from the lowest latent to the highest."""
    probs = np.asarray(probs, dtype=float)
    probs = probs / probs.sum()
    order = np.arange(len(probs)) if order is None else np.asarray(order)
    cum = np.cumsum(probs[order])[:-1]
    return Ordinal(tuple(special.ndtri(np.clip(cum, 1e-12, 1 - 1e-12)).tolist()), tuple(int(i) for i in order))


def binary_threshold(p: float) -> float:
    """x = 1 when z > threshold, so that P(x = 1) = p."""
    return float(special.ndtri(1.0 - p))

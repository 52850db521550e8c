"""Which true effects are compatible with a published estimate, given the design that produced it.

Why: the naive interval around a published difference in mean change (Table 5's t-interval)
assumes an unbiased, normally distributed estimator. The matched, complete-case comparison of a
calibrated design is neither: residual confounding shifts it, ceilings shrink a benefit, deaths and
attrition select who is compared. Simulating the whole design at each true effect θ (common random
numbers across θ) gives the estimator's distribution D(θ); inverting the equal-tailed test
"D(θ) produced the published d" over θ gives a design-based compatibility interval:

    {θ : q_{α/2}(θ) <= d <= q_{1-α/2}(θ)}    (q: quantiles of D(θ) over replicates)

with each endpoint interpolated linearly in θ between grid points, open-ended where the grid does
not bracket it, and a Monte Carlo SE from resampling the replicates (jointly across θ: they are the
same cohorts). The same distributions give a probabilistic bias analysis (episensr's `probsens`
idea, Greenland 2005): a linear surrogate E[D | θ, U] = a(U) + b(U) θ, fitted per hidden-confounder
setting U and interpolated over U's grid, turns draws of U from priors into draws of θ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import stats

#: prior distributions of the bias parameters and their parameters (numpy Generator methods)
PRIORS = {
    "uniform": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("meanlog", "sdlog"),
    "triangular": ("low", "mode", "high"),
}


@dataclass(frozen=True)
class Interval:
    """A compatibility interval for θ: endpoints with their MCSE; an open end is NaN with its flag."""

    low: float
    high: float
    low_mcse: float
    high_mcse: float
    open_low: bool
    open_high: bool


def _crossing(theta: np.ndarray, q: np.ndarray, d: float, first: bool) -> float:
    """θ where the curve q(θ) reaches d, interpolated linearly; NaN when it does not within the
    grid. q increases with θ up to Monte Carlo noise; where it crosses d more than once the crossing
    that widens the interval is taken (the first for the lower end, the last for the upper)."""
    below = q < d
    idx = [i for i in range(len(theta) - 1) if below[i] and not below[i + 1]]
    if not idx:
        return math.nan
    i = idx[0] if first else idx[-1]
    q0, q1 = q[i], q[i + 1]
    w = 0.0 if q1 == q0 else (d - q0) / (q1 - q0)
    return float(theta[i] + w * (theta[i + 1] - theta[i]))


def quantile_curves(draws: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The α/2 and 1 - α/2 quantiles of D at each θ (rows of `draws`; NaN draws, failed
    replicates, left out)."""
    x = np.asarray(draws, float)
    if np.isnan(x).any():
        return (np.array([np.nanquantile(r, alpha / 2) for r in x]),
                np.array([np.nanquantile(r, 1 - alpha / 2) for r in x]))
    q = np.quantile(x, [alpha / 2, 1 - alpha / 2], axis=1)
    return q[0], q[1]


def invert(theta: np.ndarray, qlo: np.ndarray, qhi: np.ndarray, observed: float) -> tuple[float, float, bool, bool]:
    """Lower and upper end of {θ : qlo(θ) <= d <= qhi(θ)}, NaN where open (with the open flags)."""
    open_low = bool(qhi[0] >= observed)  # even the smallest θ of the grid is compatible
    open_high = bool(qlo[-1] <= observed)  # even the largest is
    low = math.nan if open_low else _crossing(theta, qhi, observed, first=True)
    high = math.nan if open_high else _crossing(theta, qlo, observed, first=False)
    return low, high, open_low, open_high


def endpoints(theta: np.ndarray, draws: np.ndarray, observed: float, alpha: float = 0.05) -> tuple[float, float, bool, bool]:
    """The interval's ends from `draws` (len(theta), R): see invert."""
    return invert(np.asarray(theta, float), *quantile_curves(draws, alpha), observed)


def compatibility_interval(theta, draws, observed: float, alpha: float = 0.05, *,
                           rng: np.random.Generator, boot: int = 200) -> Interval:
    """The design-based interval and the MCSE of each end (SD over `boot` resamples of the
    replicates, the same resample at every θ)."""
    theta = np.asarray(theta, float)
    draws = np.asarray(draws, float)
    if theta.ndim != 1 or draws.shape[0] != theta.size or theta.size < 2:
        raise ValueError(f"draws must be (len(theta), replicates) with at least two θ; got {draws.shape}")
    if np.any(np.diff(theta) <= 0):
        raise ValueError("theta must increase")
    low, high, open_low, open_high = endpoints(theta, draws, observed, alpha)
    R = draws.shape[1]
    ends = np.array([endpoints(theta, draws[:, rng.integers(0, R, R)], observed, alpha)[:2] for _ in range(boot)])
    with np.errstate(invalid="ignore"):
        se = [float(np.nanstd(ends[:, j], ddof=1)) if np.isfinite(ends[:, j]).sum() > 1 else math.nan for j in (0, 1)]
    return Interval(low, high, se[0] if not open_low else math.nan, se[1] if not open_high else math.nan,
                    open_low, open_high)


def mc_pvalue(draws: np.ndarray, observed: float) -> tuple[float, float]:
    """Two-sided Monte Carlo p-value of `observed` under the simulated distribution (equal tails:
    2 x the smaller tail share, at most 1) and its MCSE."""
    x = np.asarray(draws, float)
    x = x[~np.isnan(x)]
    if not x.size:
        return math.nan, math.nan
    tail = min(np.mean(x <= observed), np.mean(x >= observed))
    return float(min(1.0, 2 * tail)), float(min(1.0, 2 * math.sqrt(tail * (1 - tail) / x.size)))


def naive_interval(mean_t: float, sd_t: float, n_t: float, mean_c: float, sd_c: float, n_c: float,
                   alpha: float = 0.05) -> tuple[float, float, float]:
    """Difference in means with its Welch t-interval from published summaries: (d, low, high)."""
    vt, vc = sd_t ** 2 / n_t, sd_c ** 2 / n_c
    se = math.sqrt(vt + vc)
    df = (vt + vc) ** 2 / (vt ** 2 / (n_t - 1) + vc ** 2 / (n_c - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    d = mean_t - mean_c
    return d, d - half, d + half


# ----------------------------------------------------------------------------- bias analysis

@dataclass(frozen=True)
class Surrogate:
    """E[D | θ, U] = a + b θ and the SD of D, fitted on one U setting's simulated draws; `misfit`
    is the largest |mean - fit| over θ in units of the mean's MCSE (about 2 or less: the line is
    within Monte Carlo error of the simulated means)."""

    a: float
    b: float
    sd: float
    misfit: float


def fit_surrogate(theta: np.ndarray, draws: np.ndarray, near: float | None = None, width: float = 3.0) -> Surrogate:
    """The line through the simulated means; with `near` (the published d) only over the θ whose
    mean lies within `width` SDs of it (at least the three nearest): floors and ceilings bend the
    curve far from where the data are."""
    theta = np.asarray(theta, float)
    means = np.array([np.nanmean(x) for x in draws])
    counts = np.array([np.isfinite(x).sum() for x in draws])
    sds = np.array([np.nanstd(x, ddof=1) for x in draws])
    use = np.ones(theta.size, bool)
    if near is not None:
        dist = np.abs(means - near) / sds
        use = dist <= width
        if use.sum() < 3:
            use = np.zeros(theta.size, bool)
            use[np.argsort(dist)[:3]] = True
    b, a = np.polyfit(theta[use], means[use], 1)
    misfit = float(np.max(np.abs(means[use] - (a + b * theta[use])) / (sds[use] / np.sqrt(counts[use]))))
    return Surrogate(float(a), float(b), float(np.sqrt(np.mean(sds[use] ** 2))), misfit)


def check_prior(spec: Any, key: str) -> dict[str, float]:
    """A prior setting, [name, parameters...] in PRIORS' order (e.g. [uniform, 0, 1.1], which a
    command-line override replaces whole) or {dist: name, <parameter>: value}: the parameters, or
    ValueError naming `key`."""
    if isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], str) and spec[0] in PRIORS:
        if len(spec) - 1 != len(PRIORS[spec[0]]):
            raise ValueError(f"{key}: a {spec[0]} prior is [{spec[0]}, {', '.join(PRIORS[spec[0]])}]; got {list(spec)}")
        spec = {"dist": spec[0], **dict(zip(PRIORS[spec[0]], spec[1:]))}
    elif isinstance(spec, (list, tuple)) and spec:
        raise ValueError(f"{key}.dist: got {spec[0]!r}; allowed: {sorted(PRIORS)}")
    if not isinstance(spec, Mapping) or "dist" not in spec:
        raise ValueError(f"{key}: must be [name, parameters...] or a mapping with `dist` ({sorted(PRIORS)}) and its "
                         f"parameters, got {spec!r}")
    dist = spec["dist"]
    if dist not in PRIORS:
        raise ValueError(f"{key}.dist: got {dist!r}; allowed: {sorted(PRIORS)}")
    need = PRIORS[dist]
    extra = sorted(set(spec) - {"dist", *need})
    if extra or any(p not in spec for p in need):
        raise ValueError(f"{key}: a {dist} prior takes {list(need)}; got {sorted(set(spec) - {'dist'})}")
    p = {}
    for name in need:
        v = spec[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key}.{name}: must be a finite number, got {v!r}")
        p[name] = float(v)
    bad = ((dist == "uniform" and not p["low"] < p["high"])
           or (dist == "normal" and not p["sd"] > 0) or (dist == "lognormal" and not p["sdlog"] > 0)
           or (dist == "triangular" and not p["low"] <= p["mode"] <= p["high"] or dist == "triangular" and p["low"] == p["high"]))
    if bad:
        rule = {"uniform": "low < high", "normal": "sd > 0", "lognormal": "sdlog > 0",
                "triangular": "low <= mode <= high, low < high"}[dist]
        raise ValueError(f"{key}: {rule} is required; got {p}")
    return {"dist": dist, **p}


def draw_prior(prior: Mapping[str, Any], size: int, rng: np.random.Generator) -> np.ndarray:
    d = prior["dist"]
    if d == "uniform":
        return rng.uniform(prior["low"], prior["high"], size)
    if d == "normal":
        return rng.normal(prior["mean"], prior["sd"], size)
    if d == "lognormal":
        return rng.lognormal(prior["meanlog"], prior["sdlog"], size)
    return rng.triangular(prior["low"], prior["mode"], prior["high"], size)


def interpolate(grid_x: np.ndarray, grid_y: np.ndarray, values: np.ndarray, x: np.ndarray,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear interpolation of values (len(grid_x), len(grid_y)) at the points (x, y), clipped to
    the grid; returns the values and whether each point lay outside the grid (clipped)."""
    gx, gy = np.asarray(grid_x, float), np.asarray(grid_y, float)
    outside = (x < gx[0]) | (x > gx[-1]) | (y < gy[0]) | (y > gy[-1])
    xc, yc = np.clip(x, gx[0], gx[-1]), np.clip(y, gy[0], gy[-1])
    i = np.clip(np.searchsorted(gx, xc, side="right") - 1, 0, gx.size - 2)
    j = np.clip(np.searchsorted(gy, yc, side="right") - 1, 0, gy.size - 2)
    tx = (xc - gx[i]) / (gx[i + 1] - gx[i])
    ty = (yc - gy[j]) / (gy[j + 1] - gy[j])
    v = (values[i, j] * (1 - tx) * (1 - ty) + values[i + 1, j] * tx * (1 - ty)
         + values[i, j + 1] * (1 - tx) * ty + values[i + 1, j + 1] * tx * ty)
    return v, outside


def bias_adjusted(observed: float, a: np.ndarray, b: np.ndarray, sd: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws of θ given the published d, one per draw of U (its surrogate a, b, sd): the
    systematic-error-only θ = (d - a) / b, and with random error θ = (d - e - a) / b, e ~ N(0, sd²)."""
    systematic = (observed - a) / b
    total = (observed - rng.normal(0.0, 1.0, a.shape) * sd - a) / b
    return systematic, total

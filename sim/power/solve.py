"""Root-finding on simulated power (as SimSolve of the R package SimDesign): the n per arm at which
a simulated power curve reaches a target, with an interval.

The rejection counts k_i out of R_i replicates at n_i per arm are fitted by a binomial GLM with
probit link, probit(power) = b0 + b1 x(n), with x(n) = sqrt(n) by default. sqrt, not log: for a
test whose statistic is asymptotically normal, power = Phi(delta sqrt(n S / 2) / sigma -
z_{1-alpha/2}) up to the far rejection tail, so probit(power) is linear in sqrt(n); over the
rct_planning grid (20-650 per arm) probit linear in log n does not fit (Pearson X^2/df median 19,
up to 29, on the curated 1000-replicate run, against median 0.7 for sqrt n; log-n solutions up to
54 % off the closed forms, sqrt-n ones within 12 %). The solution is x* = (z_target - b0)/b1. Its
95 % interval is Fieller's: the x where the fitted linear predictor's pointwise Wald interval
contains z_target, i.e. inverting the fitted curve's pointwise CI (``interval="delta"``: the delta
method on x*, symmetric on the x scale). When the Pearson X^2/df of the fit exceeds 1, the
coefficients' covariance is scaled by it (quasi-binomial), so a lack of fit widens the interval. No
n is reported (NaN and a reason) when power does not increase significantly with n (the Fieller set
is unbounded then), or when the solution lies outside the fitted grid (extrapolation).

At the smallest n the fitted curve can miss the exact power (the t distribution's heavy tails and
the random number analysed are not probit-linear in sqrt n), so a gap to a closed form there is
settled by simulating power directly at that n (sim.power.check). ``crossing`` is the older linear
interpolation between grid points.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats

from sim.power.closed import z

__all__ = ["PowerFit", "fit_probit_curve", "solve_simulated_n", "crossing"]

NAN = float("nan")

_X = {"sqrt": (np.sqrt, np.square), "log": (np.log, np.exp)}


@dataclasses.dataclass(frozen=True)
class PowerFit:
    """The n per arm where a fitted simulated power curve reaches a target.

    n, low, high: the solution and its interval (NaN unless status == "fitted"); status one of
    "fitted", "below the grid", "beyond the grid" (the solution lies outside the grid n: not
    reported, `n_curve` holds the extrapolated value), "not increasing" (power does not increase
    significantly with n, e.g. effect 0), "too few points" (fewer than 3 grid n, or fewer than 2 with
    power strictly between 0 and 1), "no fit" (separation); reason: a
    sentence for the notes ('' when fitted and unremarkable); coef (b0, b1) and cov (scaled by
    `dispersion` when > 1) of probit(power) = b0 + b1 x(n); dispersion: Pearson X^2/df; gof_p: its
    chi-square p-value (NaN without residual df)."""

    n: float
    low: float
    high: float
    status: str
    reason: str = ""
    n_curve: float = NAN
    coef: tuple[float, float] = (NAN, NAN)
    cov: np.ndarray | None = None
    dispersion: float = NAN
    gof_p: float = NAN


def _no(status: str, reason: str, **kw) -> PowerFit:
    return PowerFit(NAN, NAN, NAN, status, reason, **kw)


def fit_probit_curve(ns: Sequence[float], successes: Sequence[float], trials: Sequence[float], x: str = "sqrt"):
    """The statsmodels GLM (binomial family, probit link) of the rejection counts on x(n) =
    sqrt(n) or log(n): endog the (successes, failures) pairs, exog (1, x(n)). Returns the fitted
    results (warnings of perfect separation propagate)."""
    import statsmodels.api as sm

    fwd = _X[x][0]
    k, r = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    exog = sm.add_constant(fwd(np.asarray(ns, dtype=float)), has_constant="add")
    family = sm.families.Binomial(link=sm.families.links.Probit())
    return sm.GLM(np.column_stack([k, r - k]), exog, family=family).fit()


def solve_simulated_n(ns: Sequence[float], successes: Sequence[float], trials: Sequence[float], target: float, *,
                      level: float = 0.95, x: str = "sqrt", interval: str = "fieller",
                      overdispersion: bool = True) -> PowerFit:
    """The n per arm at which the simulated power reaches `target`, from the rejection counts
    `successes` out of `trials` replicates at each grid n `ns` (see the module docstring: a probit
    GLM on x(n), solved in closed form, Fieller or delta-method interval at `level`; with
    `overdispersion` the covariance is scaled by max(1, Pearson X^2/df)). The interval is for the
    continuous solution; the table rounds all three up."""
    if x not in _X:
        raise ValueError(f"x must be one of {list(_X)}, got {x!r}")
    if interval not in ("fieller", "delta"):
        raise ValueError(f"interval must be 'fieller' or 'delta', got {interval!r}")
    if not 0 < target < 1 or not 0 < level < 1:
        raise ValueError(f"target and level must be in (0, 1), got {target!r}, {level!r}")
    ns, k, r = (np.asarray(v, dtype=float) for v in (ns, successes, trials))
    if not (ns.shape == k.shape == r.shape) or ns.ndim != 1:
        raise ValueError("ns, successes and trials must be 1-d of one length")
    ok = np.isfinite(ns) & np.isfinite(k) & np.isfinite(r) & (r > 0)
    ns, k, r = ns[ok], k[ok], r[ok]
    if np.any(ns <= 0) or np.any(k < 0) or np.any(k > r):
        raise ValueError("need n > 0 and 0 <= successes <= trials")
    grid = np.unique(ns)
    if grid.size < 3:
        return _no("too few points", f"{grid.size} grid n with replicates (a fit needs 3)")
    if np.all(k == r):
        return _no("below the grid", f"every replicate rejected at every n (<= {grid[0]:g})")
    if np.all(k == 0):
        return _no("beyond the grid", f"no replicate rejected at any n (largest n {grid[-1]:g})")
    inner = np.unique(ns[(k > 0) & (k < r)]).size
    if inner < 2:
        return _no("too few points", f"{inner} grid n with power strictly between 0 and 1 (the curve needs 2)")
    fwd, inv = _X[x]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit_probit_curve(ns, k, r, x)
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught) or not res.converged:
        return _no("no fit", "the probit fit did not converge or is not identified (separation)")
    b0, b1 = (float(v) for v in res.params)
    df = float(res.df_resid)
    phi = float(res.pearson_chi2 / df) if df > 0 else NAN
    gof = float(stats.chi2.sf(res.pearson_chi2, df)) if df > 0 else NAN
    cov = np.asarray(res.cov_params(), dtype=float) * (max(1.0, phi) if overdispersion and df > 0 else 1.0)
    info = dict(coef=(b0, b1), cov=cov, dispersion=phi, gof_p=gof)
    zc = z(1 - (1 - level) / 2)
    slope_z = b1 / math.sqrt(cov[1, 1])
    if not slope_z > zc:
        return _no("not increasing", f"power does not increase with n (probit slope {b1:.3g}, z = {slope_z:.2f} "
                                     f"<= {zc:.2f}): the curve cannot be solved", **info)
    q = z(target)
    theta = (q - b0) / b1
    x_lo, x_hi = fwd(grid[0]), fwd(grid[-1])
    n_curve = float(inv(theta)) if (x == "log" or theta > 0) else 0.0
    if theta < x_lo:
        return _no("below the grid", f"the fitted curve reaches {target:g} at n = {n_curve:.1f}, below the smallest "
                                     f"grid n {grid[0]:g} (extrapolation: not reported)", n_curve=n_curve, **info)
    if theta > x_hi:
        return _no("beyond the grid", f"the fitted curve reaches {target:g} at n = {n_curve:.1f}, beyond the largest "
                                      f"grid n {grid[-1]:g} (extrapolation: not reported)", n_curve=n_curve, **info)
    if interval == "fieller":
        # {t: (b0 + b1 t - q)^2 <= zc^2 Var(b0 + b1 t)}: A t^2 + B t + C <= 0, A > 0 by the slope check
        a = b1 ** 2 - zc ** 2 * cov[1, 1]
        b = 2 * (b1 * (b0 - q) - zc ** 2 * cov[0, 1])
        c = (b0 - q) ** 2 - zc ** 2 * cov[0, 0]
        half = math.sqrt(max(b * b - 4 * a * c, 0.0))
        t_lo, t_hi = (-b - half) / (2 * a), (-b + half) / (2 * a)
    else:
        g = np.array([-1.0 / b1, -theta / b1])
        se = math.sqrt(float(g @ cov @ g))
        t_lo, t_hi = theta - zc * se, theta + zc * se
    lo = float(inv(t_lo)) if (x == "log" or t_lo > 0) else 0.0
    hi = float(inv(t_hi))
    notes = []
    if lo < grid[0] or hi > grid[-1]:
        notes.append("interval reaches beyond the grid")
    if math.isfinite(gof) and gof < 0.01:
        notes.append(f"lack of fit (Pearson X2/df = {phi:.1f}, interval widened)")
    return PowerFit(n_curve, lo, hi, "fitted", "; ".join(notes), n_curve=n_curve, **info)


def crossing(ns: Sequence[float], powers: Sequence[float], target: float) -> tuple[float, str]:
    """Smallest n reaching `target` on a simulated power curve: the first grid point at or above
    target, linearly interpolated from the grid point before it. Returns (n, status)."""
    ns, powers = np.asarray(ns, dtype=float), np.asarray(powers, dtype=float)
    order = np.argsort(ns)
    ns, powers = ns[order], powers[order]
    hit = np.flatnonzero(powers >= target)
    if hit.size == 0:
        return NAN, "not reached"
    i = int(hit[0])
    if i == 0:
        return float(ns[0]), "at or below the smallest grid n"
    n0, n1, p0, p1 = ns[i - 1], ns[i], powers[i - 1], powers[i]
    return float(n0 + (target - p0) * (n1 - n0) / (p1 - p0)), "interpolated"

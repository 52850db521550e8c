"""Closed-form sample size and power for a two-arm parallel trial (pure functions, no state).

All sample sizes are PER ARM and two-sided at level ``alpha``.

Change-score t-test (normal approximation; e.g. Chow, Shao & Wang, Sample Size Calculations in
Clinical Research, 3rd ed., sec. 3.2):

    n = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd^2 / delta^2          (analysable patients per arm)

``exact=True`` instead uses the noncentral t distribution of the pooled-variance (Student)
t statistic, df = n1 + n2 - 2, noncentrality delta / (sd sqrt(1/n1 + 1/n2)); power counts both
rejection tails, as statsmodels.stats.power.TTestIndPower.

ANCOVA on the follow-up outcome adjusted for baseline (Borm, Fransen & Lemmens 2007, J Clin
Epidemiol 60:1234): the residual variance is sd_post^2 (1 - rho^2), rho the pre-post correlation
and sd_post the SD of the follow-up outcome (sd_post * sqrt(1 - rho^2) is its SD given baseline), so

    n_ancova = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd_post^2 (1 - rho^2) / delta^2

(the exact version loses one more df for the baseline slope: df = n1 + n2 - 3).

Loss to follow-up: an outcome is measured only in patients seen at the visit (alive and not
missing it). With a share ``survival`` analysable (the same in both arms; the planning table
passes the share seen), ``n`` analysable patients need ``n / survival`` randomised ones; every
``n_per_arm_*`` takes ``survival`` for this inflation, every ``power_*`` takes the number
randomised and ``survival`` and works on the expected number analysable (n x survival).

Informative loss: the patients seen at a visit (alive, and not missing it) started healthier, so
their change has another SD, and the effect among them another size, than among all survivors.
``closed_ttest_informative`` plans the complete-case t-test with the quantities of the patients
seen (SD of the change among them, the difference of the two arms' mean change among them) and
inflates by the share seen, instead of the share alive.

Wilcoxon rank-sum test (Noether 1987, J Am Stat Assoc 82:645): with P = P(Y1 > Y0) + P(Y1 = Y0)/2
for a treated and a control patient drawn independently and c = 1/2 of the patients treated,

    n_total = (z_{1-alpha/2} + z_{1-beta})^2 / (12 c (1 - c) (P - 1/2)^2),   n per arm = n_total / 2

(``n_per_arm_noether``). The formula takes the null variance of the Mann-Whitney U for continuous
data, mn(N + 1)/12. With ties (outcomes on stepped scales) the tie-corrected test's null variance is
smaller by the factor 1 - sum_k pi_k^3 (pi_k the pooled share of the k-th distinct value; Lehmann
1975, Nonparametrics, ch. 1), and Noether's n shrinks by the same factor (``tie_factor=``);
without it the formula is conservative for tied data.

Planning with a simulation (experiment rct_planning): ``reference_quantities`` estimates the
inputs of the closed forms (SD of the change among survivors and among the patients seen,
follow-up SD, pre-post correlation, survival, the share seen, P(Y1 > Y0) and the ties) from one
large cohort of the generator; ``solve_simulated_n`` solves a simulated power curve for the n
reaching a target, with an interval (``crossing`` is the older linear interpolation between grid
points); ``sample_size_table`` sets the two side by side.

One MCID against a standardised effect (``standardised_n_table``): the outcomes' MCIDs are different
shares of their SDs (sim.report.units), so the n for one MCID differs between outcomes for that
reason alone. Beside it the same closed forms (noncentral t and ANCOVA, divided by the share seen)
at an effect of ``MODERATE_SD`` = 0.5 SD of the change (a conventional 'moderate' effect; the SD is
the unit of ``cohort.effect_sd``), with the same planning inputs, compare the outcomes on one
footing: for the t-test n then depends on the outcome only through the share seen and the ratio of
the planning SD to the unit, for ANCOVA also through the pre-post correlation.

Root-finding on simulated power (as SimSolve of the R package SimDesign): the rejection counts k_i
out of R_i replicates at n_i per arm are fitted by a binomial GLM with probit link,
probit(power) = b0 + b1 x(n), with x(n) = sqrt(n) by default. sqrt, not log: for a test whose
statistic is asymptotically normal, power = Phi(delta sqrt(n S / 2) / sigma - z_{1-alpha/2}) up to
the far rejection tail, so probit(power) is linear in sqrt(n); over the rct_planning grid
(20-650 per arm) probit linear in log n does not fit (Pearson X^2/df median 19, up to 29, on the
curated 1000-replicate run, against median 0.7 for sqrt n; log-n solutions up to 54 % off the
closed forms, sqrt-n ones within 12 %). The solution is
x* = (z_target - b0)/b1. Its 95 % interval is Fieller's: the x where the fitted linear
predictor's pointwise Wald interval contains z_target, i.e. inverting the fitted curve's pointwise
CI (``interval="delta"``: the delta method on x*, symmetric on the x scale). When the Pearson
X^2/df of the fit exceeds 1, the coefficients' covariance is scaled by it (quasi-binomial), so a
lack of fit widens the interval. No n is reported (NaN and a reason) when power does not increase
significantly with n (the Fieller set is unbounded then), or when the solution lies outside the
fitted grid (extrapolation).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from sim.cohort.generate import Design, generate

__all__ = ["n_per_arm_ttest", "power_ttest", "n_per_arm_ancova", "power_ancova", "n_per_arm_noether",
           "superiority", "z", "crossing", "PowerFit", "solve_simulated_n", "reference_quantities",
           "sample_size_table", "GAP_PAIRS", "gaps", "largest_gap", "MODERATE_SD", "standardised_n_table"]

NAN = float("nan")


def z(p: float) -> float:
    """The standard normal quantile."""
    return float(special.ndtri(p))


def _check(delta: float, sd: float, alpha: float, survival: float, power: float | None = None) -> None:
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta must be a finite non-zero number, got {delta!r}")
    if not (isinstance(sd, (int, float)) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be a finite number > 0, got {sd!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0 < survival <= 1:
        raise ValueError(f"survival must be in (0, 1], got {survival!r}")
    if power is not None and not alpha / 2 < power < 1:
        raise ValueError(f"power must be in (alpha/2, 1), got {power!r}")


def _out(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _power_t(n1, n2, delta: float, sd: float, alpha: float, exact: bool, df_lost: int):
    n1, n2 = np.asarray(n1, dtype=float), np.asarray(n2, dtype=float)
    se = sd * np.sqrt(1.0 / n1 + 1.0 / n2)
    ncp = abs(delta) / se
    if not exact:
        q = z(1 - alpha / 2)
        return _out(special.ndtr(ncp - q) + special.ndtr(-ncp - q))
    df = n1 + n2 - 2 - df_lost
    with np.errstate(invalid="ignore", divide="ignore"):
        dfp = np.where(df > 0, df, np.nan)
        q = stats.t.ppf(1 - alpha / 2, dfp)
        return _out(stats.nct.sf(q, dfp, ncp) + stats.nct.cdf(-q, dfp, ncp))


def power_ttest(n, delta: float, sd: float, alpha: float = 0.05, *, exact: bool = True,
                ratio=1.0, survival: float = 1.0):
    """Power of the two-sided two-sample t-test of the change score (n and ratio may be arrays:
    the result is then an array of the broadcast shape).

    n: patients randomised to arm 1 (arm 2: ratio x n); survival: share alive at the visit (the
    analysable numbers are n x survival and ratio x n x survival). exact=True: noncentral t
    (scipy.stats.nct, df = n1 + n2 - 2, both tails); exact=False: normal approximation.
    """
    _check(delta, sd, alpha, survival)
    if not np.all(np.asarray(n) > 0) or not np.all(np.asarray(ratio) > 0):
        raise ValueError(f"n and ratio must be > 0, got n={n!r}, ratio={ratio!r}")
    n1 = np.asarray(n, dtype=float) * survival
    return _power_t(n1, n1 * ratio, delta, sd, alpha, exact, 0)


def _solve_n(power_fn, target: float, lo: float) -> float:
    """The n in [lo, inf) where power_fn(n) = target (lo itself if its power is already enough)."""
    if power_fn(lo) >= target:
        return lo
    hi = max(4.0, lo * 2)
    while power_fn(hi) < target:
        hi *= 2
        if hi > 1e9:
            raise ValueError("power target not reachable")
    return float(optimize.brentq(lambda m: power_fn(m) - target, lo, hi, xtol=1e-10))


def n_per_arm_ttest(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, *, exact: bool = False,
                    survival: float = 1.0) -> float:
    """Patients to randomise per arm (not rounded up) for the change-score t-test.

    exact=False: n = 2 (z_{1-alpha/2} + z_power)^2 sd^2 / delta^2 / survival. exact=True: the n
    (continuous) at which the noncentral-t power equals `power`, divided by survival.
    """
    _check(delta, sd, alpha, survival, power)
    if not exact:
        n = 2.0 * (z(1 - alpha / 2) + z(power)) ** 2 * sd ** 2 / delta ** 2
    else:
        n = _solve_n(lambda m: _power_t(m, m, delta, sd, alpha, True, 0), power, 2.0)
    return n / survival


def power_ancova(n, delta: float, sd_post: float, rho: float, alpha: float = 0.05, *, exact: bool = True,
                 survival: float = 1.0) -> float:
    """Power of the baseline-adjusted ANCOVA (equal arms): the t-test power with residual SD
    sd_post sqrt(1 - rho^2) and, if exact, one df less."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho!r}")
    _check(delta, sd_post, alpha, survival)
    if not np.all(np.asarray(n) > 0):
        raise ValueError(f"n must be > 0, got {n!r}")
    n1 = np.asarray(n, dtype=float) * survival
    return _power_t(n1, n1, delta, sd_post * math.sqrt(1 - rho ** 2), alpha, exact, 1)


def n_per_arm_ancova(delta: float, sd_post: float, rho: float, alpha: float = 0.05, power: float = 0.8, *,
                     exact: bool = False, survival: float = 1.0) -> float:
    """Patients to randomise per arm for ANCOVA: n_per_arm_ttest with sd_post^2 (1 - rho^2)
    (normal approximation; exact=True solves the noncentral t with df = 2n - 3)."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho!r}")
    _check(delta, sd_post, alpha, survival, power)
    sd_res = sd_post * math.sqrt(1 - rho ** 2)
    if not exact:
        return n_per_arm_ttest(delta, sd_res, alpha, power, exact=False, survival=survival)
    n = _solve_n(lambda m: _power_t(m, m, delta, sd_res, alpha, True, 1), power, 2.5)
    return n / survival


def n_per_arm_noether(p_superiority: float, alpha: float = 0.05, power: float = 0.8, *, survival: float = 1.0,
                      tie_factor: float = 1.0) -> float:
    """Patients to randomise per arm for the two-sided Wilcoxon rank-sum test (Noether 1987), 1:1:
    n_total = (z_{1-alpha/2} + z_power)^2 / (12 c (1 - c) (P - 1/2)^2) with c = 1/2, per arm
    n_total / 2, times `tie_factor` (1 - sum pi_k^3: the tie-corrected null variance; 1 = continuous
    data, Noether's formula), divided by `survival` (the share analysed)."""
    if not (isinstance(p_superiority, (int, float)) and 0 <= p_superiority <= 1 and p_superiority != 0.5):
        raise ValueError(f"p_superiority must be in [0, 1] and not 1/2, got {p_superiority!r}")
    if not 0 < tie_factor <= 1:
        raise ValueError(f"tie_factor must be in (0, 1], got {tie_factor!r}")
    _check(1.0, 1.0, alpha, survival, power)
    c = 0.5
    n_total = (z(1 - alpha / 2) + z(power)) ** 2 / (12 * c * (1 - c) * (p_superiority - 0.5) ** 2)
    return n_total / 2 * tie_factor / survival


def superiority(treated: np.ndarray, control: np.ndarray) -> tuple[float, float, float]:
    """(P, P_tie, tie factor) of two independent samples: P = P(T > C) + P(T = C)/2 (the
    Mann-Whitney U / (n_t n_c)), P_tie = P(T = C), and 1 - sum_k pi_k^3 with pi_k the share of the
    k-th distinct value in the 1:1 mixture of the two (values equal when exactly equal, as the test
    ranks them). -inf is a value like any other (worst_rank's 'worse than every change')."""
    t, c = np.asarray(treated, dtype=float), np.asarray(control, dtype=float)
    if t.size == 0 or c.size == 0 or np.isnan(t).any() or np.isnan(c).any():
        raise ValueError("superiority: need non-empty samples without NaN")
    values, inverse = np.unique(np.concatenate([t, c]), return_inverse=True)
    a = np.bincount(inverse[:t.size], minlength=values.size) / t.size  # P(T = v_k)
    b = np.bincount(inverse[t.size:], minlength=values.size) / c.size  # P(C = v_k)
    below = np.concatenate([[0.0], np.cumsum(b)[:-1]])  # P(C < v_k)
    tie = float(a @ b)
    pi = (a + b) / 2
    return float(a @ below) + tie / 2, tie, float(1 - np.sum(pi ** 3))


# --------------------------------------------------------------------------- root-finding on simulated power
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


# --------------------------------------------------------------------------- planning with a simulation
def reference_quantities(design: Design, n: int, rng: np.random.Generator, outcomes: Sequence[str],
                         times: Sequence[str]) -> pd.DataFrame:
    """From one large cohort (the design at n patients, every patient under both arms): per
    outcome x time the survival to the visit, the SD of the change among survivors (pooled over
    arms: sqrt of the mean of the two potential-outcome variances), the SD of the follow-up value
    and the pooled within-arm pre-post correlation, the effect; and, for the complete case, the
    share seen at the visit (mean of the arms), the SD of the change among the patients seen and
    the difference of the arms' mean change among them (`effect_seen`); for the Wilcoxon test,
    P(Y1 > Y0) + P(Y1 = Y0)/2 for a treated and a control patient seen (`p_superiority`, Y the
    potential change of independent patients), P(Y1 = Y0) (`p_tie`) and the tie factor
    1 - sum pi_k^3 (`tie_factor`), and the same two for worst_rank (every patient, the change of a
    patient not seen worse than every change: `p_superiority_worst_rank`, `tie_factor_worst_rank`)."""
    cohort = generate(dataclasses.replace(design, n=int(n)), rng)
    dirs = {o.name: o.direction() for o in design.model.outcomes}
    rows = []
    for name in outcomes:
        pre = np.asarray(cohort.columns[f"{name}_{design.model.baseline}"], dtype=float)
        for t in times:
            d0, d1 = cohort.potential_deltas[(name, t)]
            alive = ~np.isnan(d0) & ~np.isnan(d1)  # alive under both arms
            x = pre[alive]
            posts = [x + dirs[name] * d0[alive], x + dirs[name] * d1[alive]]
            var_change = (d0[alive].var(ddof=1) + d1[alive].var(ddof=1)) / 2
            var_post = (posts[0].var(ddof=1) + posts[1].var(ddof=1)) / 2
            cov = (np.cov(x, posts[0])[0, 1] + np.cov(x, posts[1])[0, 1]) / 2
            s0, s1 = cohort.seen[t]
            p_sup, p_tie, ties = superiority(d1[s1], d0[s0])
            worst0, worst1 = np.where(s0, d0, -np.inf), np.where(s1, d1, -np.inf)
            p_sup_wr, _, ties_wr = superiority(worst1, worst0)
            rows.append({"outcome": name, "timepoint": t, "delta": float(design.effect.get((name, t), NAN)),
                         "ate_reference": float(np.nanmean(d1 - d0)),
                         "survival": float(alive.mean()), "sd_change": math.sqrt(var_change),
                         "sd_post": math.sqrt(var_post), "rho": float(cov / math.sqrt(x.var(ddof=1) * var_post)),
                         "seen": float((s0.mean() + s1.mean()) / 2),
                         "sd_change_seen": math.sqrt((d0[s0].var(ddof=1) + d1[s1].var(ddof=1)) / 2),
                         "effect_seen": float(d1[s1].mean() - d0[s0].mean()),
                         "p_superiority": p_sup, "p_tie": p_tie, "tie_factor": ties,
                         "p_superiority_worst_rank": p_sup_wr, "tie_factor_worst_rank": ties_wr})
    return pd.DataFrame(rows)


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


def _table2_sd(study_outcomes: Mapping[str, Any], name: str, t: str) -> float:
    tab = study_outcomes.get(name, {}).get("table2")
    if not tab:
        return NAN
    return math.sqrt((tab["treated"][t][1] ** 2 + tab["control"][t][1] ** 2) / 2)


#: (simulated analysis, closed form) pairs whose relative gap the report and the answer quote
GAP_PAIRS = (("ttest", "closed_ttest_nct"), ("ancova", "closed_ancova_nct"), ("wilcoxon", "closed_wilcoxon"))


def sample_size_table(summary: pd.DataFrame, refs: Mapping[float, pd.DataFrame], analyses: Sequence[str],
                      targets: Sequence[float], alpha: float, study_outcomes: Mapping[str, Any], *,
                      death_strategy: str = "complete_case", x: str = "sqrt") -> pd.DataFrame:
    """One row per effect x outcome x time x target power: per analysis the simulated n per arm
    (`solve_simulated_n` on the `rejection` rows of a tidy summary with columns n_per_arm,
    effect_mcid, value and n: the counts are round(value x n) of n replicates) as `sim_<an>`,
    `sim_<an>_low`, `sim_<an>_high` (rounded up; NaN unless fitted) and `sim_<an>_status`, the
    reasons in `notes`; beside it the closed forms at the reference quantities `refs` (per effect):
    t and ANCOVA (normal and noncentral t), Wilcoxon (Noether, and with the tie factor), the t-test
    planned on the patients seen (informative loss) and, where the study has one, on the published
    Table 2 SD. Under `death_strategy` worst_rank the Wilcoxon closed forms take the worst-rank P
    and tie factor and analyse every randomised patient (no inflation)."""
    rej = summary[summary["measure"] == "rejection"]
    rows = []
    for eff, ref in refs.items():
        sub = rej[np.isclose(rej["effect_mcid"].astype(float), eff)]
        for r in ref.itertuples(index=False):
            cur = sub[(sub["outcome"] == r.outcome) & (sub["timepoint"] == r.timepoint)]
            for target in targets:
                row = {"effect_mcid": eff, "outcome": r.outcome, "timepoint": r.timepoint, "power": target,
                       "delta": r.delta}
                notes = []
                for an in analyses:
                    c = cur[cur["analysis"] == an]
                    if len(c):
                        reps = c["n"].astype(float).to_numpy()
                        fit = solve_simulated_n(c["n_per_arm"], np.round(c["value"].astype(float) * reps), reps,
                                                target, x=x)
                    else:
                        fit = _no("not run", "")
                    up = [float(math.ceil(v - 1e-9)) if math.isfinite(v) else NAN for v in (fit.n, fit.low, fit.high)]
                    row.update({f"sim_{an}": up[0], f"sim_{an}_low": up[1], f"sim_{an}_high": up[2],
                                f"sim_{an}_status": fit.status})
                    if fit.reason or fit.status != "fitted":
                        notes.append(f"{an}: {fit.status}" + (f" ({fit.reason})" if fit.reason else ""))
                kw = dict(alpha=alpha, power=target, survival=r.seen)  # the analysable: seen at the visit
                row["closed_ttest"] = math.ceil(n_per_arm_ttest(r.delta, r.sd_change, **kw))
                row["closed_ttest_nct"] = math.ceil(n_per_arm_ttest(r.delta, r.sd_change, exact=True, **kw))
                row["closed_ancova"] = math.ceil(n_per_arm_ancova(r.delta, r.sd_post, r.rho, **kw))
                row["closed_ancova_nct"] = math.ceil(n_per_arm_ancova(r.delta, r.sd_post, r.rho, exact=True, **kw))
                worst = death_strategy == "worst_rank"
                p_sup = r.p_superiority_worst_rank if worst else r.p_superiority
                ties = r.tie_factor_worst_rank if worst else r.tie_factor
                share = 1.0 if worst else r.seen
                wkw = dict(alpha=alpha, power=target, survival=share)
                row["closed_wilcoxon"] = (math.ceil(n_per_arm_noether(p_sup, **wkw)) if p_sup != 0.5 else NAN)
                row["closed_wilcoxon_ties"] = (math.ceil(n_per_arm_noether(p_sup, tie_factor=ties, **wkw))
                                               if p_sup != 0.5 else NAN)
                row["closed_ttest_informative"] = (
                    math.ceil(n_per_arm_ttest(r.effect_seen, r.sd_change_seen, alpha=alpha, power=target,
                                              survival=r.seen)) if r.effect_seen != 0 else NAN)
                sd2 = _table2_sd(study_outcomes, r.outcome, r.timepoint)
                row["closed_ttest_table2sd"] = (math.ceil(n_per_arm_ttest(r.delta, sd2, **kw))
                                                if math.isfinite(sd2) else NAN)
                row.update(sd_change=r.sd_change, sd_change_table2=sd2, sd_post=r.sd_post, rho=r.rho,
                           survival=r.survival, seen=r.seen, sd_change_seen=r.sd_change_seen,
                           effect_seen=r.effect_seen, p_superiority=p_sup, tie_factor=ties,
                           notes="; ".join(notes))
                rows.append(row)
    return pd.DataFrame(rows)


#: a conventional 'moderate' standardised effect (Cohen's d = 0.5), in SD units of the change
MODERATE_SD = 0.5


def standardised_n_table(refs: Mapping[float, pd.DataFrame], units: pd.DataFrame, targets: Sequence[float],
                         alpha: float, sd_effect: float = MODERATE_SD) -> pd.DataFrame:
    """Closed-form patients to randomise per arm for one MCID beside those for `sd_effect` SD of
    the change, per outcome x time (the rows of `units`: outcome, timepoint, mcid, sd_change,
    mcid_in_sd, as sim.report.units.effect_units) and target power.

    Both use the planning inputs of the reference cohort at one MCID (`refs[1.0]`, else at the
    largest effect in `refs`): the SD of the change among survivors, the follow-up SD, the pre-post
    correlation and the share seen, exactly as closed_ttest_nct / closed_ancova_nct of
    sample_size_table (noncentral t; ANCOVA with df = 2n - 3; divided by the share seen, rounded
    up). The effects: delta = one MCID (`mcid`), and delta = sd_effect x `sd_change` of `units`
    (the unit of cohort.effect_sd). Columns: those of `units`, power, n_ttest_one_mcid,
    n_ttest_<sd_effect>sd, n_ancova_one_mcid, n_ancova_<sd_effect>sd."""
    if not refs:
        raise ValueError("standardised_n_table: no reference quantities (the grid has no effect > 0)")
    if not (isinstance(sd_effect, (int, float)) and math.isfinite(sd_effect) and sd_effect > 0):
        raise ValueError(f"sd_effect must be a number > 0, got {sd_effect!r}")
    ref = refs[1.0] if 1.0 in refs else refs[max(refs)]
    ref = ref.set_index(["outcome", "timepoint"])
    tag = f"{sd_effect:g}sd"
    rows = []
    for target in targets:
        for u in units.itertuples(index=False):
            r = ref.loc[(u.outcome, u.timepoint)]
            kw = dict(alpha=alpha, power=target, exact=True, survival=float(r.seen))
            row = {**u._asdict(), "power": target}
            for name, delta in (("one_mcid", float(u.mcid)), (tag, sd_effect * float(u.sd_change))):
                row[f"n_ttest_{name}"] = math.ceil(n_per_arm_ttest(delta, float(r.sd_change), **kw))
                row[f"n_ancova_{name}"] = math.ceil(n_per_arm_ancova(delta, float(r.sd_post), float(r.rho), **kw))
            rows.append(row)
    cols = [*units.columns, "power", "n_ttest_one_mcid", f"n_ttest_{tag}", "n_ancova_one_mcid", f"n_ancova_{tag}"]
    return pd.DataFrame(rows)[cols]


def gaps(ss: pd.DataFrame, pairs: Sequence[tuple[str, str]] = GAP_PAIRS) -> pd.DataFrame:
    """Per row of a sample-size table and (analysis, closed form) pair with both numbers: the
    simulated N and its interval, the closed form, the relative gap sim / closed - 1, and whether
    the closed form lies inside the simulated interval. Columns effect_mcid, outcome, timepoint,
    power, analysis, closed, sim, sim_low, sim_high, closed_n, gap, inside."""
    out = []
    for an, closed in pairs:
        if f"sim_{an}" not in ss.columns or closed not in ss.columns:
            continue
        d = ss.dropna(subset=[f"sim_{an}", closed])
        out.append(pd.DataFrame({
            "effect_mcid": d["effect_mcid"], "outcome": d["outcome"], "timepoint": d["timepoint"],
            "power": d["power"], "analysis": an, "closed": closed, "sim": d[f"sim_{an}"],
            "sim_low": d[f"sim_{an}_low"], "sim_high": d[f"sim_{an}_high"], "closed_n": d[closed].astype(float),
            "gap": d[f"sim_{an}"] / d[closed].astype(float) - 1,
            "inside": (d[f"sim_{an}_low"] <= d[closed]) & (d[closed] <= d[f"sim_{an}_high"])}))
    cols = ["effect_mcid", "outcome", "timepoint", "power", "analysis", "closed", "sim", "sim_low", "sim_high",
            "closed_n", "gap", "inside"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def largest_gap(ss: pd.DataFrame, pairs: Sequence[tuple[str, str]] = GAP_PAIRS) -> pd.Series | None:
    """The row of `gaps` with the largest |gap| (None without any comparable pair)."""
    g = gaps(ss, pairs)
    return None if g.empty else g.loc[g["gap"].abs().idxmax()]

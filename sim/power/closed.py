"""Closed-form sample size and power for a two-arm parallel trial (pure functions, no state).

All sample sizes are PER ARM and two-sided at level ``alpha``.

Change-score t-test (normal approximation; e.g. Chow, Shao & Wang, Sample Size Calculations in
Clinical Research, 3rd ed., sec. 3.2):

    n = 2 (z_{1-alpha/2} + z_{1-beta})^2 sd^2 / delta^2          (analysable patients per arm)

``exact=True`` instead uses the noncentral t distribution of the pooled-variance (Student)
t statistic, df = n1 + n2 - 2, noncentrality delta / (sd sqrt(1/n1 + 1/n2)); power counts both
rejection tails, as statsmodels.stats.power.TTestIndPower (the tail against the effect adds less
than 1e-4 at the powers planned for, so it is also the power to reject in the effect's direction).

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

Wilcoxon rank-sum test (Noether 1987, J Am Stat Assoc 82:645): with P = P(Y1 > Y0) + P(Y1 = Y0)/2
for a treated and a control patient drawn independently and c = 1/2 of the patients treated,

    n_total = (z_{1-alpha/2} + z_{1-beta})^2 / (12 c (1 - c) (P - 1/2)^2),   n per arm = n_total / 2

(``n_per_arm_noether``). The formula takes the null variance of the Mann-Whitney U for continuous
data, mn(N + 1)/12. With ties (outcomes on stepped scales) the tie-corrected test's null variance is
smaller by the factor 1 - sum_k pi_k^3 (pi_k the pooled share of the k-th distinct value; Lehmann
1975, Nonparametrics, ch. 1), and Noether's n shrinks by the same factor (``tie_factor=``);
without it the formula is conservative for tied data.

Death-ranks-worst composite (``composite_superiority``): deaths before the visit rank below every
change, earlier deaths lower. With a share q of the ranked patients dead in each arm (equal at
hazard ratio 1) and death independent of the change,

    P_comp - 1/2 = (1 - q)^2 (P_seen - 1/2)

(both seen: P_seen; one dead: the survivor wins; both dead: 1/2), so Noether's n among the ranked
grows by (1 - q)^-4: deaths that the treatment does not change dilute the composite.

Multiplicity (``bonferroni_factor``): k comparisons each at alpha / k multiply the normal-theory n
by ((z_{1-alpha/(2k)} + z_{1-beta}) / (z_{1-alpha/2} + z_{1-beta}))^2, whatever the effect.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

__all__ = ["z", "power_ttest", "n_per_arm_ttest", "power_ancova", "n_per_arm_ancova", "n_per_arm_noether",
           "superiority", "composite_superiority", "bonferroni_factor"]

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


def composite_superiority(p_seen: float, q: float) -> float:
    """P(T > C) + P(T = C)/2 of the death-ranks-worst composite when a share q of the ranked
    patients of each arm is dead (hazard ratio 1, death independent of the change): 1/2 +
    (1 - q)^2 (p_seen - 1/2), p_seen that of the changes of the patients seen. Why: at equal
    mortality the pairs with a death carry no information on the treatment, so the composite's
    signal shrinks by (1 - q)^2."""
    if not (isinstance(p_seen, (int, float)) and 0 <= p_seen <= 1):
        raise ValueError(f"p_seen must be in [0, 1], got {p_seen!r}")
    if not (isinstance(q, (int, float)) and 0 <= q < 1):
        raise ValueError(f"q must be in [0, 1), got {q!r}")
    return 0.5 + (1 - q) ** 2 * (p_seen - 0.5)


def bonferroni_factor(k: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """How many times the (normal-theory) n per arm grows when each of k comparisons is tested at
    alpha / k instead of alpha (two-sided): ((z_{1-alpha/(2k)} + z_power) / (z_{1-alpha/2} +
    z_power))^2, the same for every effect and SD."""
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not alpha / 2 < power < 1:
        raise ValueError(f"power must be in (alpha/2, 1), got {power!r}")
    return ((z(1 - alpha / (2 * k)) + z(power)) / (z(1 - alpha / 2) + z(power))) ** 2

"""The inversion behind design-based compatibility intervals (sim.methods.sensitivity.compatibility), on designs
whose answer is known in closed form: D(θ) = bias + slope θ + noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.methods.sensitivity import compatibility as M

THETA = np.arange(-4.0, 4.01, 0.25)
R = 4000


def _draws(rng, bias=0.0, slope=1.0, sd=1.0, reps=R):
    z = rng.standard_normal(reps)  # common random numbers: replicate r is the same noise at every θ
    return bias + slope * THETA[:, None] + sd * z[None, :]


def test_normal_design_gives_the_normal_interval():
    """D(θ) ~ N(θ, 1): the interval is d ± 1.96 to within its reported MCSE (3 x), and the MCSE is
    the size the quantile's sampling error predicts."""
    rng = np.random.default_rng(1)
    d = 0.7
    iv = M.compatibility_interval(THETA, _draws(rng), d, rng=np.random.default_rng(2))
    z = stats.norm.ppf(0.975)
    predicted = math.sqrt(0.025 * 0.975) / (stats.norm.pdf(z) * math.sqrt(R))  # SE of a sample quantile
    for end, want, se in ((iv.low, d - z, iv.low_mcse), (iv.high, d + z, iv.high_mcse)):
        assert se == pytest.approx(predicted, rel=0.3)
        assert abs(end - want) <= 3 * se
    assert not iv.open_low and not iv.open_high


def test_slope_and_bias_are_inverted():
    """D(θ) ~ N(1 + 0.5 θ, 0.5²): θ is compatible when |d - 1 - 0.5 θ| <= 1.96 x 0.5."""
    rng = np.random.default_rng(3)
    d = 1.4
    iv = M.compatibility_interval(THETA, _draws(rng, bias=1.0, slope=0.5, sd=0.5), d, rng=np.random.default_rng(4))
    z = stats.norm.ppf(0.975)
    assert abs(iv.low - (d - 1 - 0.5 * z) / 0.5) <= 3 * iv.low_mcse
    assert abs(iv.high - (d - 1 + 0.5 * z) / 0.5) <= 3 * iv.high_mcse


def test_an_interval_the_grid_does_not_bracket_is_open_ended_not_clipped():
    rng = np.random.default_rng(5)
    iv = M.compatibility_interval(THETA, _draws(rng), 3.5, rng=np.random.default_rng(6))
    assert iv.open_high and math.isnan(iv.high) and not iv.open_low and iv.low == pytest.approx(3.5 - 1.96, abs=0.2)
    iv = M.compatibility_interval(THETA, _draws(rng), -3.9, rng=np.random.default_rng(6))
    assert iv.open_low and math.isnan(iv.low)


def _coverage(interval_fn, bias: float, theta_true: float, n_published: int = 800) -> tuple[float, float]:
    """Share of 'published' estimates drawn from the design at theta_true whose interval covers it
    (the design's distributions from other, independent replicates)."""
    rng = np.random.default_rng(7)
    draws = _draws(rng, bias=bias)
    k = int(np.argmin(np.abs(THETA - theta_true)))
    published = bias + theta_true + rng.standard_normal(n_published)
    curves = M.quantile_curves(draws)
    hits = []
    for d in published:
        low, high = interval_fn(curves, d)
        hits.append((math.isnan(low) or low <= theta_true) and (math.isnan(high) or theta_true <= high))
    cover = float(np.mean(hits))
    assert THETA[k] == pytest.approx(theta_true)
    return cover, math.sqrt(0.95 * 0.05 / n_published)


def design_interval(curves, d):
    return M.invert(THETA, *curves, d)[:2]


def naive_interval(curves, d):
    """The t-interval read as an interval for θ: ignores the design's bias."""
    z = stats.norm.ppf(0.975)
    return d - z, d + z


@pytest.mark.parametrize("theta_true", [0.0, 1.0, 2.0])
def test_the_design_interval_covers_where_the_naive_one_fails(theta_true):
    """A biased design (bias 0.8 SD of the estimator): the design-based interval covers the true θ
    in 0.95 - 3 MCSE of published results or more; the naive interval, the deliberately weakened
    version, covers far less and fails the same check."""
    cover, mcse = _coverage(design_interval, 0.8, theta_true)
    assert cover >= 0.95 - 3 * mcse
    naive, _ = _coverage(naive_interval, 0.8, theta_true)
    assert naive < 0.95 - 3 * mcse


def test_without_bias_the_naive_and_design_intervals_agree():
    rng = np.random.default_rng(8)
    curves = M.quantile_curves(_draws(rng))
    for d in (-1.0, 0.3, 1.7):
        low, high = design_interval(curves, d)
        nl, nh = naive_interval(curves, d)
        assert abs(low - nl) < 0.15 and abs(high - nh) < 0.15  # about 3 MCSE of a 2.5 % quantile at R = 4000


def test_mc_pvalue_matches_the_normal_p_value():
    rng = np.random.default_rng(9)
    x = rng.standard_normal(200_000)
    p, se = M.mc_pvalue(x, 1.5)
    assert abs(p - 2 * stats.norm.sf(1.5)) <= 3 * se
    assert M.mc_pvalue(x, 0.0)[0] == pytest.approx(1.0, abs=0.01)


def test_naive_interval_is_welchs():
    """Against scipy's Welch test from the same summaries: the half-width is t(df) x SE."""
    d, lo, hi = M.naive_interval(17.6, 28.8, 33, 15.6, 28.7, 30)
    res = stats.ttest_ind_from_stats(17.6, 28.8, 33, 15.6, 28.7, 30, equal_var=False)
    se = d / res.statistic
    v1, v2 = 28.8 ** 2 / 33, 28.7 ** 2 / 30
    df = (v1 + v2) ** 2 / (v1 ** 2 / 32 + v2 ** 2 / 29)
    assert d == pytest.approx(2.0)
    assert (hi - lo) / 2 == pytest.approx(stats.t.ppf(0.975, df) * se, rel=1e-12)
    assert 2 * stats.t.sf(d / se, df) == pytest.approx(res.pvalue, rel=1e-12)


def test_surrogate_recovers_a_line_and_flags_a_curve():
    rng = np.random.default_rng(10)
    s = M.fit_surrogate(THETA, _draws(rng, bias=0.5, slope=0.8, reps=2000))
    assert s.a == pytest.approx(0.5, abs=0.05) and s.b == pytest.approx(0.8, abs=0.01) and s.misfit < 4
    curved = _draws(rng, reps=2000) + 0.3 * THETA[:, None] ** 2
    assert M.fit_surrogate(THETA, curved).misfit > 10


def test_bias_adjusted_draws_undo_the_bias():
    rng = np.random.default_rng(11)
    n = 100_000
    a, b, sd = np.full(n, 0.8), np.full(n, 1.0), np.full(n, 1.0)
    sys_, tot = M.bias_adjusted(2.0, a, b, sd, rng)
    assert np.allclose(sys_, 1.2)
    assert np.percentile(tot, [2.5, 97.5]) == pytest.approx([1.2 - 1.96, 1.2 + 1.96], abs=0.05)


def test_interpolation_is_bilinear_and_reports_clipping():
    gx, gy = np.array([0.0, 1.0]), np.array([0.0, 2.0])
    v = np.array([[0.0, 2.0], [1.0, 3.0]])  # v = x + y
    out, outside = M.interpolate(gx, gy, v, np.array([0.5, 2.0]), np.array([1.0, 1.0]))
    assert out.tolist() == pytest.approx([1.5, 2.0]) and outside.tolist() == [False, True]


@pytest.mark.parametrize("spec, needle", [
    ({"dist": "gamma", "a": 1}, "p.dist: got 'gamma'; allowed"),
    ({"dist": "uniform", "low": 1, "high": 0}, "p: low < high is required"),
    ({"dist": "normal", "mean": 0}, "p: a normal prior takes ['mean', 'sd']"),
    ({"dist": "triangular", "low": 0, "mode": 2, "high": 1}, "p: low <= mode <= high"),
    ({"dist": "lognormal", "meanlog": 0, "sdlog": "x"}, "p.sdlog: must be a finite number"),
    ([1, 2], "p.dist: got 1; allowed"),
    ("uniform", "p: must be [name, parameters...] or a mapping"),
    (["uniform", 0], "p: a uniform prior is [uniform, low, high]"),
])
def test_bad_priors_name_the_key(spec, needle):
    with pytest.raises(ValueError) as e:
        M.check_prior(spec, "p")
    assert str(e.value).startswith(needle), str(e.value)


def test_priors_draw_their_distributions():
    rng = np.random.default_rng(12)
    for spec, mean in (({"dist": "uniform", "low": 0, "high": 2}, 1.0), ({"dist": "normal", "mean": 1, "sd": 1}, 1.0),
                       ({"dist": "triangular", "low": 0, "mode": 1, "high": 2}, 1.0),
                       ({"dist": "lognormal", "meanlog": 0, "sdlog": 0.5}, math.exp(0.125))):
        x = M.draw_prior(M.check_prior(spec, "p"), 100_000, rng)
        as_list = [spec["dist"], *(v for k, v in spec.items() if k != "dist")]
        assert M.check_prior(as_list, "p") == M.check_prior(spec, "p")
        assert x.mean() == pytest.approx(mean, abs=4 * x.std() / math.sqrt(x.size))

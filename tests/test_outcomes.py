"""Tests for sim.methods.outcomes against scipy."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from sim.methods.outcomes import (
    analyse_deltas,
    diff_means,
    fisher_exact,
    paired_t,
    signed_rank,
    wilcoxon_ranksum,
)


def samples(rng, n, ties):
    if ties:  # ordinal-like deltas (e.g. Frankel grade change) -> many ties
        return rng.integers(-2, 3, n).astype(float), rng.integers(-2, 2, n).astype(float)
    return rng.normal(0.3, 1, n), rng.normal(0, 1.5, n)


@pytest.mark.parametrize("ties", [False, True])
def test_wilcoxon_ranksum_vs_scipy(ties):
    rng = np.random.default_rng(int(ties))
    for _ in range(100):
        n1, n2 = rng.integers(1, 60, 2)
        a, _ = samples(rng, n1, ties)
        _, b = samples(rng, n2, ties)
        r = wilcoxon_ranksum(a, b)
        ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
        assert r.statistic == pytest.approx(ref.statistic)
        if np.isnan(ref.pvalue):
            assert r.p_value == 1.0
        else:
            assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-14)
        assert r.estimate == pytest.approx(ref.statistic / (n1 * n2))
        assert (r.n_treated, r.n_control) == (n1, n2)


def test_wilcoxon_all_tied():
    r = wilcoxon_ranksum([1.0, 1.0, 1.0], [1.0, 1.0])
    ref = stats.mannwhitneyu([1.0, 1.0, 1.0], [1.0, 1.0], method="asymptotic")
    assert r.p_value == ref.pvalue == 1.0
    assert r.reason


def test_nan_handling_unpaired_drops_per_arm():
    a = np.array([1.0, np.nan, 3.0, 4.0, 7.0])
    b = np.array([2.0, 2.5, np.nan, np.nan, 0.0])
    r = wilcoxon_ranksum(a, b)
    ref = stats.mannwhitneyu([1, 3, 4, 7.0], [2, 2.5, 0.0], method="asymptotic")
    assert r.p_value == pytest.approx(ref.pvalue)
    assert (r.n_treated, r.n_control) == (4, 3)
    d = diff_means(a, b)
    ref = stats.ttest_ind([1, 3, 4, 7.0], [2, 2.5, 0.0], equal_var=False)
    assert d.p_value == pytest.approx(ref.pvalue)


def test_nan_handling_paired_drops_pairs():
    a = np.array([1.0, np.nan, 3.0, 4.0, 7.0, 2.0])
    b = np.array([2.0, 2.5, np.nan, 1.0, 0.0, 2.5])
    keep = [0, 3, 4, 5]
    r = paired_t(a, b)
    ref = stats.ttest_rel(a[keep], b[keep])
    assert r.p_value == pytest.approx(ref.pvalue)
    assert r.n_treated == r.n_control == 4
    s = signed_rank(a, b)
    ref = stats.wilcoxon(a[keep] - b[keep])
    assert s.p_value == pytest.approx(ref.pvalue)
    assert s.statistic == pytest.approx(ref.statistic)


@pytest.mark.parametrize("ties", [False, True])
def test_signed_rank_vs_scipy(ties):
    rng = np.random.default_rng(10 + int(ties))
    for _ in range(50):
        n = int(rng.integers(3, 80))
        a, b = samples(rng, n, ties)
        d = a - b
        if np.all(d == 0):
            continue
        r = signed_rank(a, b)
        small_ties = n <= 13 and (np.unique(np.abs(d)).size < n or np.any(d == 0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # documented deviation: normal approximation instead of permutation test
            ref = stats.wilcoxon(d, method="asymptotic" if small_ties else "auto")
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert r.statistic == pytest.approx(ref.statistic)
        assert r.estimate == pytest.approx(np.median(d))


def test_signed_rank_exact_small_n_vs_scipy():
    rng = np.random.default_rng(12)
    for n in list(range(2, 21)) * 3 + [49, 50, 51]:
        a, b = rng.normal(size=n), rng.normal(size=n)
        r = signed_rank(a, b)
        ref = stats.wilcoxon(a - b)
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9), n
        assert r.statistic == ref.statistic


def test_signed_rank_all_zero_differences():
    r = signed_rank([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r.p_value == 1.0 and r.reason


def test_paired_t_vs_scipy():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(2, 60))
        a, b = samples(rng, n, False)
        r = paired_t(a, b)
        ref = stats.ttest_rel(a, b)
        ci = ref.confidence_interval()
        assert r.statistic == pytest.approx(ref.statistic)
        assert r.p_value == pytest.approx(ref.pvalue)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high))
        assert r.estimate == pytest.approx(np.mean(a - b))
        assert r.se == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(n))
        p = diff_means(a, b, paired=True)
        assert p.name == "diff_means_paired" and p.p_value == pytest.approx(r.p_value)


def test_welch_vs_scipy():
    rng = np.random.default_rng(4)
    for _ in range(30):
        n1, n2 = rng.integers(2, 60, 2)
        a, _ = samples(rng, n1, False)
        _, b = samples(rng, n2, False)
        r = diff_means(a, b)
        ref = stats.ttest_ind(a, b, equal_var=False)
        ci = ref.confidence_interval()
        assert r.statistic == pytest.approx(ref.statistic)
        assert r.p_value == pytest.approx(ref.pvalue)
        assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high))
        assert r.estimate == pytest.approx(a.mean() - b.mean())
        assert r.se == pytest.approx(math.sqrt(a.var(ddof=1) / n1 + b.var(ddof=1) / n2))


def test_fisher_vs_scipy():
    rng = np.random.default_rng(5)
    for _ in range(30):
        a = (rng.random(40) < 0.4).astype(float)
        b = (rng.random(35) < 0.2).astype(float)
        a[rng.integers(0, 40, 3)] = np.nan
        r = fisher_exact(a, b)
        aa, bb = a[~np.isnan(a)], b
        table = [[aa.sum(), len(aa) - aa.sum()], [bb.sum(), len(bb) - bb.sum()]]
        ref = stats.fisher_exact(table)
        assert r.p_value == pytest.approx(ref.pvalue)
        assert r.estimate == pytest.approx(ref.statistic)
        if min(min(row) for row in table) > 0:
            se = math.sqrt(sum(1 / v for row in table for v in row))
            assert r.ci_low == pytest.approx(math.exp(math.log(ref.statistic) - 1.959964 * se), rel=1e-5)
    with pytest.raises(ValueError, match="binary"):
        fisher_exact([0, 1, 2], [0, 1])


def test_too_few_values_gives_nan_with_reason():
    nan = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = analyse_deltas(
            [1.0, nan, nan], [nan, 2.0, nan],
            analyses=("wilcoxon", "signed_rank", "paired_t", "diff_means", "diff_means_paired"),
        )
    for name in ("signed_rank", "paired_t", "diff_means", "diff_means_paired"):
        assert np.isnan(res[name].p_value), name
        assert res[name].reason, name
    # wilcoxon with one value per arm is computable
    assert res["wilcoxon"].n_treated == 1
    r = wilcoxon_ranksum([nan], [1.0, 2.0])
    assert np.isnan(r.p_value) and r.reason


def test_zero_variance_t_tests():
    r = paired_t([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert np.isnan(r.p_value) and r.estimate == 1.0 and r.reason
    r = diff_means([1.0, 1.0], [1.0, 1.0])
    assert np.isnan(r.p_value) and r.reason


def test_analyse_deltas_default_and_validation():
    rng = np.random.default_rng(6)
    a, b = samples(rng, 51, False)
    res = analyse_deltas(a, b)
    assert set(res) == {"wilcoxon", "signed_rank", "paired_t", "diff_means"}
    assert res["wilcoxon"].p_value == pytest.approx(
        stats.mannwhitneyu(a, b, method="asymptotic").pvalue
    )
    with pytest.raises(ValueError, match="analyses"):
        analyse_deltas(a, b, analyses=("anova",))
    with pytest.raises(ValueError, match="same length"):
        analyse_deltas(a, b[:-1])
    with pytest.raises(ValueError, match="same length"):
        paired_t(a, b[:-1])

"""Tests for sim.methods.balance against hand computation."""

import warnings

import numpy as np
import pytest

from sim.methods.balance import balance_table, max_abs_smd, smd, variance_ratio
from sim.methods.matching import match


def hand_var(v):
    m = sum(v) / len(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def test_smd_pooled_and_treated_by_hand():
    x = [1.0, 2.0, 4.0, 3.0, 3.0, 5.0, 9.0]
    t = np.array([1, 1, 1, 0, 0, 0, 0])
    xt, xc = x[:3], x[3:]
    diff = sum(xt) / 3 - sum(xc) / 4
    pooled = ((hand_var(xt) + hand_var(xc)) / 2) ** 0.5
    assert smd(np.array(x), t)[0] == pytest.approx(diff / pooled)
    assert smd(np.array(x), t, denominator="treated")[0] == pytest.approx(diff / hand_var(xt) ** 0.5)
    assert variance_ratio(np.array(x), t)[0] == pytest.approx(hand_var(xt) / hand_var(xc))


def test_multicolumn_matches_per_column():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    t = (rng.random(80) < 0.4).astype(int)
    all_cols = smd(X, t)
    for j in range(4):
        assert all_cols[j] == pytest.approx(smd(X[:, j], t)[0])


def test_unit_weights_equal_unweighted_and_zero_weights_drop_units():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    t = (rng.random(50) < 0.5).astype(int)
    np.testing.assert_allclose(smd(X, t, np.ones(50)), smd(X, t))
    w = (rng.random(50) < 0.6).astype(float)
    keep = w > 0
    np.testing.assert_allclose(smd(X, t, w), smd(X[keep], t[keep]))
    np.testing.assert_allclose(variance_ratio(X, t, w), variance_ratio(X[keep], t[keep]))


def test_integer_weights_equal_replication():
    # mean with weight 2 == duplicating the unit; variance uses reliability weights
    X = np.array([1.0, 2.0, 6.0, 0.0, 1.0, 3.0])
    t = np.array([1, 1, 1, 0, 0, 0])
    w = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    mc_w = (2 * 0 + 1 + 3) / 4
    mt = 3.0
    vt = hand_var([1, 2, 6])
    # reliability-weight variance: sum w (x-m)^2 / (W - sum w^2 / W)
    vc = (2 * (0 - mc_w) ** 2 + (1 - mc_w) ** 2 + (3 - mc_w) ** 2) / (4 - 6 / 4)
    assert smd(X, t, w)[0] == pytest.approx((mt - mc_w) / np.sqrt((vt + vc) / 2))
    assert variance_ratio(X, t, w)[0] == pytest.approx(vt / vc)


def test_zero_variance_columns_no_warnings():
    t = np.array([1, 1, 0, 0])
    X = np.array([[1.0, 1.0, 5.0], [1.0, 1.0, 5.0], [1.0, 2.0, 5.0], [1.0, 2.0, 5.0]])
    X[:, 2] = [1, 2, 1, 2]  # nonzero variance column for contrast
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = smd(X, t)
        v = variance_ratio(X, t)
    assert s[0] == 0.0
    assert s[1] == -np.inf
    assert s[2] == 0.0
    assert v[0] == 1.0 and v[1] == 1.0
    Xv = np.array([[1.0], [3.0], [2.0], [2.0]])
    assert variance_ratio(Xv, t)[0] == np.inf


def test_balance_table_before_after():
    rng = np.random.default_rng(2)
    n = 263
    X = np.column_stack([rng.normal(65, 10, n), rng.integers(0, 2, n)])
    t = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - 65) / 10))).astype(int)
    ps = 1 / (1 + np.exp(-(X[:, 0] - 65) / 10))
    res = match(ps, t, caliper=0.2)
    tab = balance_table(X, t, ["age", "male"], res.weights)
    assert list(tab.columns) == ["covariate", "smd_before", "smd_after", "vr_before", "vr_after"]
    m = res.weights > 0
    np.testing.assert_allclose(tab["smd_before"], smd(X, t))
    np.testing.assert_allclose(tab["smd_after"], smd(X[m], t[m]))  # 1:1 -> weights are 0/1
    np.testing.assert_allclose(tab["vr_after"], variance_ratio(X[m], t[m]))
    assert abs(tab["smd_after"][0]) < abs(tab["smd_before"][0])
    assert max_abs_smd(tab) == pytest.approx(np.abs(tab["smd_after"]).max())
    assert max_abs_smd(np.array([0.1, -0.3, np.nan])) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="names"):
        balance_table(X, t, ["age"], res.weights)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(denominator="whole"), "denominator"),
        (dict(weights=np.ones(3)), "weights"),
        (dict(weights=-np.ones(4)), "weights"),
    ],
)
def test_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        smd(np.ones((4, 2)), np.array([1, 0, 1, 0]), **kwargs)


def test_treated_validation():
    with pytest.raises(ValueError, match="treated"):
        smd(np.ones(4), np.array([1, 0, 2, 0]))
